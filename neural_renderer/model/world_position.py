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
    frames, (H, W) = tuple(d.shape[:-2]), tuple(d.shape[-2:])
    cam = camera_matrices(constants, frames)
    if cam is None:
        return None
    c2v, v2w, far, usable = cam
    dev = d.device
    limit = torch.where(far > 0, far * FAR_MARGIN, torch.full_like(far, SKY_DEPTH)).clamp(max=SKY_DEPTH)
    ndc_x = (torch.arange(W, device=dev, dtype=torch.float32) + 0.5) * (2.0 / W) - 1.0
    ndc_y = 1.0 - (torch.arange(H, device=dev, dtype=torch.float32) + 0.5) * (2.0 / H)
    c = c2v.to(dev, torch.float32)  # (frames..., 4, 4): columns multiply ndc x, y, z and 1
    col = lambda k: c[..., :, k][..., None, None, :]  # (frames..., 1, 1, 4)
    base = ndc_x[None, :, None] * col(0) + ndc_y[:, None, None] * col(1) + col(3)  # (frames..., H, W, 4)
    p0, p1 = (base + z * col(2) for z in _NDC_Z)
    p0, p1 = p0[..., :3] / p0[..., 3:], p1[..., :3] / p1[..., 3:]
    s = (-d - p0[..., 2]) / (p1[..., 2] - p0[..., 2])  # the view point at z = -depth on the pixel's line
    view = p0 + s[..., None] * (p1 - p0)  # (frames..., H, W, 3)
    m = v2w.to(dev, torch.float32)
    world = (view[..., None, :] * m[..., None, None, :3, :3]).sum(-1) + m[..., None, None, :3, 3]
    ok = torch.isfinite(d) & (d > 0) & (d < limit.to(dev, torch.float32)[..., None, None])
    ok = ok & usable.to(dev)[..., None, None] & torch.isfinite(world).all(-1)
    xyz = torch.where(ok[..., None], world, torch.zeros_like(world)).movedim(-1, -3)
    return xyz, ok[..., None, :, :].float(), usable.to(dev)
