"""Where training clips come from, and the on-device pool the trainer samples batches from.

A clip is L consecutive frames: engine channels (L, H, W, C), reference looks {style: (L, H, W, 3)}
and actions (L, ACTION_DIM). Three sources, all yielding the same `RawClip`:
- `world_clips`: rendered on the fly by the world renderer (demos.sequence.render_sequence; EGL on
  the GPU machine), training seeds only;
- `dataset_clips`: a directory written by `neurender dataset make` (memory-mapped);
- `synthetic_clips`: a tiny procedural scene in numpy (moving boxes with depth/normals/albedo/ids and
  a per-style shading rule), for CPU tests and smoke runs where OpenGL is unavailable.
`ClipPool` keeps N converted clips on the training device (rendering 512x512 frames every step would
starve a small model) and replaces the oldest as new clips arrive.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from bridge.channels import ACTION_DIM
from neural_renderer.model.inputs import COND_CHANNELS, INPUT_CHANNELS, engine_to_cond, image_to_model


@dataclass
class RawClip:
    engine: dict[str, np.ndarray]  # channel -> (L, H, W, C)
    reference: dict[str, np.ndarray]  # style -> (L, H, W, 3) float [0, 1]
    action: np.ndarray  # (L, ACTION_DIM)


@dataclass
class ClipBatch:
    cond: torch.Tensor  # (B, L, COND_CHANNELS, R, R)
    target: torch.Tensor  # (B, L, 3, R, R) in [-1, 1]
    action: torch.Tensor  # (B, L, ACTION_DIM)
    prompt: torch.Tensor  # (B, 384)


# -- sources ------------------------------------------------------------------------------------


def world_clips(seeds: Iterator[int], length: int, resolution: int, styles: list[str], clips_per_seed: int = 4) -> Iterator[RawClip]:
    """Render clips with the world renderer (one GL context for all): each seed gives a sequence of
    clips_per_seed * length frames cut into clips; a clip with a camera cut inside is skipped."""
    from neural_renderer.data.world import create_context
    from neural_renderer.data.world import check_train_seed
    from neural_renderer.data.world import render_sequence

    ctx = create_context(headless=True)
    for seed in seeds:
        frames = list(render_sequence(check_train_seed(seed), length * clips_per_seed, resolution, resolution,
                                      styles=tuple(styles), ctx=ctx))
        for k in range(clips_per_seed):
            fr = frames[k * length : (k + 1) * length]
            if any(f.reset for f in fr[1:]):
                continue
            yield RawClip(
                engine={c: np.stack([f.engine[c] for f in fr]) for c in INPUT_CHANNELS if c in fr[0].engine},
                reference={s: np.stack([f.reference[s] for f in fr]) for s in styles},
                action=np.stack([np.asarray(f.action, np.float32) for f in fr]),
            )


def dataset_clips(root: str, length: int, seed: int = 0) -> Iterator[RawClip]:
    from neural_renderer.data import SequenceDataset

    ds = SequenceDataset(root)
    chans = [c for c in INPUT_CHANNELS if c in ds.channels]
    for clip in ds.random_clips(length, seed=seed, channels=chans):
        yield RawClip(engine={c: np.asarray(v) for c, v in clip.engine.items()},
                      reference={s: np.asarray(v, np.float32) for s, v in clip.reference.items()},
                      action=np.asarray(clip.action, np.float32))


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
    engine = {c: [] for c in INPUT_CHANNELS}
    refs = {s: [] for s in styles}
    actions = np.zeros((length, ACTION_DIM), np.float32)
    for t in range(length):
        depth = 50.0 + 40.0 * yy  # ground
        normals = np.zeros((R, R, 3), np.float32); normals[..., 1] = 1.0
        albedo = np.stack([0.3 + 0.1 * np.sin(20 * (xx + pan * t)), 0.45 + 0 * xx, 0.2 + 0 * xx], -1).astype(np.float32)
        mat = np.ones((R, R), np.uint16)
        for b in range(n_boxes):
            cx, cy = pos[b] + vel[b] * t
            inside = (np.abs(xx - cx) < size[b, 0] / 2) & (np.abs(yy - cy) < size[b, 1] / 2) & (dist[b] < depth)
            depth = np.where(inside, dist[b], depth)
            nx = np.clip((xx - cx) / (size[b, 0] / 2), -1, 1) * 0.7
            nb = np.stack([nx, 0.3 + 0 * xx, np.sqrt(np.clip(1 - nx ** 2 - 0.09, 0, 1))], -1)
            normals = np.where(inside[..., None], nb, normals)
            albedo = np.where(inside[..., None], col[b], albedo)
            mat = np.where(inside, b + 2, mat)
        light = np.clip(normals @ np.array([0.3, 0.8, 0.5], np.float32), 0, 1)[..., None]
        fog = np.clip(depth / 100.0, 0, 1)[..., None]
        color = np.clip(albedo * (0.3 + 0.7 * light), 0, 1)
        engine["color"].append(color.astype(np.float32))
        engine["depth"].append(depth.astype(np.float32))
        engine["normals"].append(normals.astype(np.float32))
        engine["albedo"].append(albedo.astype(np.float32))
        engine["material_id"].append(mat.astype(np.uint16)[..., None])
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
    return RawClip({c: np.stack(v) for c, v in engine.items()}, {s: np.stack(v) for s, v in refs.items()}, actions)


def synthetic_clips(length: int, resolution: int, styles: list[str], seed: int = 0) -> Iterator[RawClip]:
    k = 0
    while True:
        yield synthetic_clip(seed * 1_000_003 + k, length, resolution, styles)
        k += 1


# -- the on-device pool --------------------------------------------------------------------------


class ClipPool:
    def __init__(self, capacity: int, length: int, resolution: int, styles: list[str],
                 style_prompts: dict[str, torch.Tensor], device=None, dtype=torch.float16):
        self.capacity, self.length, self.resolution = capacity, length, resolution
        self.styles = list(styles)
        self.style_prompts = {s: style_prompts[s].to(device) for s in self.styles}
        R = resolution
        self.cond = torch.zeros(capacity, length, COND_CHANNELS, R, R, device=device, dtype=dtype)
        self.refs = torch.zeros(capacity, length, len(self.styles), 3, R, R, device=device, dtype=dtype)
        self.action = torch.zeros(capacity, length, ACTION_DIM, device=device)
        self.filled = 0
        self.next_slot = 0

    def add(self, clip: RawClip) -> None:
        R, i = self.resolution, self.next_slot
        L = self.length
        self.cond[i] = engine_to_cond({k: v[:L] for k, v in clip.engine.items()}, resolution=R).to(self.cond)
        for j, s in enumerate(self.styles):
            ref = image_to_model(clip.reference[s][:L])  # (L, 3, H, W)
            if ref.shape[-1] != R:
                ref = F.interpolate(ref, size=(R, R), mode="area" if ref.shape[-1] > R else "bilinear")
            self.refs[i, :, j] = ref.to(self.refs)
        self.action[i] = torch.as_tensor(clip.action[:L]).to(self.action)
        self.next_slot = (i + 1) % self.capacity
        self.filled = min(self.filled + 1, self.capacity)

    def sample(self, batch: int, generator: torch.Generator) -> ClipBatch:
        dev = self.cond.device
        idx = torch.randint(self.filled, (batch,), generator=generator).to(dev)
        style = torch.randint(len(self.styles), (batch,), generator=generator)
        prompts = []
        for s in style.tolist():  # a random phrasing of the style
            table = self.style_prompts[self.styles[s]]
            prompts.append(table[int(torch.randint(len(table), (1,), generator=generator))])
        style = style.to(dev)
        return ClipBatch(cond=self.cond[idx].float(), target=self.refs[idx, :, style].float(),  # (B, L, 3, R, R)
                         action=self.action[idx], prompt=torch.stack(prompts))
