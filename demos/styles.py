"""The looks the reference renderer can produce: each style's lighting/material parameters.

`STYLES` (name -> prompt, from `bridge.styles`) is what the generator is conditioned on; `LOOKS`
(name -> Look) is what the reference renderer uses to produce that style's target frames.
"""
from __future__ import annotations

from dataclasses import dataclass

from bridge.styles import STYLES, UNSEEN_STYLES


def prompt_of(style: str) -> str:
    """The text prompt of any look the reference renderer draws (the seven STYLES and the unseen ones)."""
    return STYLES[style] if style in STYLES else UNSEEN_STYLES[style]


@dataclass(frozen=True)
class Look:
    sun_elevation_deg: float
    sun_azimuth_deg: float
    sun_color: tuple[float, float, float]
    sky_zenith: tuple[float, float, float]
    sky_horizon: tuple[float, float, float]
    ambient: float  # strength of the sky (hemisphere) light
    fog_color: tuple[float, float, float]
    fog_density: float  # per metre, exponential
    exposure: float = 0.8
    lamps: float = 0.0  # street-lamp intensity (night)
    snow: float = 0.0  # 0..1 snow cover on up-facing surfaces
    leaves: float = 0.0  # 0..1 fallen leaves on the ground
    cartoon: float = 0.0  # 1 = quantised lighting, flat textures, outlines
    foliage: tuple[float, float, float] = (0.18, 0.38, 0.10)
    grass: tuple[float, float, float] = (0.20, 0.42, 0.12)
    saturation: float = 1.0
    shadow_softness: float = 1.5  # PCF radius in shadow-map texels
    stars: float = 0.0


LOOKS: dict[str, Look] = {
    "sunny": Look(52, 35, (2.4, 2.2, 1.95), (0.16, 0.36, 0.85), (0.62, 0.76, 0.95), 0.55, (0.65, 0.75, 0.9), 0.0025),
    "sunset": Look(7, 250, (3.0, 1.45, 0.55), (0.22, 0.20, 0.48), (1.0, 0.50, 0.28), 0.35, (0.85, 0.50, 0.38), 0.004,
                   exposure=1.0, shadow_softness=2.5),
    "night": Look(35, 140, (0.10, 0.13, 0.25), (0.005, 0.008, 0.03), (0.03, 0.04, 0.09), 0.10, (0.02, 0.025, 0.05),
                  0.006, exposure=1.6, lamps=1.0, stars=1.0),
    "winter": Look(24, 160, (1.7, 1.75, 1.85), (0.42, 0.55, 0.75), (0.80, 0.85, 0.92), 0.75, (0.82, 0.86, 0.92), 0.006,
                   snow=1.0, foliage=(0.12, 0.22, 0.14), grass=(0.85, 0.88, 0.92), saturation=0.75),
    "foggy": Look(30, 60, (0.8, 0.8, 0.78), (0.55, 0.57, 0.6), (0.62, 0.63, 0.64), 1.1, (0.60, 0.61, 0.62), 0.035,
                  saturation=0.6, shadow_softness=4.0),
    "cartoon": Look(55, 20, (1.9, 1.85, 1.7), (0.20, 0.55, 1.0), (0.55, 0.85, 1.0), 0.7, (0.6, 0.8, 1.0), 0.0015,
                    cartoon=1.0, foliage=(0.15, 0.7, 0.15), grass=(0.3, 0.8, 0.2), saturation=1.5, shadow_softness=0.5),
    "autumn": Look(30, 200, (2.2, 1.8, 1.3), (0.30, 0.45, 0.75), (0.85, 0.75, 0.62), 0.5, (0.8, 0.7, 0.58), 0.004,
                   foliage=(0.65, 0.22, 0.04), grass=(0.42, 0.38, 0.12), leaves=1.0),
    # ink and wash: no colour at all, banded shading, black outlines, everything far fades into the paper
    "ink": Look(60, 30, (1.6, 1.6, 1.6), (0.93, 0.91, 0.86), (0.93, 0.91, 0.86), 0.9, (0.93, 0.91, 0.86), 0.03,
                exposure=1.1, cartoon=1.0, foliage=(0.1, 0.1, 0.1), grass=(0.75, 0.75, 0.75), saturation=0.0,
                shadow_softness=3.0),
}

assert set(LOOKS) == set(STYLES) | set(UNSEEN_STYLES) and not set(STYLES) & set(UNSEEN_STYLES)
