"""The whole-frame path (neural_renderer.serving.frame_path) against the plain per-frame path
(neural_renderer.serving.plain_frame), frame by frame over a stream that has everything a session meets: the
cache filling and steady (so a CUDA graph is captured and replayed), a camera that moves, a reset, a look
switch, a frame without camera constants, a frame without motion vectors. Used by the serving arms' check at
start and by the tests; also the synthetic engine stream the frame timing feeds.
"""
from __future__ import annotations

import copy
import math

import numpy as np
import torch

from bridge.channels import ACTION_DIM

CHANNELS = {"color": np.float16, "depth": np.float16, "normals": np.float16, "albedo": np.float16,
            "material_id": np.uint8, "motion": np.float16, "disocclusion": np.uint8}


def camera(t: float, aspect: float) -> dict[str, np.ndarray]:
    """A GL perspective camera 5 units back from the origin, panning along x with t."""
    f, near, far = 1.0 / math.tan(math.radians(30.0)), 0.1, 100.0
    proj = np.array([[f / aspect, 0, 0, 0], [0, f, 0, 0], [0, 0, (far + near) / (near - far), 2 * far * near / (near - far)],
                     [0, 0, -1, 0]], np.float64)
    w2v = np.eye(4)
    w2v[:3, 3] = (-0.3 * t, -2.0, -5.0)
    return {"world_to_view": w2v.reshape(-1).astype(np.float32), "clip_to_view": np.linalg.inv(proj).reshape(-1).astype(np.float32),
            "far": np.float32([far])}


def engine_frame(H: int, W: int, t: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed * 1000 + t)
    out = {k: rng.random((H, W, n)).astype(dt) for k, n, dt in
           (("color", 3, np.float16), ("normals", 3, np.float16), ("albedo", 3, np.float16))}
    out["depth"] = (1.0 + rng.random((H, W, 1)) * 40.0).astype(np.float16)
    out["depth"][: H // 4, : W // 3] = 1e4  # sky
    out["material_id"] = rng.integers(0, 40, (H, W, 1)).astype(np.uint8)
    out["motion"] = rng.normal(0.0, 1.5, (H, W, 2)).astype(np.float16)
    out["disocclusion"] = (rng.random((H, W, 1)) > 0.85).astype(np.uint8)
    return out


def stream(H: int, W: int, n: int, seed: int = 0) -> list[dict]:
    """n frames: {pixels, constants, action, reset, prompt (an embedding or None)}; a reset at frame 4, a look
    switch at 6, no constants at 2, no motion (nor disocclusion) at 3, the cache steady after."""
    g = torch.Generator().manual_seed(seed)
    frames = []
    for t in range(n):
        pixels = engine_frame(H, W, t, seed)
        if t == 3:
            pixels = {k: v for k, v in pixels.items() if k not in ("motion", "disocclusion")}
        frames.append({"pixels": pixels, "constants": None if t == 2 else camera(float(t), W / H),
                       "action": torch.randn(ACTION_DIM, generator=g).numpy(), "reset": t == 4,
                       "prompt": torch.randn(384, generator=g) if t == 6 else None})
    return frames


def run(path, sampler, frames: list[dict], out_format=(np.float16, 3)) -> list[np.ndarray]:
    """Each frame through `path` (PlainFrame or FramePath over `sampler`), its events acted on as a session does."""
    outs = []
    for f in frames:
        if f["reset"]:
            sampler.reset()
        if f["prompt"] is not None:
            sampler.set_prompt(f["prompt"])
        out = np.zeros((*path.size, out_format[1]), out_format[0])
        path.render(f["pixels"], f["constants"], f["action"], out)
        outs.append(out)
    return outs


def build(model, arm, size: tuple[int, int], steps: int = 2, seed: int = 0, whole: bool | None = None,
          sampler_graph: bool | None = None, **sampler_kw):
    """(path, sampler): a session's frame path over its own copy of `model` driven by `arm`'s step (the arm
    converts its model in place). `whole`: the whole-frame path (default: the arm's own way); `sampler_graph`:
    whether the plain path's sampler replays its step graph (default: the arm's)."""
    from neural_renderer.model.dit import PROMPT_DIM
    from neural_renderer.serving.arm_table import ARMS, ArmStep
    from neural_renderer.serving.frame_path import FramePath
    from neural_renderer.serving.frame_program import VECTOR
    from neural_renderer.serving.plain_frame import PlainFrame
    from neural_renderer.serving.staging import FrameIO
    from neural_renderer.serving.stream import StreamingSampler

    whole = arm.frame if whole is None else whole
    prompt = torch.randn(PROMPT_DIM, generator=torch.Generator().manual_seed(seed + 7))
    m = copy.deepcopy(model)
    s = StreamingSampler(m, prompt, steps=steps, seed=seed, forward=ArmStep(m, ARMS[arm.step_arm]),
                         cuda_graph=arm.cuda_graph and not arm.frame if sampler_graph is None else sampler_graph,
                         **sampler_kw)
    io = FrameIO(s.device, extra_bytes=4 * VECTOR)
    world = bool(m.cfg.world_freqs)
    return (FramePath(s, io, size, world, arm.cuda_graph) if whole else PlainFrame(s, io, size, world)), s


def pair(model, arm, size: tuple[int, int], steps: int = 2, seed: int = 0, **sampler_kw):
    """((plain path, sampler), (whole-frame path, sampler)): alike at the start, the same step; the plain one eager."""
    return (build(model, arm, size, steps, seed, whole=False, sampler_graph=False, **sampler_kw),
            build(model, arm, size, steps, seed, whole=True, **sampler_kw))


def check_frames(model, arm, size: tuple[int, int], steps: int = 2) -> tuple[bool, str]:
    """(passed, detail): the whole-frame path of `arm` against the plain path with the same step, over `stream`.
    Bound: two steps of the rgb8 output (the same computation; kernels inside a graph may round otherwise)."""
    c = model.cfg
    frames = stream(*size, 6 + c.sinks + c.window + 4)
    (plain, s0), (whole, s1) = pair(model, arm, size, steps)
    a, b = run(plain, s0, frames), run(whole, s1, frames)
    err = max(float(np.abs(x.astype(np.float32) - y.astype(np.float32)).max()) for x, y in zip(a, b))
    bound = 2.0 / 255.0
    replays = whole.use_graph and any(e.graph is not None for e in whole.entries.values())
    detail = f"frame err {err:.3g} {'<=' if err <= bound else '>'} bound {bound:.3g}" + (", graph replayed" if replays else "")
    return err <= bound and (replays or not whole.use_graph), detail
