"""`neurender bench eval`: one suite and renderer scored in-process and through a daemon, side by side
(library: neural_renderer.eval.bench)."""
from __future__ import annotations

import argparse


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--renderer", default="passthrough")
    p.add_argument("--suite", default="quick")
    p.add_argument("--cache-dir", default=None)
    p.add_argument("--json", default=None)


def run(args: argparse.Namespace) -> int:
    import json
    import sys
    from pathlib import Path

    from neural_renderer.eval.bench import bridge_overhead

    out = bridge_overhead(args.renderer, args.suite, args.cache_dir)
    out["command"] = "neurender bench eval " + " ".join(sys.argv[3:])
    print(f"\n{args.renderer} on suite {args.suite} ({out['resolution']})")
    print(f"{'arm':20s} {'PSNR':>7s} {'SSIM':>7s} {'warp x1e3':>9s} {'p50 ms':>8s} {'p99 ms':>8s} {'mean vs in-process':>19s}")
    for r in out["arms"]:
        print(f"{r['arm']:20s} {r['psnr']:7.3f} {r['ssim']:7.4f} {r['warp_error'] * 1e3:9.4f} {r['p50_ms']:8.3f} "
              f"{r['p99_ms']:8.3f} {r['mean_latency_ratio_vs_in_process']:18.1f}x")
    print("quality figures identical in-process and through the daemon:", out["quality_identical"])
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0 if out["quality_identical"] else 1
