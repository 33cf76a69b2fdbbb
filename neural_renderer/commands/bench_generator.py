"""`neurender bench generator`: frames per second of the streaming generator per denoising-step count
(library: neural_renderer.serving.bench_generator)."""
from __future__ import annotations

import argparse


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="tiny", help="checkpoint name or path (or a registry size with --random)")
    p.add_argument("--steps", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--frames", type=int, default=50)
    p.add_argument("--warmup", type=int, default=8)
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    p.add_argument("--random", action="store_true", help="registry weights instead of a checkpoint")
    p.add_argument("--json", default="")


def run(args: argparse.Namespace) -> int:
    import json

    from neural_renderer.serving.bench_generator import bench

    res = bench(args.model, args.steps, args.frames, args.warmup, args.device, args.random, args.dtype)
    for r in res["rows"]:
        print(f"{res['model']} {res['dtype']} {res['device']}: steps={r['steps']} median {r['median_ms']:.2f} ms "
              f"p99 {r['p99_ms']:.2f} ms -> {r['fps']:.1f} frames/s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)
    return 0
