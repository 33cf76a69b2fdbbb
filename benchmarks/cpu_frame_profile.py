"""Where a served frame of the shipped `tiny` goes on the CPU, and how fast the optimised CPU arm serves it.

    python benchmarks/cpu_frame_profile.py                 # per-part milliseconds of one frame (plain path)
    python benchmarks/cpu_frame_profile.py --arm cpu       # the same for the CPU arm
    python benchmarks/cpu_frame_profile.py --compare --json benchmarks/results/tiny_cpu_speed.json

A frame is what `neurender serve` does for one session: `GeneratorSession.render` on a GeneratorRenderer on
device cpu, 128x128, 2 denoising steps, with the channels the demo declares (demos.live.DEMO_CHANNELS, in
its dtypes) and the camera constants of a walking camera, so the world group and the reprojected history
are computed as in the demo. The pixels are synthetic (a ground plane under the sky seen by that camera);
timing does not depend on their values.

The profile times each part by wrapping the functions and modules a frame calls (CPU work is synchronous,
so a wall-clock timer around a call is that call's cost). `--compare` alternates the plain path (the
`eager` arm, the model's own forward) and the CPU arm frame block by frame block in one process, so both
see the same machine load, and prints frames/s side by side with their ratio.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere in the checkout

from bridge.backends import FrameInputs, SessionSpec
from bridge.channels import ACTION_DIM
from demos.camera import Camera, frame_constants
from demos.live import DEMO_CHANNELS


def demo_frames(height: int, width: int, n: int, seed: int = 0) -> list[FrameInputs]:
    """n frames of a camera walking forward over a ground plane (y = 0) under the sky, in the demo's dtypes."""
    rng = np.random.default_rng(seed)
    frames = []
    for t in range(n):
        cam = Camera((0.0, 1.7, -0.1 * t), yaw_deg=5.0 * np.sin(t / 7), pitch_deg=-10.0, aspect=width / height)
        prev = Camera((0.0, 1.7, -0.1 * (t - 1)), yaw_deg=5.0 * np.sin((t - 1) / 7), pitch_deg=-10.0, aspect=width / height)
        const = frame_constants(cam, prev, 1 / 30)
        f, u, r = cam.axes()
        ty = np.tan(np.radians(cam.fov_y_deg) / 2)
        ny = 1 - (np.arange(height) + 0.5) * 2 / height
        nx = (np.arange(width) + 0.5) * 2 / width - 1
        ray_y = f[1] + ny[:, None] * ty * u[1] + nx[None, :] * ty * cam.aspect * r[1]  # world y of each view ray
        depth = np.where(ray_y < -1e-3, 1.7 / np.maximum(-ray_y, 1e-3), cam.far)  # along forward: rays have f-length 1
        mat = np.where(depth < cam.far, 3 + (np.floor(np.arange(width) / 16)[None, :] % 4), 0)
        px = {
            "color": rng.random((height, width, 3)).astype(np.float16),
            "depth": depth[..., None].astype(np.float32),
            "normals": np.broadcast_to(np.array([0, 1, 0], np.float16), (height, width, 3)).copy(),
            "motion": rng.normal(0, 0.5, (height, width, 2)).astype(np.float16),
            "albedo": rng.random((height, width, 3)).astype(np.float16),
            "material_id": mat[..., None].astype(np.uint8),
            "disocclusion": (rng.random((height, width, 1)) > 0.97).astype(np.uint8),
        }
        assert set(px) == set(DEMO_CHANNELS) and all(px[k].dtype.name == v for k, v in DEMO_CHANNELS.items())
        action = rng.normal(0, 0.3, ACTION_DIM).astype(np.float32)
        frames.append(FrameInputs(seq=t, pixels=px, constants=const, action=action, prompt=None, reset=False))
    return frames


def open_session(renderer, height: int, width: int, steps: int):
    spec = SessionSpec(width=width, height=height, channels=dict(DEMO_CHANNELS), action_dim=ACTION_DIM,
                       output_format="rgb8", prompt=None, steps=steps)
    return renderer.open_session(spec)


# -- the profile ---------------------------------------------------------------------------------------------

class Timers:
    def __init__(self):
        self.ms = defaultdict(float)
        self.calls = defaultdict(int)
        self.active = False

    @contextmanager
    def part(self, name: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            if self.active:
                self.ms[name] += (time.perf_counter() - t0) * 1e3
                self.calls[name] += 1

    def wrap(self, owner, attr: str, name: str) -> None:
        """Replace owner.attr (a function or bound method) by a timed call of it."""
        fn = getattr(owner, attr)

        def timed(*a, **k):
            with self.part(name):
                return fn(*a, **k)

        setattr(owner, attr, timed)

    def hook(self, module: torch.nn.Module, name: str) -> None:
        starts = []
        module.register_forward_pre_hook(lambda m, a: starts.append(time.perf_counter()))

        def post(m, a, out):
            if self.active:
                self.ms[name] += (time.perf_counter() - starts.pop()) * 1e3
                self.calls[name] += 1
            else:
                starts.pop()

        module.register_forward_hook(post)


def instrument(session, timers: Timers) -> None:
    """Time the parts of `session`'s frames: the wrapped names below, the model's modules by hooks."""
    import neural_renderer.model.inputs as inputs
    import neural_renderer.serving.stream as stream

    gen, model = session.gen, session.r.model
    timers.wrap(session.io, "upload", "input: upload (pack channels)")
    timers.wrap(session, "_cond", "input: engine_to_cond (all)")
    timers.wrap(inputs, "world_position", "input:   world position (depth, camera)")
    timers.wrap(inputs, "world_features", "input:   world features (sin/cos, footprint)")
    timers.wrap(session, "_motion", "input: motion, disocclusion")
    timers.wrap(gen, "_history", "history: noise + reproject")
    timers.wrap(torch, "randn", "noise: randn")  # the frame's noise (history noise is off in tiny)
    timers.wrap(gen, "forward", "model: forward (all)")
    timers.wrap(stream, "euler_step", "sampler: euler step")
    timers.wrap(stream.KVCache, "advance", "sampler: cache advance")  # the cache is made at the first frame
    timers.wrap(session, "emit", "output: download (convert, pack)")
    for name in ("t_embed", "d_embed", "h_embed", "action_embed", "prompt_embed"):
        timers.hook(getattr(model, name), "model:   conditioning vector")
    timers.wrap(model, "_stem_input", "model:   stem input (material embedding, concat)")
    timers.hook(model.stem, "model:   encoder stem conv")
    if getattr(session.r.step, "cpu", None) is not None:  # the CPU arm: the stem's once-a-frame part
        timers.wrap(session.r.step.cpu, "_per_frame", "model:   cpu arm: stem of the conditioning, c (per frame)")
        timers.wrap(session.r.step.cpu.trunk, "_block", "model:   trunk blocks (attention + MLP)")
    for level in model.enc:
        for rb in level:
            timers.hook(rb, "model:   encoder FiLM blocks")
    for conv in model.downs:
        timers.hook(conv, "model:   encoder stride-2 convs")
    timers.hook(model.to_tokens, "model:   to tokens (2x2 conv)")
    for blk in model.blocks:
        timers.hook(blk, "model:   trunk blocks (attention + MLP)")
    timers.hook(model.token_norm, "model:   trunk out norm")
    timers.hook(model.from_tokens, "model:   from tokens (1x1 conv)")
    for conv in model.ups:
        timers.hook(conv, "model:   decoder 1x1 convs")
    for level in model.dec:
        for rb in level:
            timers.hook(rb, "model:   decoder FiLM blocks")
    timers.hook(model.out_norm, "model:   output norm + conv")
    timers.hook(model.out, "model:   output norm + conv")


def profile(arm: str, height: int, width: int, steps: int, frames: int, warmup: int) -> dict:
    from neural_renderer.serving.renderer import GeneratorRenderer

    r = GeneratorRenderer("tiny", device="cpu", kernels=arm)
    s = open_session(r, height, width, steps)
    seq = demo_frames(height, width, warmup + frames)
    out = np.zeros((height, width, 3), np.uint8)
    timers = Timers()
    instrument(s, timers)
    for f in seq[:warmup]:
        s.render(f, out)
    timers.active = True
    t0 = time.perf_counter()
    for f in seq[warmup:]:
        with timers.part("frame (render, all)"):
            s.render(f, out)
    wall = time.perf_counter() - t0
    rows = {k: v / frames for k, v in timers.ms.items()}
    return {"arm": r.kernels, "frames": frames, "ms_per_frame": rows, "fps": frames / wall,
            "calls_per_frame": {k: v / frames for k, v in timers.calls.items()}}


def print_profile(p: dict) -> None:
    total = p["ms_per_frame"]["frame (render, all)"]
    print(f"arm {p['arm']}: {p['fps']:.1f} frames/s, {total:.1f} ms a frame ({p['frames']} frames)")
    for k, v in sorted(p["ms_per_frame"].items(), key=lambda kv: kv[0]):
        print(f"  {k:50s} {v:7.2f} ms  {100 * v / total:5.1f}%  x{p['calls_per_frame'][k]:.0f}")
    print("  (indented rows are parts of the row above them; 'model: forward (all)' less its parts is glue:"
          " stem input concat, silu, interpolate, reshapes)")


# -- plain vs optimised, side by side -------------------------------------------------------------------------

def compare(height: int, width: int, steps: int, frames: int, rounds: int, warmup: int) -> dict:
    from neural_renderer.serving.renderer import GeneratorRenderer

    arms = {"plain": GeneratorRenderer("tiny", device="cpu", kernels="eager"),
            "optimised": GeneratorRenderer("tiny", device="cpu")}
    sessions = {k: open_session(r, height, width, steps) for k, r in arms.items()}
    seq = demo_frames(height, width, warmup + frames)
    outs = {k: np.zeros((height, width, 3), np.uint8) for k in arms}
    for k, s in sessions.items():
        for f in seq[:warmup]:
            s.render(f, outs[k])
    times: dict[str, list[float]] = {k: [] for k in arms}
    for r in range(rounds):  # blocks alternate, the first arm alternating too, so load drift hits both alike
        order = list(arms) if r % 2 == 0 else list(arms)[::-1]
        for k in order:
            for f in seq[warmup:]:
                t0 = time.perf_counter()
                sessions[k].render(f, outs[k])
                times[k].append((time.perf_counter() - t0) * 1e3)
    res = {}
    for k, ts in times.items():
        ts = sorted(ts)
        med = ts[len(ts) // 2]
        res[k] = {"arm": arms[k].kernels, "median_ms": round(med, 2), "p90_ms": round(ts[int(0.9 * (len(ts) - 1))], 2),
                  "fps": round(1e3 / med, 2), "frames": len(ts)}
    res["ratio_fps"] = round(res["optimised"]["fps"] / res["plain"]["fps"], 2)
    return res


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--frames", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=6)
    ap.add_argument("--arm", default="eager", help="profile this serving arm (eager: the plain path; auto)")
    ap.add_argument("--compare", action="store_true", help="plain vs optimised frames/s, alternated in one run")
    ap.add_argument("--rounds", type=int, default=6, help="--compare: blocks of --frames frames per arm")
    ap.add_argument("--json", help="write the result here")
    a = ap.parse_args(argv)
    meta = {"date": time.strftime("%Y-%m-%d"), "device": f"cpu ({platform.machine()}, {torch.get_num_threads()} threads)",
            "torch": torch.__version__, "model": "tiny", "size": f"{a.size}x{a.size}", "steps": a.steps,
            "channels": DEMO_CHANNELS}
    if a.compare:
        res = {**meta, "command": "python benchmarks/cpu_frame_profile.py --compare", "rounds": a.rounds,
               **compare(a.size, a.size, a.steps, a.frames, a.rounds, a.warmup)}
        for k in ("plain", "optimised"):
            print(f"{k:10s} arm {res[k]['arm']:8s} {res[k]['fps']:6.1f} frames/s  median {res[k]['median_ms']:6.1f} ms"
                  f"  p90 {res[k]['p90_ms']:6.1f} ms  ({res[k]['frames']} frames)")
        print(f"optimised / plain: {res['ratio_fps']:.2f}x frames/s")
    else:
        res = {**meta, **profile(a.arm, a.size, a.size, a.steps, a.frames, a.warmup)}
        print_profile(res)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
