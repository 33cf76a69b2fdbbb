"""Command-line flags built from a config dataclass, so a default is written once (in the dataclass).

A field `clip_len` becomes `--clip-len` with the field's type and default; a boolean that defaults to
True becomes `--no-NAME`, one that defaults to False `--NAME`; a list becomes `--NAME A B ...`.
`FLAG_NAMES` holds the few flags whose spelling differs from their field.
"""
from __future__ import annotations

import argparse
import dataclasses

FLAG_NAMES = {"init": "--from", "time_budget_s": "--time-budget"}

# Help for the fields every run on clips shares (training.config.ClipRunConfig); commands add their own.
CLIP_RUN_HELP = {
    "init": "checkpoint the weights start from: shipped name or NAME.json/.safetensors path",
    "out": "output directory",
    "data": "'world' (render on the fly), 'synthetic', or a dataset directory",
    "pool": "clips kept on the device",
    "refresh_every": "steps between new clips entering the pool (0 = never)",
    "history_aug": "ablation: clean context, no corruption",
    "time_budget_s": "stop and save after this many seconds",
}


def _default(f: dataclasses.Field):
    return f.default_factory() if f.default is dataclasses.MISSING else f.default


def add_config_flags(p: argparse.ArgumentParser, config_cls, helps: dict[str, str] | None = None,
                     skip: tuple[str, ...] = ()) -> None:
    helps = {**CLIP_RUN_HELP, **(helps or {})}
    for f in dataclasses.fields(config_cls):
        if f.name in skip:
            continue
        default = _default(f)
        flag = FLAG_NAMES.get(f.name, "--" + f.name.replace("_", "-"))
        text = helps.get(f.name)
        if isinstance(default, bool):
            if default:
                p.add_argument("--no-" + flag[2:], dest=f.name, action="store_false", help=text)
            else:
                p.add_argument(flag, dest=f.name, action="store_true", help=text)
        elif isinstance(default, list):
            p.add_argument(flag, dest=f.name, nargs="+", default=default, help=text)
        else:
            shown = f"{text} (default {default!r})" if text else f"default {default!r}"
            p.add_argument(flag, dest=f.name, type=type(default), default=default, help=shown)


def config_from_args(config_cls, args: argparse.Namespace):
    return config_cls(**{f.name: getattr(args, f.name) for f in dataclasses.fields(config_cls) if hasattr(args, f.name)})
