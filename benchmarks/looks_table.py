"""Every look, side by side: the generator and its ablations against the engine pass, per look and overall.

Measures, on the same held-out frames (evaluation seeds, one run per look and seed, the look's prompt from
frame 0): PSNR and SSIM against the requested reference look, warping error with the engine's motion
vectors (never without PSNR beside it: a frozen output scores a perfect warp), and the block-grid score.
Arms are renderer specs (`generator:PATH`, `generator:PATH?context=0&noise=fixed`, `?history=0`, ...); the
engine pass and the reference look (whose warping error is the floor) are scored by the same runner.

    python benchmarks/looks_table.py --arms generator:tiny "generator:tiny?history=0" --out benchmarks/results/looks_cpu
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from bridge.styles import STYLES
from neural_renderer.eval.runner import run_eval
from neural_renderer.eval.suites import EVAL_SEED_BASE, EvalSequence, Suite

FIRST_SEED = EVAL_SEED_BASE + 110  # evaluation seeds no model, test or tuning here has looked at


def looks_suite(size: int = 128, frames: int = 16, seeds: int = 2, height: int = 0) -> Suite:
    """Square frames of side `size`, or size x height (width x height) when height is given."""
    seqs = tuple(EvalSequence(FIRST_SEED + k, frames, (look,), ((0, look),))
                 for look in STYLES for k in range(seeds))
    return Suite("looks", size, height or size, seqs, drift_window=max(4, frames // 2))


def table(results: dict[str, dict]) -> str:
    """Markdown: one row per arm, PSNR per look, then mean PSNR / SSIM / warp / block grid."""
    looks = list(STYLES)
    head = "| arm | " + " | ".join(looks) + " | mean PSNR | SSIM | warp (1e-3) | block grid |"
    lines = [head, "|" + "---|" * (len(looks) + 5)]
    for arm, s in results.items():
        per = s["looks"]
        lines.append(f"| {arm} | " + " | ".join(f"{per[l]['psnr']:.2f}" for l in looks)
                     + f" | {s['psnr']:.2f} | {s['ssim']:.3f} | {s['warp_error'] * 1e3:.2f} | {s['block_grid']:.3f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arms", nargs="+", required=True, help="renderer specs, each scored on the same frames")
    ap.add_argument("--names", nargs="*", default=None, help="a label per arm (default: the spec)")
    ap.add_argument("--size", type=int, default=128, help="frame width (and height, unless --height)")
    ap.add_argument("--height", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    suite = looks_suite(a.size, a.frames, a.seeds, a.height)
    names = a.names or a.arms
    results: dict[str, dict] = {}
    for name, spec in zip(names, a.arms):
        r = run_eval(spec, suite, steps=a.steps, device=a.device, json_path=out / f"{name.replace('/', '_')}.json")
        label = next(k for k in r["systems"] if k not in ("engine", "reference"))
        results[name] = r["systems"][label]["summary"]
        results.setdefault("engine pass", r["systems"]["engine"]["summary"])
        results.setdefault("reference (floor)", r["systems"]["reference"]["summary"])
    summary = {k: {m: v[m] for m in ("psnr", "ssim", "warp_error", "block_grid", "looks", "frames")}
               for k, v in results.items()}
    (out / "looks_table.json").write_text(json.dumps(summary, indent=1))
    md = table({k: v for k, v in results.items() if k != "reference (floor)"})
    ref = results["reference (floor)"]
    md += f"\n\nReference look's own warping error (the floor): {ref['warp_error'] * 1e3:.2f}e-3, block grid {ref['block_grid']:.3f}."
    (out / "looks_table.md").write_text(md + "\n")
    print(md)


if __name__ == "__main__":
    main()
