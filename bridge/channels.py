"""What an engine hands us each frame: the one definition every part of neurender uses.

Conventions follow DLSS / Streamline (see docs/protocol.md):
- Images are row-major (H, W, C), row 0 is the TOP of the screen, x grows right, y grows down.
- `depth` is LINEAR view-space distance along the camera's forward axis, in world units
  (not the hardware z-buffer, not inverted).
- `normals` are view-space unit vectors (x right, y up, z towards the viewer), components in [-1, 1].
- `motion` is in PIXELS of the current frame's resolution, pointing from the current pixel to where
  the same surface point was in the PREVIOUS frame: prev_xy = (x + motion[..., 0], y + motion[..., 1]).
  Not jittered, not dilated. Zero when the camera and the object are static.
- `disocclusion` is 1 where the surface was not visible in the previous frame (motion is meaningless
  there), 0 elsewhere.
- `color` and `albedo` are linear RGB in [0, 1]; `material_id` is an integer id (0 = sky).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ChannelSpec:
    name: str
    components: int
    dtypes: tuple[str, ...]  # numpy dtype names a client may declare, first one is the default


CHANNELS: dict[str, ChannelSpec] = {
    c.name: c
    for c in (
        ChannelSpec("color", 3, ("float16", "float32", "uint8")),
        ChannelSpec("depth", 1, ("float16", "float32")),
        ChannelSpec("normals", 3, ("float16", "float32")),
        ChannelSpec("motion", 2, ("float16", "float32")),
        ChannelSpec("albedo", 3, ("float16", "float32", "uint8")),
        ChannelSpec("material_id", 1, ("uint8", "uint16")),
        ChannelSpec("disocclusion", 1, ("uint8", "float16")),
    )
}

# The game's own finished frame: declared like an engine channel but never shown to a renderer. It is
# the training target of a recorded session (docs/dataset.md, "Recordings"); linear RGB in [0, 1].
FINAL = ChannelSpec("final", 3, ("float16", "float32", "uint8"))

# Every channel a client may declare when it opens a session.
DECLARABLE_CHANNELS: dict[str, ChannelSpec] = {**CHANNELS, FINAL.name: FINAL}

# The player's action vector, one float per entry, recorded with every frame.
# Keys are 0/1; mouse deltas are in degrees of camera rotation this frame.
ACTION_LAYOUT: tuple[str, ...] = (
    "forward", "back", "left", "right", "jump", "crouch", "run", "mouse_dx", "mouse_dy",
)
ACTION_DIM = len(ACTION_LAYOUT)

# Per-frame camera constants, name -> number of float32 values.
# Matrices are 4x4, row-major, column-vector convention (clip = view_to_clip @ view), without jitter.
CONSTANTS_LAYOUT: dict[str, int] = {
    "world_to_view": 16,
    "view_to_clip": 16,
    "clip_to_view": 16,
    "clip_to_prev_clip": 16,
    "camera_position": 3,
    "camera_forward": 3,
    "camera_up": 3,
    "camera_right": 3,
    "near": 1,
    "far": 1,
    "fov_y_deg": 1,
    "aspect": 1,
    "jitter_px": 2,
    "dt": 1,
}

# Output pixel formats the daemon can write.
OUTPUT_FORMATS: dict[str, tuple[str, int]] = {  # name -> (dtype, components)
    "rgb8": ("uint8", 3),
    "rgba8": ("uint8", 4),
    "rgb16f": ("float16", 3),
}
