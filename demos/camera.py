"""Camera math: matrices are row-major with the column-vector convention (clip = view_to_clip @ view @ p),
as bridge.channels.CONSTANTS_LAYOUT says. View space: x right, y up, the camera looks down -z."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Camera:
    position: tuple[float, float, float]
    yaw_deg: float  # 0 looks down -z; positive turns right (towards +x)
    pitch_deg: float  # positive looks up
    fov_y_deg: float = 70.0
    aspect: float = 1.0
    near: float = 0.1
    far: float = 400.0

    def axes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(forward, up, right) world-space unit vectors."""
        yaw, pitch = np.radians(self.yaw_deg), np.radians(self.pitch_deg)
        forward = np.array([np.sin(yaw) * np.cos(pitch), np.sin(pitch), -np.cos(yaw) * np.cos(pitch)])
        right = np.array([np.cos(yaw), 0.0, np.sin(yaw)])
        up = np.cross(right, forward)
        return forward, up, right

    def world_to_view(self) -> np.ndarray:
        f, u, r = self.axes()
        p = np.asarray(self.position, dtype=np.float64)
        m = np.eye(4)
        m[0, :3], m[1, :3], m[2, :3] = r, u, -f
        m[:3, 3] = -m[:3, :3] @ p
        return m

    def view_to_clip(self) -> np.ndarray:
        return perspective(self.fov_y_deg, self.aspect, self.near, self.far)


def perspective(fov_y_deg: float, aspect: float, near: float, far: float) -> np.ndarray:
    f = 1.0 / np.tan(np.radians(fov_y_deg) / 2)
    m = np.zeros((4, 4))
    m[0, 0] = f / aspect
    m[1, 1] = f
    m[2, 2] = (far + near) / (near - far)
    m[2, 3] = 2 * far * near / (near - far)
    m[3, 2] = -1.0
    return m


def orthographic(half_w: float, half_h: float, near: float, far: float) -> np.ndarray:
    m = np.eye(4)
    m[0, 0] = 1 / half_w
    m[1, 1] = 1 / half_h
    m[2, 2] = -2 / (far - near)
    m[2, 3] = -(far + near) / (far - near)
    return m


def look_at(eye, target, up=(0.0, 1.0, 0.0)) -> np.ndarray:
    eye, target, up = (np.asarray(v, dtype=np.float64) for v in (eye, target, up))
    f = target - eye
    f /= np.linalg.norm(f)
    r = np.cross(f, up)
    r /= np.linalg.norm(r)
    u = np.cross(r, f)
    m = np.eye(4)
    m[0, :3], m[1, :3], m[2, :3] = r, u, -f
    m[:3, 3] = -m[:3, :3] @ eye
    return m


def gl_bytes(m: np.ndarray) -> bytes:
    """A row-major matrix as the column-major bytes a GLSL mat4 uniform expects."""
    return np.ascontiguousarray(np.asarray(m, dtype=np.float32).T).tobytes()


def frame_constants(cam: Camera, prev: Camera, dt: float) -> dict[str, np.ndarray]:
    """The per-frame constants of bridge.channels.CONSTANTS_LAYOUT (no jitter: jitter_px is zero)."""
    view, proj = cam.world_to_view(), cam.view_to_clip()
    prev_view, prev_proj = prev.world_to_view(), prev.view_to_clip()
    clip_to_view = np.linalg.inv(proj)
    clip_to_prev_clip = prev_proj @ prev_view @ np.linalg.inv(view) @ clip_to_view
    f, u, r = cam.axes()
    out = {
        "world_to_view": view, "view_to_clip": proj, "clip_to_view": clip_to_view,
        "clip_to_prev_clip": clip_to_prev_clip, "camera_position": cam.position,
        "camera_forward": f, "camera_up": u, "camera_right": r, "near": cam.near, "far": cam.far,
        "fov_y_deg": cam.fov_y_deg, "aspect": cam.aspect, "jitter_px": (0.0, 0.0), "dt": dt,
    }
    return {k: np.asarray(v, dtype=np.float32).reshape(-1) for k, v in out.items()}
