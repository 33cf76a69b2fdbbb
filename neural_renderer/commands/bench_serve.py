"""`neurender bench serve`: round trip through `neurender serve` with the generator backend, per step
count and dtype side by side (library: neural_renderer.serving.bench_serve)."""
from __future__ import annotations

import argparse


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="tiny")
    p.add_argument("--device", default="cpu")
    p.add_argument("--steps", type=int, nargs="+", default=[2])
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--frames", type=int, default=300)
    p.add_argument("--warmup", type=int, default=30)
    p.add_argument("--dtype", nargs="+", default=["float32"], choices=("float32", "bfloat16"))
    p.add_argument("--json", default="")


def run(args: argparse.Namespace) -> int:
    import json

    from neural_renderer.serving.bench_serve import bench

    runs = [bench(args.model, args.device, args.steps, args.size, args.frames, args.warmup, dtype) for dtype in args.dtype]
    res = {**runs[0], "rows": [r for run in runs for r in run["rows"]]}  # the dtypes side by side, one run
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)
    return 0
