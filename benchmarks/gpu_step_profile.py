"""Where a training step's time goes on the GPU machine: the same run as benchmarks/gpu_train.py (a RUNS entry),
its pool filled by the EGL render workers, then, side by side in one process:
  paused     steps with the workers idle (no refresh): what the trainer alone reaches
  rendering  steps while the workers render all the time (refresh every step, as gpu_train runs today)
  bursts     steps with the pool refreshed every `--burst-every` steps by many clips (workers idle in between)
and a torch.profiler trace of a few paused steps: the top operators by device time and by host time.
Answers whether the render workers (GL contexts time-sliced with the trainer's CUDA context) or the step
itself (host-bound launches, memory-bound elementwise work) hold training back.

    python benchmarks/gpu_step_profile.py --run tiny --out $OUT/profile [--steps 30]
    python benchmarks/gpu_step_profile.py --run tiny --out /tmp/p --model hg-micro --data synthetic --steps 3  # CPU smoke
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere in the checkout

from benchmarks.gpu_train import RUNS  # noqa: E402  (after the path)


def timed_steps(step, n: int, refresh=None, every: int = 0, sync=lambda: None) -> dict:
    """Runs `step()` n times (refresh() first every `every` steps); ms per step from wall clock, synchronised."""
    sync()
    times, data = [], 0.0
    for i in range(n):
        t0 = time.perf_counter()
        if refresh is not None and every and i % every == 0:
            td = time.perf_counter()
            refresh()
            data += time.perf_counter() - td
        step()
        sync()
        times.append((time.perf_counter() - t0) * 1e3)
    times.sort()
    return {"steps": n, "p50_ms": times[len(times) // 2], "mean_ms": sum(times) / n, "data_s": data}


def gl_renderer() -> str:
    """The GL renderer a render worker gets (an NVIDIA string, or llvmpipe: rendering on the CPU cores)."""
    from neural_renderer.data.world import create_context, release_context

    ctx = create_context(headless=True)
    name = ctx.info.get("GL_RENDERER", "?")
    release_context(ctx)
    return name


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", default="tiny", choices=sorted(RUNS))
    ap.add_argument("--out", required=True)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--burst-every", type=int, default=25)
    ap.add_argument("--model", default="", help="override the run's registry size (CPU smoke: hg-micro)")
    ap.add_argument("--data", default="", help="override the clip source (CPU smoke: synthetic)")
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)

    import torch

    from neural_renderer.model.registry import MODELS, build
    from neural_renderer.serving.prompts import style_embeddings
    from neural_renderer.training.clip_sources import ClipPool, clip_stream
    from neural_renderer.training.config import TrainConfig
    from neural_renderer.training.loop import make_optimizer
    from neural_renderer.training.train import training_step

    over = dict(RUNS[a.run], steps=a.steps)
    if a.model:
        over["model"] = a.model
    if a.data:
        over.update(data=a.data, render_workers=0)
    cfg = TrainConfig(out=str(out), **over)
    cfg = replace(cfg, pool=min(cfg.pool, 4 * cfg.batch))  # enough distinct clips for a timing
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    mcfg = MODELS[cfg.model]()
    if not cfg.world:
        mcfg = replace(mcfg, world_freqs=0)
    model = build(mcfg).to(dev)
    opt = make_optimizer(model, cfg.lr)
    table = style_embeddings()
    styles = sorted(table)
    res = cfg.render_resolution or mcfg.resolution
    if a.model:
        res = mcfg.resolution
    pool = ClipPool(cfg.pool, cfg.clip_len, res, styles, table, device=dev, looks=cfg.looks_per_clip,
                    world=bool(mcfg.world_freqs))
    stream = clip_stream(cfg, res, styles, rank=0)
    t0 = time.time()
    while pool.filled < cfg.pool:
        clip = next(stream)
        if clip is None:
            time.sleep(0.02)
            continue
        pool.add(clip)
    fill_s = time.time() - t0
    g = torch.Generator().manual_seed(0)
    gn = torch.Generator(device=dev).manual_seed(0) if dev.type == "cuda" else g
    amp = torch.bfloat16 if dev.type == "cuda" else None
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)

    def step():
        loss = training_step(model, model, pool.sample(cfg.batch, g, crop=cfg.crop), cfg, g, amp, gn)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def refresh(k: int):
        def take():
            for _ in range(k):
                clip = next(stream)
                if clip is None:
                    break
                pool.add(clip)
        return take

    timed_steps(step, 3, sync=sync)  # warm-up: cuDNN autotuning, allocator
    report = {"run": a.run, "model": cfg.model, "device": torch.cuda.get_device_name() if dev.type == "cuda" else "cpu",
              "batch": cfg.batch, "clip_len": cfg.clip_len, "crop": cfg.crop, "render_workers": cfg.render_workers,
              "pool_fill_s": fill_s, "gl_renderer": gl_renderer()}
    report["paused"] = timed_steps(step, a.steps, sync=sync)
    report["rendering"] = timed_steps(step, a.steps, refresh(cfg.refresh_clips), every=1, sync=sync)
    report["rendering"]["loadavg_1min"] = os.getloadavg()[0]  # CPU-rendering GL (llvmpipe) shows as load
    time.sleep(2.0)  # let the workers finish what they were given
    report["bursts"] = timed_steps(step, a.steps, refresh(4 * max(1, cfg.render_workers)), every=a.burst_every,
                                   sync=sync)
    report["paused_again"] = timed_steps(step, a.steps, sync=sync)
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev.type == "cuda" else [])
    with profile(activities=acts) as prof:
        for _ in range(3):
            step()
        sync()
    key = "self_cuda_time_total" if dev.type == "cuda" else "self_cpu_time_total"
    report["top_device_ops"] = prof.key_averages().table(sort_by=key, row_limit=20)
    report["top_host_ops"] = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=20)
    if hasattr(stream, "close"):
        stream.close()
    (out / "step_profile.json").write_text(json.dumps(report, indent=1))
    for k in ("paused", "rendering", "bursts", "paused_again"):
        print(f"{k:13s} p50 {report[k]['p50_ms']:8.1f} ms/step  mean {report[k]['mean_ms']:8.1f}", flush=True)
    print(report["top_device_ops"], flush=True)


if __name__ == "__main__":
    main()
