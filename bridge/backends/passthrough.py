"""The backend that needs no model: the engine's color back in the output format, or, when no color is
declared, a deterministic shading of the G-buffer (Lambert of the normals times albedo, else depth grey).
It makes the whole bridge testable before the generator exists and is the bridge benchmark's backend."""
from __future__ import annotations

import numpy as np

from bridge.backends import BackendUnavailable, FrameInputs, Renderer, RendererSession, SessionSpec, UnsupportedSpec
from bridge.channels import OUTPUT_FORMATS

LIGHT_DIR = np.array([0.3, 0.6, 0.74], np.float32) / np.linalg.norm([0.3, 0.6, 0.74])  # view space
AMBIENT = 0.15
SKY_DEPTH = 1e3  # depth at which the grey reaches black


def _half_to_u8_table() -> np.ndarray:
    """uint8 for every float16 bit pattern: clip to [0, 1], scale, round (NaN -> 0)."""
    f = np.arange(65536, dtype=np.uint32).astype(np.uint16).view(np.float16).astype(np.float32)
    return (np.clip(np.nan_to_num(f, nan=0.0), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


_HALF_TO_U8 = _half_to_u8_table()  # a 64 KiB table lookup is ~10x faster than float16 arithmetic


def to_output(rgb: np.ndarray, out: np.ndarray) -> None:
    """Linear RGB (H, W, 3) float or uint8 -> out, whose dtype/channels follow the output format."""
    if out.dtype == np.uint8:
        if rgb.dtype == np.uint8:
            out[..., :3] = rgb
        elif rgb.dtype == np.float16 and out.shape == rgb.shape and out.flags.c_contiguous:
            np.take(_HALF_TO_U8, rgb.view(np.uint16), out=out)  # no temporary: ~40% faster
        elif rgb.dtype == np.float16:
            out[..., :3] = _HALF_TO_U8[rgb.view(np.uint16)]
        else:
            out[..., :3] = (np.clip(np.nan_to_num(rgb, nan=0.0), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    else:
        out[..., :3] = rgb.astype(np.float32) / 255.0 if rgb.dtype == np.uint8 else rgb
    if out.shape[-1] == 4:
        out[..., 3] = 255 if out.dtype == np.uint8 else 1.0


def shade_gbuffer(pixels: dict[str, np.ndarray]) -> np.ndarray:
    """Deterministic stand-in image from the G-buffer, (H, W, 3) float32 in [0, 1]."""
    if "normals" in pixels:
        n = pixels["normals"].astype(np.float32)
        lambert = np.clip(n @ LIGHT_DIR, 0.0, 1.0)[..., None]
        base = pixels["albedo"] if "albedo" in pixels else None
        if base is None:
            base = np.full(n.shape, 0.8, np.float32)
        elif base.dtype == np.uint8:
            base = base.astype(np.float32) / 255.0
        return (base.astype(np.float32) * (AMBIENT + (1 - AMBIENT) * lambert)).astype(np.float32)
    if "albedo" in pixels:
        a = pixels["albedo"]
        return a.astype(np.float32) / 255.0 if a.dtype == np.uint8 else a.astype(np.float32)
    if "depth" in pixels:
        d = pixels["depth"].astype(np.float32)
        grey = 1.0 - np.clip(np.log1p(np.maximum(d, 0)) / np.log1p(SKY_DEPTH), 0, 1)
        return np.repeat(grey, 3, axis=-1)
    # only material ids / motion / disocclusion: a fixed palette of the first channel
    first = next(iter(pixels.values()))[..., :1].astype(np.float32)
    grey = (first * 0.618034) % 1.0
    return np.repeat(grey, 3, axis=-1)


class PassthroughSession(RendererSession):
    def __init__(self, spec: SessionSpec):
        self.spec = spec

    def render(self, frame: FrameInputs, out: np.ndarray) -> None:
        color = frame.pixels.get("color")
        to_output(color if color is not None else shade_gbuffer(frame.pixels), out)


class PassthroughRenderer(Renderer):
    def __init__(self, steps: int | None = None, device: str | None = None, **_ignored):
        self.device = device or "cpu"

    def describe(self) -> dict:
        return {"backend": "passthrough", "model": None, "steps": 0, "device": self.device}

    def open_session(self, spec: SessionSpec) -> RendererSession:
        if spec.output_format not in OUTPUT_FORMATS:
            raise UnsupportedSpec(f"output format {spec.output_format!r}")
        return PassthroughSession(spec)


def create(arg: str | None = None, **options) -> PassthroughRenderer:
    """The `passthrough` entry point (pyproject.toml, group neurender.backends)."""
    if arg:
        raise BackendUnavailable(f"passthrough takes no argument, got {arg!r}")
    return PassthroughRenderer(**options)
