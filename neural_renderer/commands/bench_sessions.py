"""`neurender bench sessions`: many paced 60 frames/s sessions against one daemon, per session count: frames/s,
drops, latency p50/p99, the batching the daemon did, and the largest count that held
(library: neural_renderer.serving.bench_sessions)."""
from __future__ import annotations

import argparse


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="base", help="shipped name, checkpoint path, or a registry size (random weights)")
    p.add_argument("--device", default=None, help="cuda when present, else cpu")
    p.add_argument("--size", default="512x512", help="WxH of every session's frames")
    p.add_argument("--fps", type=float, default=60.0, help="frames each session submits per second")
    p.add_argument("--counts", default="1,4,8,12,16", help="session counts, run in turn against one daemon")
    p.add_argument("--seconds", type=float, default=15.0, help="measured seconds per count")
    p.add_argument("--long", default="8:60", help="COUNT:SECONDS run after the sweep (the issue's 8 sessions for "
                                                  "60 s), unless the sweep already ran it; 'none' to skip")
    p.add_argument("--warmup", type=float, default=3.0, help="seconds each count runs before it is measured")
    p.add_argument("--p99-ms", type=float, default=16.0, help="a session holds only with latency p99 at most this")
    p.add_argument("--spread", action="store_true",
                   help="sessions' ticks evenly spaced over a frame period (default: all on the same tick)")
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--dtype", default=None, choices=("float32", "bfloat16"),
                   help="the generator's dtype (default: bfloat16 on cuda, float32 on cpu, as serve)")
    p.add_argument("--kernels", default="auto", help="the daemon's serving arm (auto: the fastest that passes its check)")
    p.add_argument("--batch-wait-ms", type=float, default=None, metavar="MS",
                   help="the daemon's coalescing window (neurender serve --batch-wait-ms; default: serve's); 0 to "
                        "compare with batches of only what is already queued")
    p.add_argument("--out", "--json", dest="out", default="", help="write the figures here (JSON) and a PNG beside it")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    import torch

    from neural_renderer.serving.bench_serve import parse_size
    from neural_renderer.serving.bench_sessions import bench, write
    from neural_renderer.serving.bench_sessions_report import plot, table

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    long = None
    if args.long.lower() not in ("", "none", "0"):
        n, _, secs = args.long.partition(":")
        long = (int(n), float(secs or args.seconds))
    res = bench(args.model, device, parse_size(args.size), args.fps, [int(n) for n in args.counts.split(",") if n.strip()],
                args.seconds, long, args.warmup, args.steps,
                args.dtype or ("bfloat16" if device.startswith("cuda") else "float32"), args.kernels, args.p99_ms,
                spread=args.spread, batch_wait_ms=args.batch_wait_ms)
    print(table(res))
    if args.out:
        write(res, args.out)
        png = Path(args.out).with_suffix(".png")
        plot(res, png)
        print(f"wrote {args.out} and {png}")
    rows = res["counts"] + ([res["long"]] if res["long"] is not None else [])
    return 1 if any(r["errors"] for r in rows) else 0
