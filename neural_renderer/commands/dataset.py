"""`neurender dataset make`: render training sequences of the game world into a sharded dataset."""
from __future__ import annotations

import argparse


def parse_resolution(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"resolution must look like 128x128, got {text!r}") from None
    if w <= 0 or h <= 0:
        raise argparse.ArgumentTypeError(f"resolution must be positive, got {text!r}")
    return w, h


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="new dataset directory")
    p.add_argument("--sequences", type=int, required=True, help="number of sequences (one scene seed each)")
    p.add_argument("--frames", type=int, required=True, help="frames per sequence")
    p.add_argument("--resolution", type=parse_resolution, default=(128, 128), help="WxH (default 128x128)")
    p.add_argument("--styles", nargs="+", default=None,
                   help="reference looks to render (names from bridge/styles.py; default all)")
    p.add_argument("--seed-offset", type=int, default=0,
                   help="first scene seed; seeds must stay training seeds (0-999)")
    p.add_argument("--script", default="mixed", help="scripted player (see demos/sequence.py)")
    p.add_argument("--fps", type=float, default=30.0)
    p.add_argument("--workers", type=int, default=1, help="render processes (one OpenGL context each)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing dataset at --out")
    p.add_argument("--no-report", action="store_true", help="skip the contact sheet and stats.json")


def run(args) -> int:
    import sys

    from bridge.styles import STYLES

    from neural_renderer.data.format import EvalSeedError
    from neural_renderer.data.make import make_dataset

    names = args.styles or list(STYLES)
    unknown = [s for s in names if s not in STYLES]
    if unknown:
        print(f"unknown style(s) {unknown}; known: {list(STYLES)}", file=sys.stderr)
        return 2
    if args.sequences <= 0 or args.frames <= 0:
        print("--sequences and --frames must be positive", file=sys.stderr)
        return 2
    w, h = args.resolution
    try:
        index = make_dataset(args.out, sequences=args.sequences, frames=args.frames, width=w, height=h,
                             styles={s: STYLES[s] for s in names}, seed_offset=args.seed_offset,
                             script=args.script, fps=args.fps, workers=args.workers,
                             overwrite=args.overwrite, report=not args.no_report)
    except (EvalSeedError, OSError) as e:  # eval seed, existing --out, not enough disk
        print(f"error: {e}", file=sys.stderr)
        return 2
    m = index["meta"]
    print(f"wrote {m['frames']} frames ({len(index['sequences'])} sequences, {len(index['shards'])} shards) "
          f"to {args.out} at {m['frames_per_second']:.1f} frames/s")
    return 0
