"""`neurender bench distill`: one device call for the distillation and pruning table (library: neural_renderer.eval.distill_bench)."""
from __future__ import annotations

import argparse

from neural_renderer.eval.distill_bench import DistillBenchConfig

from .flags import add_config_flags, config_from_args


def configure(p: argparse.ArgumentParser) -> None:
    add_config_flags(p, DistillBenchConfig)


def run(args: argparse.Namespace) -> int:
    from neural_renderer.eval.distill_bench import distill_bench

    _print_summary(distill_bench(config_from_args(DistillBenchConfig, args)))
    return 0


def _print_summary(res: dict) -> None:
    for k, v in res.items():
        if k.startswith("timing_") and isinstance(v, dict) and "rows" in v:
            print(k, v.get("params"), [(r["steps"], round(r["median_ms"], 3)) for r in v["rows"]])
    rows = res.get("eval")
    if isinstance(rows, list):
        for r in rows:
            print(f"{r['arm']:16s} steps={r['steps']:2d} psnr={r['psnr']:.3f} ssim={r['ssim']:.4f} warp={r['warp_error']:.5f} "
                  f"drift={r['drift_psnr_db']:.3f} fps={r.get('fps')}")

