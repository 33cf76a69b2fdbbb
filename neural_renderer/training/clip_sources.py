"""Where training clips come from, and the on-device pool the trainer samples batches from.

A clip is L consecutive frames: engine channels (L, H, W, C) (the generator's inputs plus motion and
disocclusion, which the reprojected history needs), reference looks {style: (L, H, W, 3)} (all styles,
or a random few per clip when rendering them is the bottleneck), actions (L, ACTION_DIM) and the camera
constants {name: (L, n)} (bridge.channels.CONSTANTS_LAYOUT; the world group is derived from them). Three
sources, all yielding the same `RawClip`:
- `world_clips`: rendered on the fly by the world renderer (demos.sequence.render_sequence; EGL on
  the GPU machine), training seeds only; `parallel_world_clips` runs it in several processes;
- `dataset_clips`: a directory written by `neurender dataset make` (memory-mapped);
- `synthetic_clips`: a tiny procedural scene in numpy (moving boxes with depth/normals/albedo/ids and
  a per-style shading rule), for CPU tests and smoke runs where OpenGL is unavailable.
`ClipPool` keeps N converted clips on the training device (rendering 512x512 frames every step would
starve a small model) and replaces the oldest as new clips arrive; batches are random crops of them.
The pool keeps each pixel's world position rather than the world group's planes (4 float32 planes, not
WORLD_PLANES), computed at the frame's full size, and turns crops of it into the planes per batch.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from bridge.channels import ACTION_DIM
from neural_renderer.model.inputs import (COND_CHANNELS, GROUP_FLAG, INPUT_CHANNELS, PLANES, WORLD_FIRST,
                                          as_tensor, engine_to_cond, image_to_model, world_features)
from neural_renderer.model.world_position import world_position

MOTION_CHANNELS = ("motion", "disocclusion")
CLIP_CHANNELS = INPUT_CHANNELS + MOTION_CHANNELS


@dataclass
class RawClip:
    engine: dict[str, np.ndarray]  # channel -> (L, H, W, C)
    reference: dict[str, np.ndarray]  # style -> (L, H, W, 3) float [0, 1]
    action: np.ndarray  # (L, ACTION_DIM)
    constants: dict[str, np.ndarray] | None = None  # name -> (L, n) float32; None: the camera is unknown


@dataclass
class ClipBatch:
    cond: torch.Tensor  # (B, L, COND_CHANNELS, R, R)
    target: torch.Tensor  # (B, L, 3, R, R) in [-1, 1]
    action: torch.Tensor  # (B, L, ACTION_DIM)
    prompt: torch.Tensor  # (B, 384)
    motion: torch.Tensor | None = None  # (B, L, 2, R, R) pixels, current -> previous
    disocclusion: torch.Tensor | None = None  # (B, L, 1, R, R), 1 = surface new this frame


# -- sources ------------------------------------------------------------------------------------


def render_seed_clips(seed: int, length: int, resolution: int, styles: list[str], clips_per_seed: int = 4,
                      ctx=None) -> list[RawClip]:
    """One training seed -> clips_per_seed clips of `length` frames (a clip with a camera cut inside is
    skipped). The first frame of the sequence is rendered but dropped: it has no previous frame."""
    from neural_renderer.data.world import check_train_seed, render_sequence

    frames = list(render_sequence(check_train_seed(seed), length * clips_per_seed + 1, resolution, resolution,
                                  styles=tuple(styles), ctx=ctx))[1:]
    out = []
    for k in range(clips_per_seed):
        fr = frames[k * length : (k + 1) * length]
        if any(f.reset for f in fr[1:]):
            continue
        out.append(RawClip(
            engine={c: np.stack([f.engine[c] for f in fr]) for c in CLIP_CHANNELS if c in fr[0].engine},
            # float16: what the pool stores anyway; halves what a render worker pickles to the trainer
            reference={s: np.stack([f.reference[s] for f in fr]).astype(np.float16) for s in styles},
            action=np.stack([np.asarray(f.action, np.float32) for f in fr]),
            constants={k: np.stack([f.constants[k] for f in fr]) for k in fr[0].constants},
        ))
    return out


def world_clips(seeds: Iterator[int], length: int, resolution: int, styles: list[str], clips_per_seed: int = 4,
                looks_per_clip: int = 0, seed: int = 0) -> Iterator[RawClip]:
    """Render clips with the world renderer (one GL context for all). looks_per_clip > 0 renders only
    that many random looks per sequence (the reference passes cost more than the engine pass)."""
    from neural_renderer.data.world import create_context

    ctx = create_context(headless=True)
    rng = np.random.default_rng(seed)
    for s in seeds:
        looks = _pick_looks(rng, styles, looks_per_clip)
        yield from render_seed_clips(s, length, resolution, looks, clips_per_seed, ctx=ctx)


def _pick_looks(rng, styles: list[str], k: int) -> list[str]:
    if not k or k >= len(styles):
        return list(styles)
    return [styles[i] for i in sorted(rng.choice(len(styles), size=k, replace=False))]


_WORKER_CTX = None


def _render_job(job: tuple) -> list[RawClip]:
    global _WORKER_CTX
    from neural_renderer.data.world import create_context

    if _WORKER_CTX is None:  # one GL context per worker process, kept for all its jobs
        import os

        os.nice(10)  # rendering fills the pool in the background; the training step comes first
        _WORKER_CTX = create_context(headless=True)
    seed, length, resolution, looks, clips_per_seed = job
    return render_seed_clips(seed, length, resolution, looks, clips_per_seed, ctx=_WORKER_CTX)


def parallel_world_clips(seeds: Iterator[int], length: int, resolution: int, styles: list[str], workers: int,
                         clips_per_seed: int = 4, looks_per_clip: int = 0, seed: int = 0) -> Iterator[RawClip | None]:
    """world_clips rendered by `workers` processes (each with its own EGL context), in completion order.
    Yields None when no clip is ready yet, so a trainer never waits on rendering."""
    import multiprocessing as mp

    from collections import deque

    rng = np.random.default_rng(seed)
    pool = mp.get_context("spawn").Pool(workers)
    pending: deque = deque()
    try:
        while True:
            while len(pending) < 2 * workers:  # bounded: the seed stream is endless
                job = (next(seeds), length, resolution, _pick_looks(rng, styles, looks_per_clip), clips_per_seed)
                pending.append(pool.apply_async(_render_job, (job,)))
            ready = next((r for r in pending if r.ready()), None)
            if ready is None:
                yield None
                continue
            pending.remove(ready)
            yield from ready.get()
    finally:
        pool.terminate()


def dataset_clips(root: str, length: int, seed: int = 0) -> Iterator[RawClip]:
    from neural_renderer.data import SequenceDataset
    from neural_renderer.data.format import unflatten_constants

    ds = SequenceDataset(root)
    chans = [c for c in CLIP_CHANNELS if c in ds.channels]
    for clip in ds.random_clips(length, seed=seed, channels=chans):
        yield RawClip(engine={c: np.asarray(v) for c, v in clip.engine.items()},
                      reference={s: np.asarray(v, np.float32) for s, v in clip.reference.items()},
                      action=np.asarray(clip.action, np.float32), constants=unflatten_constants(clip.constants))


SYNTH_STYLE_TINT = {  # style -> (tint, light strength, quantise levels or 0)
    "sunny": ((1.0, 0.95, 0.85), 1.0, 0),
    "sunset": ((1.0, 0.6, 0.35), 0.8, 0),
    "night": ((0.25, 0.3, 0.55), 0.5, 0),
    "winter": ((0.9, 0.95, 1.0), 1.1, 0),
    "foggy": ((0.8, 0.8, 0.8), 0.7, 0),
    "cartoon": ((1.0, 1.0, 1.0), 1.0, 3),
    "autumn": ((1.0, 0.75, 0.45), 0.9, 0),
}


def synthetic_clip(seed: int, length: int, resolution: int, styles: list[str]) -> RawClip:
    """Boxes drifting over a ground plane; the 'reference look' is a deterministic per-style shading of
    the G-buffer (tint, light strength, optional quantisation), so a model can learn it exactly."""
    rng = np.random.default_rng(seed)
    R = resolution
    yy, xx = np.mgrid[0:R, 0:R].astype(np.float32) / R
    n_boxes = 4
    pos = rng.uniform(0.1, 0.9, (n_boxes, 2)).astype(np.float32)
    vel = rng.normal(0, 0.01, (n_boxes, 2)).astype(np.float32)
    size = rng.uniform(0.08, 0.25, (n_boxes, 2)).astype(np.float32)
    col = rng.uniform(0.1, 0.9, (n_boxes, 3)).astype(np.float32)
    dist = rng.uniform(3, 30, n_boxes).astype(np.float32)
    pan = rng.normal(0, 0.01)
    engine = {c: [] for c in CLIP_CHANNELS}
    refs = {s: [] for s in styles}
    actions = np.zeros((length, ACTION_DIM), np.float32)
    cams = [synthetic_camera(t, pan) for t in range(length)]
    prev_mat = None
    for t in range(length):
        depth = 50.0 + 40.0 * yy  # ground
        normals = np.zeros((R, R, 3), np.float32); normals[..., 1] = 1.0
        albedo = np.stack([0.3 + 0.1 * np.sin(20 * (xx + pan * t)), 0.45 + 0 * xx, 0.2 + 0 * xx], -1).astype(np.float32)
        mat = np.ones((R, R), np.uint16)
        motion = np.zeros((R, R, 2), np.float32)
        motion[..., 0] = pan * R  # the ground pattern slides left: its point was `pan` further right
        for b in range(n_boxes):
            cx, cy = pos[b] + vel[b] * t
            inside = (np.abs(xx - cx) < size[b, 0] / 2) & (np.abs(yy - cy) < size[b, 1] / 2) & (dist[b] < depth)
            depth = np.where(inside, dist[b], depth)
            nx = np.clip((xx - cx) / (size[b, 0] / 2), -1, 1) * 0.7
            nb = np.stack([nx, 0.3 + 0 * xx, np.sqrt(np.clip(1 - nx ** 2 - 0.09, 0, 1))], -1)
            normals = np.where(inside[..., None], nb, normals)
            albedo = np.where(inside[..., None], col[b], albedo)
            mat = np.where(inside, b + 2, mat)
            motion = np.where(inside[..., None], -vel[b] * R, motion)
        light = np.clip(normals @ np.array([0.3, 0.8, 0.5], np.float32), 0, 1)[..., None]
        fog = np.clip(depth / 100.0, 0, 1)[..., None]
        color = np.clip(albedo * (0.3 + 0.7 * light), 0, 1)
        engine["color"].append(color.astype(np.float32))
        engine["depth"].append(depth.astype(np.float32))
        engine["normals"].append(normals.astype(np.float32))
        engine["albedo"].append(albedo.astype(np.float32))
        engine["material_id"].append(mat.astype(np.uint16)[..., None])
        engine["motion"].append(motion.astype(np.float32))
        if prev_mat is None:
            disocc = np.ones((R, R), np.uint8)
        else:  # new surface: the previous frame showed another material where this point came from
            px = np.clip(np.round(np.arange(R)[None, :] + motion[..., 0]), 0, R - 1).astype(int)
            py = np.clip(np.round(np.arange(R)[:, None] + motion[..., 1]), 0, R - 1).astype(int)
            disocc = (prev_mat[py, px] != mat).astype(np.uint8)
        engine["disocclusion"].append(disocc[..., None])
        prev_mat = mat
        for s in styles:
            tint, strength, q = SYNTH_STYLE_TINT.get(s, ((1, 1, 1), 1.0, 0))
            shade = 0.2 + strength * 0.8 * light
            if q:
                shade = np.round(shade * q) / q
            img = albedo * shade * np.array(tint, np.float32)
            img = img * (1 - 0.5 * fog) + 0.5 * fog * np.array(tint, np.float32) * 0.8
            refs[s].append(np.clip(img, 0, 1).astype(np.float32))
        actions[t, 0] = 1.0
        actions[t, 7] = pan * 100
    return RawClip({c: np.stack(v) for c, v in engine.items()}, {s: np.stack(v) for s, v in refs.items()}, actions,
                   {k: np.stack([c[k] for c in cams]) for k in cams[0]})


def synthetic_camera(t: int, pan: float, fov_y_deg: float = 60.0, near: float = 0.1, far: float = 1000.0) -> dict:
    """The synthetic frames' camera constants: a pinhole at (30 pan t, 2, 0) looking down -z. The synthetic
    depth is not an exact render through it; the world group only needs a fixed function of each pixel."""
    view = np.eye(4)
    view[:3, 3] = -np.array([30.0 * pan * t, 2.0, 0.0])
    f = 1.0 / np.tan(np.radians(fov_y_deg) / 2)
    proj = np.zeros((4, 4))
    proj[0, 0], proj[1, 1], proj[3, 2] = f, f, -1.0
    proj[2, 2], proj[2, 3] = (far + near) / (near - far), 2 * far * near / (near - far)
    out = {"world_to_view": view, "view_to_clip": proj, "clip_to_view": np.linalg.inv(proj), "near": near, "far": far}
    return {k: np.asarray(v, np.float32).reshape(-1) for k, v in out.items()}


def synthetic_clips(length: int, resolution: int, styles: list[str], seed: int = 0) -> Iterator[RawClip]:
    k = 0
    while True:
        yield synthetic_clip(seed * 1_000_003 + k, length, resolution, styles)
        k += 1


# -- a run's source


def clip_stream(cfg, resolution: int, styles: list[str], rank: int):
    """The clips a run's config names (cfg.data: 'world', 'synthetic' or a dataset directory), per DDP rank."""
    seed = cfg.seed * 7919 + rank * 104729
    if cfg.data == "synthetic":
        return synthetic_clips(cfg.clip_len, resolution, styles, seed=seed)
    if cfg.data == "world":
        from neural_renderer.data.world import TRAIN_SEEDS

        def seeds():
            g = torch.Generator().manual_seed(seed)
            while True:
                yield int(TRAIN_SEEDS[int(torch.randint(len(TRAIN_SEEDS), (1,), generator=g))])

        if cfg.render_workers:
            return parallel_world_clips(seeds(), cfg.clip_len, resolution, styles, cfg.render_workers,
                                        looks_per_clip=cfg.looks_per_clip, seed=seed)
        return world_clips(seeds(), cfg.clip_len, resolution, styles, looks_per_clip=cfg.looks_per_clip, seed=seed)
    return dataset_clips(cfg.data, cfg.clip_len, seed=seed)


# -- the on-device pool --------------------------------------------------------------------------


def _to_device(a, dev) -> torch.Tensor:
    """A clip's numpy array -> a tensor on `dev` in its own dtype (inputs.as_tensor), through pinned memory."""
    t = as_tensor(a)
    return t.pin_memory().to(dev, non_blocking=True) if dev.type == "cuda" else t


class ClipPool:
    """`capacity` clips on the training device: conditioning, motion, disocclusion, `looks` reference
    looks per clip (with their style ids) and actions, at `resolution` (square renders). `sample`
    draws random clips, one of each clip's looks, a random phrasing of its prompt and a random crop.
    With `world` (for a model that reads the world group) it also keeps each pixel's world position; without,
    batches carry the group absent."""

    def __init__(self, capacity: int, length: int, resolution: int, styles: list[str],
                 style_prompts: dict[str, torch.Tensor], device=None, dtype=torch.float16, looks: int = 0,
                 world: bool = False):
        self.capacity, self.length, self.resolution = capacity, length, resolution
        self.styles = list(styles)
        self.looks = looks or len(self.styles)
        self.style_prompts = {s: style_prompts[s].to(device) for s in self.styles}
        R = resolution
        # the planes before the world group's (its flag included); those are made per batch from `world_xyz`
        self.cond = torch.zeros(capacity, length, WORLD_FIRST, R, R, device=device, dtype=dtype)
        # world xyz and valid mask; float32: half precision would round positions to 1/8 unit at 100 units out
        self.world_xyz = torch.zeros(capacity, length, 4, R, R, device=device) if world else None
        self.motion = torch.zeros(capacity, length, 2, R, R, device=device, dtype=dtype)
        self.disocclusion = torch.ones(capacity, length, 1, R, R, device=device, dtype=dtype)
        self.refs = torch.zeros(capacity, length, self.looks, 3, R, R, device=device, dtype=dtype)
        self.look_ids = torch.zeros(capacity, self.looks, dtype=torch.long)
        self.action = torch.zeros(capacity, length, ACTION_DIM, device=device)
        self.filled = 0
        self.next_slot = 0

    def add(self, clip: RawClip) -> None:
        R, i = self.resolution, self.next_slot
        L = self.length
        dev = self.cond.device
        # the raw arrays go to the device first, in their own dtypes: every conversion below then runs there
        # (on a GPU trainer, converting 512x512 clips on the host took half of each step)
        eng = {k: _to_device(v[:L], dev) for k, v in clip.engine.items()}
        self.cond[i] = engine_to_cond(eng, resolution=R)[:, :WORLD_FIRST].to(self.cond)
        if self.world_xyz is not None:
            self._add_world(i, eng, clip.constants)
        if "motion" in eng:
            mv = eng["motion"].float().movedim(-1, -3)  # (L, 2, H, W)
            if mv.shape[-1] != R:  # pixels scale with the frame
                mv = F.interpolate(mv, size=(R, R), mode="nearest") * (R / mv.shape[-1])
            self.motion[i] = mv.to(self.motion)
            dis = eng["disocclusion"].float().movedim(-1, -3)
            self.disocclusion[i] = F.interpolate(dis, size=(R, R), mode="nearest").to(self.disocclusion)
        else:
            self.motion[i].zero_()
            self.disocclusion[i].fill_(1.0)  # no motion vectors: history is never valid
        present = [s for s in self.styles if s in clip.reference]
        order = torch.randperm(len(present)).tolist()  # which of the clip's looks the pool keeps
        for j in range(self.looks):
            s = present[order[j % len(present)]]
            ref = image_to_model(_to_device(clip.reference[s][:L], dev))  # (L, 3, H, W)
            if ref.shape[-1] != R:
                ref = F.interpolate(ref, size=(R, R), mode="area" if ref.shape[-1] > R else "bilinear")
            self.refs[i, :, j] = ref.to(self.refs)
            self.look_ids[i, j] = self.styles.index(s)
        self.action[i] = torch.as_tensor(clip.action[:L]).to(self.action)
        self.next_slot = (i + 1) % self.capacity
        self.filled = min(self.filled + 1, self.capacity)

    def _add_world(self, i: int, eng: dict, constants: dict | None) -> None:
        """Slot i's world positions, from the full-size depth (so that crops stay exact), resampled by
        nearest neighbour (an average of two surfaces' positions lies on neither)."""
        L, R = self.length, self.resolution
        pos = None
        if constants is not None and "depth" in eng:
            depth = eng["depth"].float()
            pos = world_position(depth, {k: np.asarray(v)[:L] for k, v in constants.items()})
        if pos is None:
            self.world_xyz[i].zero_()
            self.cond[i, :, GROUP_FLAG["world"]] = 0.0
            return
        xyz, valid, known = pos
        planes = torch.cat([xyz, valid], dim=1)  # (L, 4, H, W)
        if planes.shape[-2:] != (R, R):
            planes = F.interpolate(planes, size=(R, R), mode="nearest")
        self.world_xyz[i] = planes
        self.cond[i, :, GROUP_FLAG["world"]] = known.to(self.cond)[:, None, None]

    def sample(self, batch: int, generator: torch.Generator, crop: int = 0) -> ClipBatch:
        dev = self.cond.device
        idx = torch.randint(self.filled, (batch,), generator=generator)
        look = torch.randint(self.looks, (batch,), generator=generator)
        prompts = []
        for i, j in zip(idx.tolist(), look.tolist()):  # a random phrasing of the clip's look
            table = self.style_prompts[self.styles[int(self.look_ids[i, j])]]
            prompts.append(table[int(torch.randint(len(table), (1,), generator=generator))])
        R = self.resolution
        c = crop if crop and crop < R else R
        y0 = torch.randint(R - c + 1, (batch,), generator=generator).tolist()
        x0 = torch.randint(R - c + 1, (batch,), generator=generator).tolist()
        win = lambda a, k: a[..., y0[k] : y0[k] + c, x0[k] : x0[k] + c]
        pick = lambda a: torch.stack([win(a[i], k) for k, i in enumerate(idx.tolist())]).float()
        refs = torch.stack([win(self.refs[i, :, j], k) for k, (i, j) in enumerate(zip(idx.tolist(), look.tolist()))])
        cond = torch.cat([pick(self.cond), torch.zeros(batch, self.length, COND_CHANNELS - WORLD_FIRST, c, c,
                                                        device=dev)], dim=2)
        if self.world_xyz is not None:
            pos = pick(self.world_xyz)
            first, n = PLANES["world"]
            cond[:, :, first : first + n] = world_features(pos[:, :, :3], pos[:, :, 3:])
        return ClipBatch(cond=cond, target=refs.float(),  # (B, L, 3, c, c)
                         action=self.action[idx.to(dev)], prompt=torch.stack(prompts),
                         motion=pick(self.motion), disocclusion=pick(self.disocclusion))
