"""Hand-built scenes with analytically known geometry for the engine-pass tests, and pixel helpers."""
from __future__ import annotations

import numpy as np

from demos import geometry
from demos.camera import Camera
from demos.materials import MATERIAL_ID
from demos.world import MAX_DYNAMIC


class Scene:
    """Duck-types the part of demos.world.World the renderers use: mesh(), models(t), lamp_positions."""

    def __init__(self, parts: list[np.ndarray]):
        self._mesh = np.concatenate(parts).astype(np.float32)
        self.lamp_positions = np.zeros((0, 3), np.float32)
        self.dynamic = []

    def mesh(self) -> np.ndarray:
        return self._mesh

    def models(self, t: float = 0.0) -> np.ndarray:
        return np.tile(np.eye(4), (MAX_DYNAMIC + 1, 1, 1))


def ground_and_box(box_obj: int = 0) -> Scene:
    """A 400 m ground slab with its top at y = 0 (concrete) and a 2 m crate (wood) on it, centred at (0, 1, -8)."""
    ground = geometry.boxes([[-200, -1, -200]], [[200, 0, 200]], [MATERIAL_ID["concrete"]])
    if box_obj:
        crate = geometry.boxes([[-1, 0, -1]], [[1, 2, 1]], [MATERIAL_ID["wood"]], obj=box_obj)
    else:
        crate = geometry.boxes([[-1, 0, -9]], [[1, 2, -7]], [MATERIAL_ID["wood"]])
    return Scene([ground, crate])


def pixel_rays(cam: Camera, width: int, height: int) -> np.ndarray:
    """World-space ray directions through every pixel centre, scaled so their view-space z is -1: (H, W, 3)."""
    tan_y = np.tan(np.radians(cam.fov_y_deg) / 2)
    x = ((np.arange(width) + 0.5) / width * 2 - 1) * tan_y * cam.aspect
    y = (1 - (np.arange(height) + 0.5) / height * 2) * tan_y
    view_dir = np.stack(np.broadcast_arrays(x[None, :], y[:, None], -np.ones((height, width))), -1)
    rot = cam.world_to_view()[:3, :3]
    return view_dir @ rot  # rows are view vectors; v_world = R^T v_view


def project(points: np.ndarray, cam: Camera, width: int, height: int) -> np.ndarray:
    """World points (..., 3) -> pixel coordinates (..., 2), y down, pixel centres at +0.5."""
    vp = cam.view_to_clip() @ cam.world_to_view()
    clip = np.concatenate([points, np.ones(points.shape[:-1] + (1,))], -1) @ vp.T
    ndc = clip[..., :2] / clip[..., 3:4]
    return np.stack([(ndc[..., 0] * 0.5 + 0.5) * width, (0.5 - 0.5 * ndc[..., 1]) * height], -1)


def pixel_centres(width: int, height: int) -> np.ndarray:
    xs, ys = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    return np.stack([xs, ys], -1)
