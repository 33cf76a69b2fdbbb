"""`neurender bench dataset`: dataset generation throughput per arm (engine only, one style, every
style, several workers), side by side (library: neural_renderer.data.bench)."""
from __future__ import annotations

import argparse

from .dataset import parse_resolution


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--resolution", type=parse_resolution, default=(128, 128), help="WxH")
    p.add_argument("--sequences", type=int, default=2)
    p.add_argument("--frames", type=int, default=48)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--json", default=None)


def run(args: argparse.Namespace) -> int:
    import json
    import sys
    from pathlib import Path

    from neural_renderer.data.bench import throughput

    w, h = args.resolution
    out = throughput(w, h, args.sequences, args.frames, args.workers)
    out["command"] = "neurender bench dataset " + " ".join(sys.argv[3:])
    print(f"\n{w}x{h}, {args.sequences} sequences x {args.frames} frames per arm")
    print(f"{'arm':36s} {'frames/s':>9s} {'vs engine only':>15s} {'bytes/frame':>12s}")
    for r in out["arms"]:
        print(f"{r['arm']:36s} {r['frames_per_second']:9.2f} {r['ratio_vs_engine_only']:14.3f}x {r['bytes_per_frame']:12d}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0
