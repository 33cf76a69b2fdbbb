"""Reprojected history: the previous output frame brought into the current one along the engine's
motion vectors, as TAA / DLSS / neural supersampling do, so the generator mostly repairs what is new
instead of repainting everything.

Conventions are bridge.channels': motion is in pixels of the current frame and points from a pixel
to where the same surface was in the previous frame, prev_xy = (x + motion[..., 0], y + motion[..., 1]).
`reproject` samples bilinearly with edge clamping, exactly as `neural_renderer.eval.metrics.warp_previous`
does, so the model's history and the warping-error metric agree pixel for pixel.

The history group reaching the model is HISTORY_PLANES planes: warped RGB (zero where invalid), the
valid mask (inside the previous frame and not disoccluded) and a presence flag. After a reset, a look
switch, or for a client that sends no motion vectors, the group is all zeros (`absent_history`).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

HISTORY_PLANES = 5  # rgb (3), valid (1), present (1)


def reproject(prev: torch.Tensor, motion: torch.Tensor, disocclusion: torch.Tensor | None = None
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """prev (N, C, H, W); motion (N, 2, H, W) in pixels; disocclusion (N, 1, H, W) (1 = new surface) or None
    -> (warped (N, C, H, W), valid (N, 1, H, W) float)."""
    N, _, H, W = prev.shape
    ys = torch.arange(H, device=prev.device, dtype=torch.float32).view(1, H, 1)
    xs = torch.arange(W, device=prev.device, dtype=torch.float32).view(1, 1, W)
    px = xs + motion[:, 0].float()  # (N, H, W)
    py = ys + motion[:, 1].float()
    inside = (px >= 0) & (px <= W - 1) & (py >= 0) & (py <= H - 1)
    gx = px.clamp(0, W - 1) * (2.0 / max(W - 1, 1)) - 1.0
    gy = py.clamp(0, H - 1) * (2.0 / max(H - 1, 1)) - 1.0
    grid = torch.stack([gx, gy], dim=-1).to(prev.dtype)  # (N, H, W, 2)
    warped = F.grid_sample(prev, grid, mode="bilinear", padding_mode="border", align_corners=True)
    valid = inside[:, None]
    if disocclusion is not None:
        valid = valid & (disocclusion < 0.5)
    return warped, valid.to(prev.dtype)


def history_planes(warped: torch.Tensor, valid: torch.Tensor, present: torch.Tensor | float = 1.0) -> torch.Tensor:
    """warped (N, 3, H, W), valid (N, 1, H, W), present (N,) or a number -> (N, HISTORY_PLANES, H, W)."""
    N, _, H, W = warped.shape
    if not isinstance(present, torch.Tensor):
        present = torch.full((N,), float(present), device=warped.device)
    p = present.to(warped.dtype).view(N, 1, 1, 1)
    valid = valid * p
    return torch.cat([warped * valid, valid, p.expand(N, 1, H, W)], dim=1)


def absent_history(*lead: int, height: int, width: int, device=None, dtype=torch.float32) -> torch.Tensor:
    return torch.zeros(*lead, HISTORY_PLANES, height, width, device=device, dtype=dtype)
