"""Frames per second of the streaming generator per denoising-step count (`neurender bench
generator --model tiny --steps 1 2 4 --json out.json`).

Times `Generator.step` on a steady-state stream (cache full), synchronising the device once per
timed frame so the figure is per-frame latency, not queued throughput. Weights come from a
checkpoint (name or path) or, with --random, from the registry (timing does not depend on values).
"""
from __future__ import annotations

import platform
import time


def bench(model_spec: str, steps_list: list[int], frames: int, warmup: int, device: str, random: bool, dtype: str) -> dict:
    import torch

    from neural_renderer.model.checkpoint import load_model
    from neural_renderer.model.inputs import COND_CHANNELS
    from neural_renderer.serving.generator import Generator
    from neural_renderer.model.registry import build

    dt = getattr(torch, dtype)  # float32 | bfloat16 | float16, the names the generator backend takes
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
