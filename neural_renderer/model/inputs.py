"""Engine channels (bridge.channels conventions) -> the generator's per-pixel conditioning tensor.

Layout of the COND_CHANNELS planes, in this order:
  color (3, linear RGB mapped to [-1, 1]), depth (1, log-depth normalised to about [-1, 1]),
  normals (3, view space, as given), albedo (3, mapped to [-1, 1]), material id (1, id modulo
  MATERIAL_BUCKETS, embedded inside the model), one presence flag per conditioning group
  (CONDITIONING_GROUPS order: color, gbuffer, world), then the world group's planes (WORLD_PLANES).
A group the client did not declare is all zeros with its flag 0, which is also how training drops
groups, so one model serves any subset.

The `world` group is derived by us, never sent: sin/cos of each pixel's world position (from depth and
the frame's camera constants, model/world_position.py) at WORLD_PERIODS. The reference looks paint
detail that lives in world space and is absent from the G-buffer (facade windows, lane markings, noise
at world frequencies); without the position a model can only blur it. Its planes come last so that the
first BASE_COND_CHANNELS planes are exactly the layout models without the group were trained on.
"""
from __future__ import annotations

import math
from typing import Mapping

import numpy as np
import torch
import torch.nn.functional as F

from neural_renderer.model.world_position import world_position

# Conditioning groups of the generator: each is dropped as a unit in training so one model
# serves any subset a client declares.
CONDITIONING_GROUPS: dict[str, tuple[str, ...]] = {
    "color": ("color",),
    "gbuffer": ("depth", "normals", "albedo", "material_id"),
    "world": ("world",),
}
DERIVED_CHANNELS = ("world",)  # computed here from other inputs; no client sends them
# Every engine channel the generator reads, in plane order.
INPUT_CHANNELS: tuple[str, ...] = tuple(ch for chans in CONDITIONING_GROUPS.values() for ch in chans
                                        if ch not in DERIVED_CHANNELS)
# World periods in world units, geometric over 0.5..8: generic scales (facades, lanes, noise octaves), none
# tuned to one shader's pattern; a network combines neighbouring octaves into the periods between.
WORLD_PERIODS: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0, 8.0)
WORLD_PLANES = 2 * 3 * len(WORLD_PERIODS)  # (sin, cos) x (x, y, z) x period
GROUP_FLAG: dict[str, int] = {g: 11 + i for i, g in enumerate(CONDITIONING_GROUPS)}
BASE_COND_CHANNELS = GROUP_FLAG["world"]  # the planes of a model without the world group
WORLD_FIRST = 11 + len(CONDITIONING_GROUPS)
PLANES: dict[str, tuple[int, int]] = {  # channel -> (first plane, components)
    "color": (0, 3),
    "depth": (3, 1),
    "normals": (4, 3),
    "albedo": (7, 3),
    "material_id": (10, 1),
    "world": (WORLD_FIRST, WORLD_PLANES),
}
MATERIAL_CHANNEL = 10
MATERIAL_BUCKETS = 32
COND_CHANNELS = WORLD_FIRST + WORLD_PLANES
DEPTH_LOG_RANGE = math.log1p(1000.0)  # depths beyond 1000 world units (sky) saturate
GROUP_PLANES: dict[str, list[int]] = {
    g: [p for ch in chans for p in range(PLANES[ch][0], PLANES[ch][0] + PLANES[ch][1])]
    for g, chans in CONDITIONING_GROUPS.items()
}


def as_tensor(a) -> torch.Tensor:
    if isinstance(a, torch.Tensor):
        return a
    a = np.asarray(a)
    if a.dtype == np.uint16:
        a = a.astype(np.int32)
    return torch.from_numpy(np.ascontiguousarray(a))


def normalise_channel(name: str, a: torch.Tensor) -> torch.Tensor:
    """One engine channel (..., H, W, C) in its wire dtype -> float planes (..., C, H, W)."""
    if name == "material_id":
        x = (a.long() % MATERIAL_BUCKETS).float()
    elif name in ("color", "albedo"):
        x = a.float() / 255.0 if a.dtype == torch.uint8 else a.float()
        x = x.clamp(0.0, 1.0) * 2.0 - 1.0
    elif name == "depth":
        d = torch.nan_to_num(a.float(), nan=0.0, posinf=1e4).clamp_(0.0, 1e4)
        x = (torch.log1p(d) / DEPTH_LOG_RANGE).clamp_(0.0, 1.5) * 2.0 - 1.0
    elif name == "normals":
        x = torch.nan_to_num(a.float()).clamp_(-1.0, 1.0)
    else:
        raise KeyError(f"channel {name!r} is not a generator input")
    if PLANES[name][1] == 1 and (x.dim() < 3 or x.shape[-1] != 1):
        x = x[..., None]  # (..., H, W) -> (..., H, W, 1)
    if x.dim() < 3 or x.shape[-1] != PLANES[name][1]:
        raise ValueError(f"channel {name!r} has shape {tuple(a.shape)}, expected (..., H, W, {PLANES[name][1]})")
    return x.movedim(-1, -3)


def engine_to_cond(engine: Mapping[str, object], resolution: int | None = None,
                   constants: Mapping[str, object] | None = None) -> torch.Tensor:
    """Engine channels, each (..., H, W, C) numpy or torch, any subset -> (..., COND_CHANNELS, H', W').

    Channels that are not generator inputs (motion, disocclusion) are ignored. With the frame's camera
    `constants` (bridge.channels.CONSTANTS_LAYOUT names -> (..., n) values, or (n,) for all frames) and a
    depth channel, the world group is filled in (at the frames' own size, before any resampling); it is
    worth computing only for a model that reads it. With `resolution`, the planes are resampled to
    resolution x resolution (area for values, nearest for material ids).
    """
    planes = {k: normalise_channel(k, as_tensor(v)) for k, v in engine.items() if k in INPUT_CHANNELS}
    if not planes:
        raise ValueError("engine_to_cond needs at least one generator channel; use blank_cond for none")
    first_plane = next(iter(planes.values()))
    lead, (H, W) = first_plane.shape[:-3], first_plane.shape[-2:]
    out = torch.zeros(*lead, COND_CHANNELS, H, W, device=first_plane.device)
    for name, x in planes.items():
        if x.shape[:-3] != lead or x.shape[-2:] != (H, W):
            raise ValueError(f"channel {name!r} has shape {tuple(x.shape)}, other channels {tuple(first_plane.shape)}")
        first, n = PLANES[name]
        out[..., first : first + n, :, :] = x.to(out.device)
    present = planes
    for g, chans in CONDITIONING_GROUPS.items():
        if any(c in present for c in chans):
            out[..., GROUP_FLAG[g], :, :] = 1.0
    if constants is not None and "depth" in engine:
        pos = world_position(as_tensor(engine["depth"]).to(out.device), constants)
        if pos is not None:
            xyz, valid, known = pos
            first, n = PLANES["world"]
            out[..., first : first + n, :, :] = world_features(xyz, valid)
            out[..., GROUP_FLAG["world"], :, :] = known.float()[..., None, None]
    if resolution is not None and (H, W) != (resolution, resolution):
        out = resize_cond(out, resolution)
    return out


def world_features(xyz: torch.Tensor, valid: torch.Tensor, periods: torch.Tensor | None = None) -> torch.Tensor:
    """xyz (..., 3, H, W) world units, valid (..., 1, H, W) -> the world planes (..., WORLD_PLANES, H, W):
    (sin, cos) of 2 pi xyz / period, ordered period-major, then axis, then sin/cos. Each sinusoid is scaled by
    its box-filtered amplitude over the pixel's footprint along that axis (sinc, 0 past its first zero), so
    a period a pixel cannot resolve (far or grazing surfaces) reads 0 instead of aliased noise; 0 where
    invalid (sky, unknown camera). `periods`: WORLD_PERIODS already on the device (`world_periods`), for a caller
    inside a captured graph, where a host-to-device copy cannot run."""
    fw = _footprint(xyz, valid)[..., None, :, :, :]  # (..., 1, 3, H, W)
    periods = (world_periods(xyz.device) if periods is None else periods).view(-1, 1, 1, 1)
    ratio = fw / periods  # (..., P, 3, H, W)
    amp = torch.where(ratio < 1.0, torch.sinc(ratio.clamp(max=1.0)), torch.zeros_like(ratio)) * valid[..., None, :, :, :]
    phase = (2.0 * math.pi) * xyz.float()[..., None, :, :, :] / periods
    feats = torch.stack([amp * torch.sin(phase), amp * torch.cos(phase)], dim=-3)  # (..., P, 3, 2, H, W)
    return feats.flatten(-5, -3)


def world_periods(device) -> torch.Tensor:
    return torch.tensor(WORLD_PERIODS, device=device, dtype=torch.float32)


def _footprint(xyz: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """(..., 3, H, W) -> per axis the world-space change across one pixel, |d/dx| + |d/dy| (GLSL's fwidth).
    Each derivative is the smaller of the two one-sided differences between valid pixels, so a depth edge
    (where one side jumps to another surface) keeps the footprint of the surface the pixel is on; a pixel
    without a valid neighbour along an axis gets an infinite footprint."""
    xyz = xyz.float()
    total = torch.zeros_like(xyz)
    for dim in (-1, -2):
        n = xyz.shape[dim]
        pair = valid.narrow(dim, 1, n - 1) * valid.narrow(dim, 0, n - 1)
        diff = (xyz.narrow(dim, 1, n - 1) - xyz.narrow(dim, 0, n - 1)).abs()
        diff = torch.where(pair > 0, diff, torch.full_like(diff, math.inf))
        edge = torch.full_like(xyz.narrow(dim, 0, 1), math.inf)
        total = total + torch.minimum(torch.cat([diff, edge], dim), torch.cat([edge, diff], dim))
    return total


def resize_cond(cond: torch.Tensor, resolution: int) -> torch.Tensor:
    lead = cond.shape[:-3]
    flat = cond.reshape(-1, *cond.shape[-3:])
    vals = F.interpolate(flat, size=(resolution, resolution), mode="area" if flat.shape[-1] >= resolution else "bilinear")
    mats = F.interpolate(flat[:, MATERIAL_CHANNEL : MATERIAL_CHANNEL + 1], size=(resolution, resolution), mode="nearest")
    vals[:, MATERIAL_CHANNEL : MATERIAL_CHANNEL + 1] = mats
    return vals.reshape(*lead, COND_CHANNELS, resolution, resolution)


def blank_cond(*lead: int, resolution: int, device=None) -> torch.Tensor:
    """No conditioning at all (a pure action-driven world model)."""
    return torch.zeros(*lead, COND_CHANNELS, resolution, resolution, device=device)


def drop_groups(cond: torch.Tensor, keep: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Zero whole groups per sample: keep[g] is a (B,) bool/float tensor; cond (B, ..., C, H, W)."""
    cond = cond.clone()
    for g, k in keep.items():
        m = k.to(cond.device, cond.dtype).view(-1, *([1] * (cond.dim() - 1)))
        idx = GROUP_PLANES[g] + [GROUP_FLAG[g]]
        cond[..., idx, :, :] = cond[..., idx, :, :] * m
    return cond


def sample_group_keep(batch: int, p: float, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Which groups each of `batch` imagined clients declares (each dropped with probability p), as
    drop_groups takes them. The world group is derived from depth, so it never outlives the gbuffer."""
    keep = {g: torch.rand(batch, generator=generator) >= p for g in CONDITIONING_GROUPS}
    keep["world"] = keep["world"] & keep["gbuffer"]
    return keep


def image_to_model(img) -> torch.Tensor:
    """(..., H, W, 3) float [0, 1] -> (..., 3, H, W) in [-1, 1]."""
    return as_tensor(img).float().clamp(0, 1).movedim(-1, -3) * 2.0 - 1.0


def model_to_image(x: torch.Tensor) -> torch.Tensor:
    """(..., 3, H, W) in [-1, 1] -> (..., H, W, 3) float [0, 1]."""
    return ((x.float() + 1.0) * 0.5).clamp(0.0, 1.0).movedim(-3, -1)
