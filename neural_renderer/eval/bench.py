"""The same suite and renderer scored in-process and through a daemon this command starts, side by side:

    python -m neural_renderer.eval.bench --renderer passthrough --suite quick --json benchmarks/results/eval_quick_cpu.json

Quality figures must agree exactly (the bridge must deliver the frames it was given); latency shows
what the bridge adds per frame (ZeroMQ control message + shared-memory pixels, round trip).
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path


def main(argv=None) -> int:
    from bridge.daemon import spawn_daemon

    from .cache import default_cache_dir
    from .runner import run_eval

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--renderer", default="passthrough")
    p.add_argument("--suite", default="quick")
    p.add_argument("--cache-dir", default=None)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    cache = Path(args.cache_dir) if args.cache_dir else default_cache_dir()
    arms = {}
    arms["in-process"] = run_eval(args.renderer, args.suite, cache_dir=cache, progress=True)
    with spawn_daemon(backend=args.renderer, runtime_dir="private") as d:
        arms["daemon (ipc + shm)"] = run_eval(args.renderer, args.suite, endpoint=d.endpoint, cache_dir=cache,
                                              progress=True)
    rows = []
    for arm, res in arms.items():
        s = res["systems"][res["renderer"]]["summary"]
        rows.append({"arm": arm, "psnr": s["psnr"], "ssim": s["ssim"], "warp_error": s["warp_error"],
                     "engine_psnr": res["systems"]["engine"]["summary"]["psnr"],
                     "reference_warp_floor": res["systems"]["reference"]["summary"]["warp_error"],
                     **{k: s["latency"][k] for k in ("p50_ms", "p99_ms", "mean_ms", "fps", "frames")}})
    base = rows[0]["mean_ms"]
    print(f"\n{args.renderer} on suite {args.suite} ({arms['in-process']['resolution']})")
    print(f"{'arm':20s} {'PSNR':>7s} {'SSIM':>7s} {'warp x1e3':>9s} {'p50 ms':>8s} {'p99 ms':>8s} {'mean vs in-process':>19s}")
    for r in rows:
        r["mean_latency_ratio_vs_in_process"] = r["mean_ms"] / base if base > 0 else float("inf")
        print(f"{r['arm']:20s} {r['psnr']:7.3f} {r['ssim']:7.4f} {r['warp_error'] * 1e3:9.4f} {r['p50_ms']:8.3f} "
              f"{r['p99_ms']:8.3f} {r['mean_latency_ratio_vs_in_process']:18.1f}x")
    same = all(rows[0][k] == rows[1][k] for k in ("psnr", "ssim", "warp_error"))
    print("quality figures identical in-process and through the daemon:", same)
    out = {"date": time.strftime("%Y-%m-%d"), "host": platform.node(), "renderer": args.renderer,
           "suite": args.suite, "resolution": arms["in-process"]["resolution"], "arms": rows,
           "quality_identical": same, "command": "python -m neural_renderer.eval.bench " + " ".join(argv or sys.argv[1:])}
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
