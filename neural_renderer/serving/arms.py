"""Serving arms of the hourglass generator: the ways one denoising step can run, each checked against the
plain PyTorch path on the machine it runs on before it may serve; the fastest that passes serves.

    eager                  the model's own forward, no graph (the plain path)
    cpu                    the same computation arranged for a CPU (neural_renderer.serving.cpu_step): the
                           stem's conditioning part once per frame, channels-last convolutions, no mask
    graph                  the same, each steady-state frame replayed as one CUDA graph
    graph+channels-last    + the convolutions in channels-last (cuDNN's NHWC kernels)
    fused                  + the transformer trunk as fused Triton ops (kernels.fused_trunk), in the graph
    fused+channels-last    both
    megakernel             `fused` with the trunk as ONE persistent launch per step that prefetches the next
                           task's weights into L2 while the current task computes (kernels.megakernel_trunk);
                           like every arm it serves only where its timing at start beats the others
    frame-graph            the whole frame (conditioning from the staged bytes, world planes, history, the
                           steps, cache advance, output packing) as one program, replayed as ONE CUDA graph
                           (neural_renderer.serving.frame_path); `graph`'s step inside
    frame-graph+fused      the same with `fused`'s step inside

The check is one step against a filled KV cache, judged by the kernel tests' tolerance rule
(kernels.step_builder.check_hourglass_step); a whole-frame arm must also give the plain path's frames over a
stream with resets, look switches, missing constants and motion (neural_renderer.serving.frame_check). The
timing at start is the steady-state frame as a session runs it from the staged channels to the output in host
memory (`time_frame`: upload, conditioning, history, `steps` forwards, cache advance, packing, download),
synchronised per frame: latency, not queued throughput; whole-frame and step arms are timed on the same work.
`time_arm` (the sampler's frame alone: history, forwards, advance) is the model time benchmarks report.
On CPU `cpu` is the only candidate: it serves when it passes its check, else `eager` does (the plain path
needs no check). It is not timed at start: a frame is tens of milliseconds there, a timing worth trusting
costs seconds of every daemon start, and `python benchmarks/cpu_frame_profile.py --compare` shows it
faster than `eager` (benchmarks/RESULTS.md).
"""
from __future__ import annotations

import copy
import time

import torch


from neural_renderer.serving.arm_table import ARMS, Arm, ArmStep  # noqa: F401  (the arms' names live here too)


def candidates(device: torch.device) -> list[str]:
    if device.type != "cuda":
        return ["cpu"]
    try:
        import triton  # noqa: F401
    except ImportError:
        return [n for n, a in ARMS.items() if not a.fused and not a.cpu]
    return [n for n, a in ARMS.items() if not a.cpu]


def check(model, arm: Arm, size: tuple[int, int]) -> tuple[bool, str]:
    """(passed, detail) of one step of `arm` against `model`'s plain forward at size (H, W)."""
    from kernels.step_builder import check_hourglass_step

    try:
        step = ArmStep(copy.deepcopy(model), arm)
        ok, detail = check_hourglass_step(model, lambda inp, cache: step(*inp, cache), *size, kernel_layout=arm.fused)
        flag = getattr(step.trunk, "spin_flag", lambda: 0)()
        if flag:  # a megakernel wait that timed out: whatever the output, the launch did not run as scheduled
            ok, detail = False, f"{detail}; megakernel spin flag {flag}"
        if ok and arm.frame:
            from neural_renderer.serving.frame_check import check_frames

            ok, frames = check_frames(model, arm, size)
            detail = f"{detail}; {frames}"
        return ok, detail
    except Exception as e:  # noqa: BLE001 - any failure (compile, launch) means: this arm does not serve
        return False, f"{type(e).__name__}: {e}"


def time_arm(model, arm: Arm, size: tuple[int, int], steps: int, frames: int = 20, warmup: int = 8) -> list[float]:
    """Milliseconds of each of `frames` steady-state frames of a sampler running `arm` on a copy of `model` (a
    whole-frame arm: its step arm, the same model work without the frame's conditioning and packing)."""
    arm = ARMS[arm.step_arm]
    from neural_renderer.model.dit import PROMPT_DIM
    from neural_renderer.model.inputs import COND_CHANNELS
    from neural_renderer.serving.stream import StreamingSampler

    m = copy.deepcopy(model)
    dev = next(m.parameters()).device
    sampler = StreamingSampler(m, torch.zeros(PROMPT_DIM), steps=steps, forward=ArmStep(m, arm),
                               cuda_graph=arm.cuda_graph)
    H, W = size
    g = torch.Generator().manual_seed(0)
    cond = torch.rand(1, COND_CHANNELS, H, W, generator=g).to(dev)
    motion, dis = torch.zeros(1, 2, H, W, device=dev), torch.zeros(1, 1, H, W, device=dev)
    return _timed_frames(lambda: sampler.step(cond, None, motion, dis), lambda: sampler.graph is not None,
                         arm.cuda_graph, dev, frames, warmup)


def _timed_frames(frame, graphed, cuda_graph: bool, dev, frames: int, warmup: int) -> list[float]:
    """Runs `frame()` `warmup` times (past the cache's filling frames, so a graph arm has captured; `graphed()`
    says whether it did), then milliseconds of each of `frames` calls, synchronised around each."""
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    for _ in range(warmup):
        frame()
    if cuda_graph and not graphed():
        raise RuntimeError("CUDA graph capture failed")
    ms = []
    for _ in range(frames):
        sync()
        t0 = time.perf_counter()
        frame()
        sync()
        ms.append((time.perf_counter() - t0) * 1e3)
    return ms


def time_frame(model, arm: Arm, size: tuple[int, int], steps: int, frames: int = 20, warmup: int = 8) -> list[float]:
    """Milliseconds of each of `frames` steady-state frames of a session's frame path running `arm` on a copy of
    `model`, from the engine's channels in host memory to the output in host memory (no transport)."""
    import numpy as np

    from bridge.channels import ACTION_DIM
    from neural_renderer.serving.frame_check import build, camera, engine_frame

    path, sampler = build(model, arm, size, steps)
    H, W = size
    pixels, constants = engine_frame(H, W, 0), camera(0.0, W / H)
    action, out = np.zeros(ACTION_DIM, np.float32), np.zeros((H, W, 3), np.uint8)
    graphed = lambda: (any(e.graph is not None for e in path.entries.values()) if arm.frame
                       else sampler.graph is not None)
    return _timed_frames(lambda: path.render(pixels, constants, action, out), graphed, arm.cuda_graph,
                         sampler.device, frames, warmup)


def select(model, steps: int, size: tuple[int, int], forced: str | None = None) -> tuple[str, dict]:
    """(arm name, report {arm: {"ok", "check", "ms_per_frame"?}}): the fastest arm that passes its check on
    `model`'s device, or `forced` (which must pass)."""
    device = next(model.parameters()).device
    names = [forced] if forced else candidates(device)
    unknown = [n for n in names if n not in ARMS]
    if unknown:
        raise ValueError(f"unknown serving arm {unknown[0]!r} (known: auto, {', '.join(ARMS)})")
    if names == ["eager"] and device.type != "cuda":
        return "eager", {"eager": {"ok": True, "check": "the plain path"}}
    report = {}
    for name in names:
        if ARMS[name].cuda_graph and device.type != "cuda":
            report[name] = {"ok": False, "check": "a CUDA graph needs a CUDA device"}
            continue
        ok, detail = check(model, ARMS[name], size)
        entry = report[name] = {"ok": ok, "check": detail}
        if ok and device.type != "cuda":  # the CPU's one candidate is not timed (the module's docstring says why)
            return name, report
        if ok:
            try:
                ms = sorted(time_frame(model, ARMS[name], size, steps))
                entry["ms_per_frame"] = ms[len(ms) // 2]
            except Exception as e:  # noqa: BLE001
                entry.update(ok=False, check=f"{detail}; timing failed: {type(e).__name__}: {e}")
    passing = [n for n in names if report[n]["ok"]]
    if not passing:
        if forced:
            raise ValueError(f"serving arm {forced!r} failed its check here: {report[forced]['check']}")
        return "eager", report  # the plain path needs no check
    return min(passing, key=lambda n: report[n]["ms_per_frame"]), report
