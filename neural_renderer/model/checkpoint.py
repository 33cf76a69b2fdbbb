"""Checkpoints: safetensors weights + a JSON config beside them, loadable with no download.

    NAME.json                         {"config": GeneratorConfig, "shards": [...], "dtype": ..., "train": {...}}
    NAME.safetensors                  the weights, or, when they exceed MAX_SHARD_BYTES,
    NAME-00001-of-0000N.safetensors   several shards (every shipped file stays under 16 MiB)

`resolve()` maps what the daemon's spec names ('tiny', 'base', a .json or .safetensors path) to the
JSON. Training state for resuming (optimizer, EMA, step) is a separate torch file, never shipped.
"""
from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import torch

from neural_renderer.model.inputs import BASE_COND_CHANNELS, COND_CHANNELS
from neural_renderer.model.registry import GeneratorConfig, build

SHIPPED_DIR = Path(__file__).parents[1] / "checkpoints"  # neural_renderer/checkpoints
MAX_SHARD_BYTES = 15 * 1024 * 1024
SHARD_SUFFIX = re.compile(r"-\d{5}-of-\d{5}$")


def save_checkpoint(state: dict[str, torch.Tensor], cfg: GeneratorConfig, path: str | Path,
                    dtype: torch.dtype = torch.bfloat16, meta: dict | None = None) -> Path:
    """Write NAME.json + shard(s); `path` may end in .json/.safetensors or be the bare NAME."""
    from safetensors.torch import save_file

    base = Path(path)
    base = base.with_suffix("") if base.suffix in (".json", ".safetensors") else base
    base.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu", dtype if v.is_floating_point() else v.dtype).contiguous() for k, v in state.items()}
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for k, v in tensors.items():
        n = v.numel() * v.element_size()
        if size + n > MAX_SHARD_BYTES and shards[-1]:
            shards.append({})
            size = 0
        shards[-1][k] = v
        size += n
    names = ([f"{base.name}.safetensors"] if len(shards) == 1
             else [f"{base.name}-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))])
    for old in base.parent.glob(f"{base.name}*.safetensors"):  # stale shards of an earlier save
        if old.name not in names and (old.stem == base.name or SHARD_SUFFIX.sub("", old.stem) == base.name):
            old.unlink()
    for name, shard in zip(names, shards):
        save_file(shard, str(base.parent / name))
    doc = {"config": cfg.to_dict(), "shards": names, "dtype": str(dtype).removeprefix("torch."), "train": meta or {}}
    base.with_suffix(".json").write_text(json.dumps(doc, indent=1))
    return base.with_suffix(".json")


def resolve(spec: str | Path) -> Path:
    """'tiny' / 'base' (shipped), or a path to NAME.json / NAME.safetensors / a shard -> NAME.json."""
    s = str(spec)
    if "/" not in s and "." not in s:
        p = SHIPPED_DIR / f"{s}.json"
        if not p.is_file():
            raise FileNotFoundError(f"no shipped checkpoint {s!r} in {SHIPPED_DIR}")
        return p
    p = Path(s)
    if p.suffix == ".safetensors":
        p = p.with_name(SHARD_SUFFIX.sub("", p.stem) + ".json")
    if not p.is_file():
        raise FileNotFoundError(f"checkpoint config {p} not found")
    return p


def load_state(spec: str | Path) -> tuple[GeneratorConfig, dict[str, torch.Tensor], dict]:
    from safetensors.torch import load_file

    cfg_path = resolve(spec)
    doc = json.loads(cfg_path.read_text())
    state: dict[str, torch.Tensor] = {}
    for name in doc["shards"]:
        state.update(load_file(str(cfg_path.parent / name)))
    return GeneratorConfig.from_dict(doc["config"]), state, doc.get("train", {})


def load_model(spec: str | Path, device="cpu", dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    cfg, state, _ = load_state(spec)
    model = build(cfg)
    model.load_state_dict({k: v.float() for k, v in state.items()})
    return model.to(device=device, dtype=dtype).eval()


def widen_for_world(state: dict[str, torch.Tensor], old: GeneratorConfig, new: GeneratorConfig) -> dict[str, torch.Tensor]:
    """Weights of a checkpoint trained without the world group -> weights for `new`, the same architecture
    with the group on. The world planes enter the stem last (hourglass._stem_input), so they get zero
    columns there: the widened model computes exactly what the old one did until training moves them."""
    if not differs_only_by_world(old, new):
        raise ValueError(f"widen_for_world needs the same config with the world group turned on; got {old} -> {new}")
    w = state["stem.weight"]  # (out, in_planes, 3, 3)
    extra = COND_CHANNELS - BASE_COND_CHANNELS
    return {**state, "stem.weight": torch.cat([w, w.new_zeros(w.shape[0], extra, *w.shape[2:])], dim=1)}


def differs_only_by_world(old: GeneratorConfig, new: GeneratorConfig) -> bool:
    """True when `new` is `old` (its size name aside) with the world group turned on."""
    return (new.arch == "hourglass" and not old.world_freqs and bool(new.world_freqs)
            and replace(old, name=new.name, world_freqs=new.world_freqs) == new)


def init_state(spec: str | Path, cfg: GeneratorConfig) -> dict[str, torch.Tensor]:
    """The weights a run of a `cfg` model starts from when it names checkpoint `spec` as its init: the
    checkpoint's own, widened (widen_for_world) when it predates the world group that `cfg` turns on."""
    old, state, _ = load_state(spec)
    return widen_for_world(state, old, cfg) if differs_only_by_world(old, cfg) else state
