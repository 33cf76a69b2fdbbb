"""One GPU call of generator training: trains the named runs (one per call uses the GPU best; several run
side by side, each with its own EGL world-rendering worker processes), then streams each trained model over a training seed for a
sample grid, and times the streamed frame (bf16, CUDA graph, 2 steps) at the serving sizes.

Measures: training steps/s and samples/s, the share of time spent taking rendered clips, final loss,
per-look PSNR on the sample grid (training seed: progress, not evaluation), ms per frame.
Writes under OUT: tiny/base checkpoints (EMA, bf16), the grids, train_<model>.json, gpu_train.json.

    python benchmarks/gpu_train.py --out $OUT --budget 380 [--init neural_renderer/checkpoints]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

# One trainer per call: three side by side starved the GPU (31-55% of each step waiting for clips). Each run
# gets most of the machine's 16 cores as EGL render workers and a large pool (many distinct clips per step).
_TINY = dict(model="tiny", batch=32, clip_len=4, lr=8e-4, warmup=150, pool=1200, refresh_every=1, refresh_clips=4,
             looks_per_clip=3, render_workers=int(os.environ.get("TINY_WORKERS", 12)), render_resolution=128, crop=0,
             steps=100000)
SAMPLE_SIDE = {"tiny": 128, "base": 256}  # registry size -> frame side of its sample grid and long-run check
RUNS = {  # run name -> TrainConfig overrides (model = the registry size)
    "tiny": _TINY,
    "tiny-noworld": dict(_TINY, world=False),
    "tiny-plain": dict(_TINY, edge_loss=0.0),  # the loss ablation: plain x-prediction MSE
    "tiny-rounds3": dict(_TINY, own_output_rounds=3),  # chained own-output histories (a full 4-frame rollout)
    "base": dict(model="base", batch=12, clip_len=4, lr=5e-4, warmup=150, pool=256, refresh_every=1, refresh_clips=4,
                 looks_per_clip=2, render_workers=int(os.environ.get("BASE_WORKERS", 13)), render_resolution=512,
                 crop=256, steps=100000),
}


def parse_overrides(items: list[str]) -> dict:
    """['refresh_every=25', 'edge_loss=0.1'] -> TrainConfig overrides, each value cast to its field's type."""
    from dataclasses import fields

    from neural_renderer.training.config import TrainConfig

    types = {f.name: type(f.default) for f in fields(TrainConfig) if not isinstance(f.default, (list, dict))}
    out = {}
    for item in items:
        key, _, value = item.partition("=")
        if key not in types:
            raise SystemExit(f"--set {item!r}: {key!r} is not a TrainConfig field")
        out[key] = value.lower() in ("1", "true", "yes") if types[key] is bool else types[key](value)
    return out


def train_one(run: str, out: Path, budget: float, init: str, overrides: dict) -> None:
    import torch

    torch.set_num_threads(3)
    from neural_renderer.training.train import TrainConfig, train

    cfg = TrainConfig(out=str(out / run), time_budget_s=budget, fill_max_s=45, log_every=50,
                      ckpt_every=0, init=init, seed=int(time.time()) % 1000, **{**RUNS[run], **overrides})
    print(json.dumps(train(cfg, progress=False)), flush=True)


def time_frames(model, sizes, steps=2, frames=60) -> dict:
    import torch

    from neural_renderer.model.inputs import COND_CHANNELS
    from neural_renderer.serving.prompts import style_embeddings
    from neural_renderer.serving.stream import StreamingSampler

    out = {}
    for (h, w) in sizes:
        s = StreamingSampler(model, style_embeddings()["sunny"][0], steps=steps)
        cond = torch.zeros(1, COND_CHANNELS, h, w, device="cuda")
        mv = torch.zeros(1, 2, h, w, device="cuda")
        dis = torch.zeros(1, 1, h, w, device="cuda")
        for _ in range(8):
            s.step(cond, None, mv, dis)
        torch.cuda.synchronize()
        ms = []
        for _ in range(frames):
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            s.step(cond, None, mv, dis)
            b.record()
            b.synchronize()
            ms.append(a.elapsed_time(b))
        ms.sort()
        out[f"{w}x{h}"] = {"p50_ms": ms[len(ms) // 2], "p99_ms": ms[int(len(ms) * 0.99) - 1], "graph": s.graph is not None}
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--budget", type=float, default=380)
    ap.add_argument("--init", default="", help="folder with tiny.json/base.json to continue from")
    ap.add_argument("--models", default="tiny,tiny-noworld,base", help="runs (RUNS keys)")
    ap.add_argument("--child", default="")
    ap.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE",
                    help="TrainConfig overrides for every run, e.g. refresh_every=25 refresh_clips=96")
    ap.add_argument("--eval", nargs="?", const="all", default="",
                    help="then score these runs (comma list, default all) per look (benchmarks/looks_table.py)")
    ap.add_argument("--eval-frames", type=int, default=16)
    ap.add_argument("--stability", action="store_true",
                    help="then score every trained run beside the shipped model of its size over long runs on TRAINING "
                         "seeds (benchmarks/tune_inference.py: 7 looks x 120 frames, PSNR of the first and second half)")
    a = ap.parse_args()
    out = Path(a.out)
    if a.child:
        size = RUNS[a.child]["model"]
        init = str(Path(a.init) / f"{size}.json") if a.init and (Path(a.init) / f"{size}.json").is_file() else ""
        if init:  # continue only from weights of the same architecture (the shipped base may still be the DiT)
            from neural_renderer.model.registry import MODELS

            if json.loads(Path(init).read_text())["config"].get("arch", "dit") != MODELS[size]().arch:
                init = ""
        train_one(a.child, out, a.budget, init, parse_overrides(a.set))
        return
    out.mkdir(parents=True, exist_ok=True)
    models = a.models.split(",")
    procs = {}
    for m in models:
        log = open(out / f"train_{m}.log", "w")
        procs[m] = subprocess.Popen([sys.executable, __file__, "--out", str(out), "--budget", str(a.budget),
                                     "--init", a.init, "--child", m, "--set", *a.set], stdout=log, stderr=subprocess.STDOUT,
                                    env={**os.environ, "PYTHONUNBUFFERED": "1"})
    t0 = time.time()
    while any(p.poll() is None for p in procs.values()):
        time.sleep(15)
        if time.time() - t0 > a.budget + 150:  # a trainer that saved and then hung on exit (its EGL render pool)
            for m, p in procs.items():
                if p.poll() is None and (out / m / "train_result.json").is_file():
                    p.kill()
        print(f"[{time.time() - t0:.0f}s] " + " | ".join(
            f"{m}: {(out / f'train_{m}.log').read_text()[-160:].splitlines()[-1] if (out / f'train_{m}.log').stat().st_size else ''}"
            for m in models), flush=True)
    report = {"train_s": time.time() - t0, "returncodes": {m: p.returncode for m, p in procs.items()}}

    import torch

    from neural_renderer.data.world import create_context
    from neural_renderer.model.checkpoint import load_model
    from neural_renderer.training.samples import sample_grid

    ctx = create_context(headless=True)
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    sizes = {"tiny": [(128, 128), (256, 256)], "base": [(512, 512), (720, 1280)]}  # registry size -> (H, W)
    for m in models:
        res = out / m / "train_result.json"
        if not res.is_file():
            continue
        report[m] = {"train": json.loads(res.read_text())}
        size = RUNS[m]["model"]
        model = load_model(out / m / f"{size}.json", device=dev, dtype=torch.float32)
        report[m]["grid_psnr_train_seed"] = sample_grid(model, out / f"grid_{m}.png", seed=7,
                                                        size=SAMPLE_SIDE[size], frames=24, ctx=ctx)
        if dev == "cuda":
            model = load_model(out / m / f"{size}.json", device=dev, dtype=torch.bfloat16)
            report[m]["frame_ms_bf16_2steps"] = time_frames(model, sizes[size])
        print(m, json.dumps(report[m]), flush=True)
    (out / "gpu_train.json").write_text(json.dumps(report, indent=1))
    if a.eval:
        eval_sizes = {"tiny": [("128", "0")], "base": [("512", "0"), ("1280", "720")]}
        for m in models if a.eval == "all" else [m for m in a.eval.split(",") if m in models]:
            size = RUNS[m]["model"]
            ck = out / m / f"{size}.json"
            if not ck.is_file():
                continue
            for i, (w, h) in enumerate(eval_sizes[size]):
                ablations = i == 0 and m == size  # the ablation runs (tiny-plain, ...) get only their own row
                arms = [f"generator:{ck}"] + ([f"generator:{ck}?context=0&noise=fixed", f"generator:{ck}?history=0"]
                                              if ablations else [])
                names = [m, f"{m} no-context fixed-noise", f"{m} no-history"][:len(arms)]
                subprocess.run([sys.executable, "benchmarks/looks_table.py", "--arms", *arms, "--names", *names,
                                "--size", w, "--height", h, "--device", dev,
                                "--frames", str(a.eval_frames), "--seeds", "2", "--out", str(out / f"looks_{m}_{w}x{h or w}")])
    if a.stability:
        for cmd in stability_commands(out, models, dev):
            subprocess.run(cmd)


# training seeds and one look each (tune_inference's run k = seeds[k] in looks[k]): never the evaluation seeds
STABILITY_SEEDS = (17, 230, 512, 771, 101, 388, 645)
STABILITY_LOOKS = ("sunset", "night", "sunny", "winter", "cartoon", "autumn", "foggy")


def stability_commands(out: Path, models: list[str], device: str, frames: int = 120, seeds=STABILITY_SEEDS,
                       looks=STABILITY_LOOKS) -> list[list[str]]:
    """One tune_inference command per registry size trained in this call: the shipped model of that size (the
    sweep's one value, history noise 0, is how the shipped tiny and base serve) beside each run's checkpoint, over
    long runs where the history feedback builds up (a short window never shows it: every CPU fine-tune so far lost
    most in the second half)."""
    by_size: dict[str, list[str]] = {}
    for m in models:
        size = RUNS[m]["model"]
        if (out / m / f"{size}.json").is_file():
            by_size.setdefault(size, []).append(f"generator:{out / m / f'{size}.json'}")
    return [[sys.executable, "benchmarks/tune_inference.py", "--model", size, "--values", "0", "--arms", *arms,
             "--seeds", *map(str, seeds), "--looks", *looks, "--frames", str(frames),
             "--size", str(SAMPLE_SIDE[size]), "--device", device, "--out", str(out / f"stability_{size}")]
            for size, arms in by_size.items()]


if __name__ == "__main__":
    main()
