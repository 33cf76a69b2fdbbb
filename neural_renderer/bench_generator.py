"""Frames per second of the streaming generator per denoising-step count (`python -m
neural_renderer.bench_generator --model tiny --steps 1 2 4 --json out.json`).

Times `Generator.step` on a steady-state stream (cache full), synchronising the device once per
timed frame so the figure is per-frame latency, not queued throughput. Weights come from a
checkpoint (name or path) or, with --random, from the registry (timing does not depend on values).
"""
from __future__ import annotations

import argparse
import json
import platform
import time


def bench(model_spec: str, steps_list: list[int], frames: int, warmup: int, device: str, random: bool, dtype: str) -> dict:
    import torch

    from neural_renderer.checkpoint import load_model
    from neural_renderer.engine_inputs import COND_CHANNELS
    from neural_renderer.generator import Generator
    from neural_renderer.model import build

    dt = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
    model = build(model_spec) if random else load_model(model_spec, device=device)
    model = model.to(device=device, dtype=dt).eval()
    R = model.cfg.resolution
    cond = torch.randn(1, COND_CHANNELS, R, R, device=device)
    cond[:, 10] = 3.0
    prompt = torch.randn(384)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    rows = []
    for steps in steps_list:
        gen = Generator(model, prompt, steps=steps, seed=0)
        for _ in range(warmup):
            gen.step(cond)
        sync()
        times = []
        for _ in range(frames):
            t0 = time.perf_counter()
            gen.step(cond)
            sync()
            times.append(time.perf_counter() - t0)
        times.sort()
        med = times[len(times) // 2]
        rows.append({"steps": steps, "forwards_per_frame": steps + 1, "median_ms": med * 1e3,
                     "p99_ms": times[min(len(times) - 1, int(0.99 * len(times)))] * 1e3, "fps": 1.0 / med})
    return {"model": model.cfg.name, "params": sum(p.numel() for p in model.parameters()), "resolution": R,
            "device": torch.cuda.get_device_name() if device.startswith("cuda") else f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)",
            "dtype": dtype, "frames": frames, "torch": torch.__version__, "rows": rows}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="tiny")
    p.add_argument("--steps", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--frames", type=int, default=50)
    p.add_argument("--warmup", type=int, default=8)
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="fp32", choices=["fp32", "bf16", "fp16"])
    p.add_argument("--random", action="store_true", help="registry weights instead of a checkpoint")
    p.add_argument("--json", default="")
    a = p.parse_args(argv)
    res = bench(a.model, a.steps, a.frames, a.warmup, a.device, a.random, a.dtype)
    for r in res["rows"]:
        print(f"{res['model']} {res['dtype']} {res['device']}: steps={r['steps']} median {r['median_ms']:.2f} ms "
              f"p99 {r['p99_ms']:.2f} ms -> {r['fps']:.1f} frames/s")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
