"""Material ids of the world (0 is sky, as bridge.channels says) and their plain engine-pass albedo."""
from __future__ import annotations

import numpy as np

MATERIALS: tuple[str, ...] = (
    "sky", "asphalt", "concrete", "brick", "plaster", "wood", "marble", "metal",
    "grass", "foliage", "bark", "roof", "painted", "lamp",
)
MATERIAL_ID: dict[str, int] = {name: i for i, name in enumerate(MATERIALS)}

# Flat albedo the engine pass uses (linear RGB); the reference look textures these per style.
ENGINE_ALBEDO = np.array([
    (0.45, 0.62, 0.90),  # sky
    (0.10, 0.10, 0.11),  # asphalt
    (0.42, 0.41, 0.40),  # concrete
    (0.48, 0.20, 0.13),  # brick
    (0.75, 0.72, 0.65),  # plaster
    (0.45, 0.30, 0.15),  # wood
    (0.80, 0.80, 0.78),  # marble
    (0.55, 0.56, 0.58),  # metal
    (0.20, 0.42, 0.12),  # grass
    (0.16, 0.35, 0.10),  # foliage
    (0.28, 0.18, 0.10),  # bark
    (0.30, 0.12, 0.10),  # roof
    (0.70, 0.15, 0.12),  # painted
    (1.00, 0.90, 0.70),  # lamp
], dtype=np.float32)
assert len(ENGINE_ALBEDO) == len(MATERIALS)
