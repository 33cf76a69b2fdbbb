"""The single `neurender` command line.

Each subcommand is a thin module (parse, call a library function, print); this file only knows
where. The model's commands live in neural_renderer/commands/, the daemon's in bridge/ and the
game's in demos/ (those packages import nothing of ours). A module listed here exposes
`configure(parser)` (adds its arguments, imports nothing heavy) and `run(args) -> int`. Those modules keep their top-level imports light (torch,
zmq, moderngl are imported inside `run`), so building the parser for `--help`
stays fast and a heavy dependency of one subcommand never breaks another.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys

# subcommand -> (module, one-line help). "bench" and "dataset" have their own
# second level of subcommands below.
COMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("bridge.serve_cmd", "run the rendering daemon"),
    "keys": ("bridge.keys_cmd", "create and list CURVE keys for TCP clients"),
    "demo": ("demos.demo_cmd", "the game scene driving the daemon (window or headless)"),
    "train": ("neural_renderer.commands.train", "train the causal generator"),
    "eval": ("neural_renderer.commands.eval", "quality, stability, drift and latency of a renderer"),
    "distill": ("neural_renderer.commands.distill", "shortcut distillation of a trained generator"),
    "prune": ("neural_renderer.commands.prune", "architecture-aware pruning of a trained generator"),
}
GROUPS: dict[str, dict[str, tuple[str, str]]] = {
    "bench": {
        "bridge": ("bridge.bench_cmd", "round-trip latency of the bridge vs a raw pyzmq echo"),
        "kernels": ("neural_renderer.commands.bench_kernels", "kernel arms vs eager/compile/CUDA graph"),
        "generator": ("neural_renderer.commands.bench_generator", "streaming generator frames/s per step count"),
        "serve": ("neural_renderer.commands.bench_serve", "round trip through the daemon with the generator"),
        "sessions": ("neural_renderer.commands.bench_sessions", "many paced 60 fps sessions on one daemon: the largest count held"),
        "rollout": ("neural_renderer.commands.bench_rollout", "long rollout of one eval scene: drift"),
        "ablation": ("neural_renderer.commands.bench_ablation", "the generator vs its ablations on an eval suite"),
        "distill": ("neural_renderer.commands.bench_distill", "distil, prune, time and evaluate every arm in one run"),
        "eval": ("neural_renderer.commands.bench_eval", "one eval suite in-process vs through the daemon"),
        "dataset": ("neural_renderer.commands.bench_dataset", "dataset generation throughput per arm"),
        "world": ("demos.bench_render", "engine-pass and reference-look frames/s of the world renderer"),
        "record": ("bridge.bench_record", "frame latency with session recording off vs on"),
        "soak": ("bridge.soak_cmd", "hours of hostile, dying clients and a daemon restart: memory, losses, files left"),
    },
    "dataset": {
        "make": ("neural_renderer.commands.dataset", "render training/eval sequences to sharded files"),
    },
}


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # its parent package does not exist yet
        return False


def _add(sub, name: str, module: str, help_text: str) -> None:
    if not _importable(module):
        return  # that part of the product is not built yet
    p = sub.add_parser(name, help=help_text, description=help_text)
    mod = importlib.import_module(module)
    mod.configure(p)
    p.set_defaults(_run=mod.run)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="neurender", description="Live neural rendering for game engines.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        _add(sub, name, module, help_text)
    for group, members in GROUPS.items():
        if not any(_importable(m) for m, _ in members.values()):
            continue
        gp = sub.add_parser(group, help=f"{group} subcommands")
        gsub = gp.add_subparsers(dest=f"{group}_command", metavar="WHAT")
        gsub.required = True
        for name, (module, help_text) in members.items():
            _add(gsub, name, module, help_text)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "_run"):
        parser.print_help()
        return 2
    return int(args._run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
