"""Where each pixel's surface is in the world: the engine's depth + the frame's camera constants -> world xyz.

Conventions are bridge/channels.py's: `depth` is the LINEAR view depth along the camera's forward axis
(-z in view space, world units; not the z-buffer, not the distance along the ray), matrices are row-major
with column vectors, row 0 of an image is the top, pixel centres sit at +0.5. The pixel's view-space
point is found on the line through two unprojected points of its pixel centre (clip_to_view at two NDC
depths strictly inside the frustum of every depth convention, GL or D3D, reversed or infinite far plane),
at the view z that the depth names; that holds for perspective and orthographic projections alike.
The camera's 4x4 algebra runs in float64 on the CPU (tiny), the per-pixel work in float32 on the depth's
device: positions a few hundred units from the origin keep ~1e-4 units, far finer than any feature period.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np
import torch

SKY_DEPTH = 1e4  # without a far plane in the constants, depths at or beyond this are sky (no surface)
FAR_MARGIN = 0.999  # engines write the far-plane distance for sky (demos does): a surface is nearer than that
_NDC_Z = (0.25, 0.75)  # two depths inside the frustum for [-1, 1] and [0, 1] NDC, reversed or not


def camera_matrices(constants: Mapping[str, object] | None, frames: tuple[int, ...] = ()):
    """constants: name -> values (frames..., n) or (n,) (one camera for every frame) -> (clip_to_view,
    view_to_world (frames..., 4, 4) float64, far (frames...,) float64, usable (frames...,) bool), or None when
    the matrices are not there at all. A frame is unusable when its matrices are zeros (a recording stores
    constants a client did not send as zeros) or singular."""
    if not constants or "world_to_view" not in constants or "clip_to_view" not in constants:
        return None

    def mat(name):
        a = np.asarray(constants[name], np.float64)
        a = a if a.shape[-2:] == (4, 4) else a.reshape(*a.shape[:-1], 4, 4)
        return torch.from_numpy(np.array(np.broadcast_to(a, (*frames, 4, 4))))

    w2v, c2v = mat("world_to_view"), mat("clip_to_view")
    far = np.asarray(constants.get("far", 0.0), np.float64)
    far = far[..., 0] if far.ndim and far.shape[-1] == 1 else far
    far = torch.from_numpy(np.array(np.broadcast_to(far, frames)))
    affine = (w2v[..., 3, :] - w2v.new_tensor([0.0, 0.0, 0.0, 1.0])).abs().amax(-1) < 1e-6
    usable = affine & (w2v[..., :3, :3].det().abs() > 1e-9) & (c2v.abs().amax((-2, -1)) > 0)
    eye = torch.eye(4, dtype=torch.float64)
    v2w = torch.linalg.inv(torch.where(usable[..., None, None], w2v, eye))
    return torch.where(usable[..., None, None], c2v, eye), v2w, far, usable


def world_position(depth: torch.Tensor, constants: Mapping[str, object] | None):
    """depth (frames..., H, W) or (frames..., H, W, 1) in world units; constants as `camera_matrices` takes
    them -> (xyz (frames..., 3, H, W) float32, valid (frames..., 1, H, W) float32: 1 where a surface was hit
    and the frame's camera is known), or None without camera matrices. Sky (depth at the far plane or
    beyond, non-finite, or not positive) is invalid and its xyz is 0."""
    d = depth.float()
    if d.dim() >= 3 and d.shape[-1] == 1:
        d = d[..., 0]
    cam = camera_matrices(constants, tuple(d.shape[:-2]))
    if cam is None:
        return None
    c2v, v2w, far, usable = cam
    limit = torch.where(far > 0, far * FAR_MARGIN, torch.full_like(far, SKY_DEPTH)).clamp(max=SKY_DEPTH)
    dev = d.device
    return positions(d, c2v.to(dev, torch.float32), v2w.to(dev, torch.float32), limit.to(dev, torch.float32),
                     usable.to(dev))


def camera_floats(constants: Mapping[str, object] | None) -> np.ndarray:
    """One frame's camera as CAMERA_FLOATS float32 values, what `positions` reads from a device vector:
    clip_to_view (16, row-major), view_to_world (16), the sky limit (1), usable (1). Without matrices the
    camera is unusable (identity matrices, usable 0), for which `positions` gives exactly what no world
    group gives: every pixel invalid, xyz 0. The algebra is `world_position`'s, so the values are the same."""
    cam = camera_matrices(constants, ())
    if cam is None:
        eye = np.eye(4, dtype=np.float32).reshape(-1)
        return np.concatenate([eye, eye, np.float32([SKY_DEPTH, 0.0])])
    c2v, v2w, far, usable = cam
    limit = torch.where(far > 0, far * FAR_MARGIN, torch.full_like(far, SKY_DEPTH)).clamp(max=SKY_DEPTH)
    return np.concatenate([c2v.to(torch.float32).reshape(-1).numpy(), v2w.to(torch.float32).reshape(-1).numpy(),
                           limit.to(torch.float32).reshape(1).numpy(), np.float32([float(usable)])])


CAMERA_FLOATS = 16 + 16 + 2


def positions(d: torch.Tensor, c2v: torch.Tensor, v2w: torch.Tensor, limit: torch.Tensor, usable: torch.Tensor):
    """The per-pixel part of `world_position`, from device tensors only (no host value is read, so it can
    run inside a captured graph): d (frames..., H, W) float32, c2v and v2w (frames..., 4, 4) float32, limit
    (frames...,) float32, usable (frames...,) bool or 0/1 float -> (xyz, valid, usable as bool)."""
    H, W = d.shape[-2:]
    dev = d.device
    usable = usable > 0.5 if usable.dtype != torch.bool else usable
    ndc_x = (torch.arange(W, device=dev, dtype=torch.float32) + 0.5) * (2.0 / W) - 1.0
    ndc_y = 1.0 - (torch.arange(H, device=dev, dtype=torch.float32) + 0.5) * (2.0 / H)
    c = c2v  # (frames..., 4, 4): columns multiply ndc x, y, z and 1
    col = lambda k: c[..., :, k][..., None, None, :]  # (frames..., 1, 1, 4)
    base = ndc_x[None, :, None] * col(0) + ndc_y[:, None, None] * col(1) + col(3)  # (frames..., H, W, 4)
    p0, p1 = (base + z * col(2) for z in _NDC_Z)
    p0, p1 = p0[..., :3] / p0[..., 3:], p1[..., :3] / p1[..., 3:]
    s = (-d - p0[..., 2]) / (p1[..., 2] - p0[..., 2])  # the view point at z = -depth on the pixel's line
    view = p0 + s[..., None] * (p1 - p0)  # (frames..., H, W, 3)
    m = v2w
    world = (view[..., None, :] * m[..., None, None, :3, :3]).sum(-1) + m[..., None, None, :3, 3]
    ok = torch.isfinite(d) & (d > 0) & (d < limit[..., None, None])
    ok = ok & usable[..., None, None] & torch.isfinite(world).all(-1)
    xyz = torch.where(ok[..., None], world, torch.zeros_like(world)).movedim(-1, -3)
    return xyz, ok[..., None, :, :].float(), usable
