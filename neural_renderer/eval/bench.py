"""The same suite and renderer scored in-process and through a daemon this starts, side by side:

    neurender bench eval --renderer passthrough --suite quick --json benchmarks/results/eval_quick_cpu.json

Quality figures must agree exactly (the bridge must deliver the frames it was given); latency shows
what the bridge adds per frame (ZeroMQ control message + shared-memory pixels, round trip).
"""
from __future__ import annotations

import platform
import time
from pathlib import Path


def bridge_overhead(renderer: str = "passthrough", suite: str = "quick", cache_dir: str | None = None) -> dict:
    """One row per arm (in-process, through the daemon) with quality, latency and the mean latency
    ratio against in-process; `quality_identical` says whether the bridge changed any figure."""
    from bridge.daemon import spawn_daemon

    from .cache import default_cache_dir
    from .runner import run_eval

    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    arms = {"in-process": run_eval(renderer, suite, cache_dir=cache, progress=True)}
    with spawn_daemon(backend=renderer, runtime_dir="private") as d:
        arms["daemon (ipc + shm)"] = run_eval(renderer, suite, endpoint=d.endpoint, cache_dir=cache, progress=True)
    rows = []
    for arm, res in arms.items():
        s = res["systems"][res["renderer"]]["summary"]
        rows.append({"arm": arm, "psnr": s["psnr"], "ssim": s["ssim"], "warp_error": s["warp_error"],
                     "engine_psnr": res["systems"]["engine"]["summary"]["psnr"],
                     "reference_warp_floor": res["systems"]["reference"]["summary"]["warp_error"],
                     **{k: s["latency"][k] for k in ("p50_ms", "p99_ms", "mean_ms", "fps", "frames")}})
    base = rows[0]["mean_ms"]
    for r in rows:
        r["mean_latency_ratio_vs_in_process"] = r["mean_ms"] / base if base > 0 else float("inf")
    same = all(rows[0][k] == rows[1][k] for k in ("psnr", "ssim", "warp_error"))
    return {"date": time.strftime("%Y-%m-%d"), "host": platform.node(), "renderer": renderer, "suite": suite,
            "resolution": arms["in-process"]["resolution"], "arms": rows, "quality_identical": same}
