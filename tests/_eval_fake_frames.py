"""Synthetic frames with the shapes of demos.sequence.WorldFrame, for format tests that need no OpenGL."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bridge.channels import ACTION_DIM, CHANNELS, CONSTANTS_LAYOUT


@dataclass
class FakeFrame:
    index: int
    engine: dict
    reference: dict
    action: np.ndarray
    constants: dict
    reset: bool


def fake_frame(seed: int, t: int, width: int, height: int, styles) -> FakeFrame:
    rng = np.random.default_rng([seed, t])
    engine = {}
    for name, spec in CHANNELS.items():
        shape = (height, width, spec.components)
        if name == "material_id":
            engine[name] = rng.integers(0, 300, shape).astype(np.uint16)
        elif name == "disocclusion":
            engine[name] = (rng.random(shape) < 0.1).astype(np.uint8)
        elif name == "motion":
            engine[name] = rng.normal(0, 3, shape).astype(np.float32)
        elif name == "depth":
            engine[name] = rng.uniform(0.1, 200, shape).astype(np.float32)
        else:
            engine[name] = rng.random(shape, dtype=np.float32)
    reference = {s: rng.random((height, width, 3), dtype=np.float32) for s in styles}
    constants = {k: rng.normal(size=n).astype(np.float32).reshape((4, 4) if n == 16 else (n,))
                 for k, n in CONSTANTS_LAYOUT.items()}
    return FakeFrame(t, engine, reference, rng.normal(size=ACTION_DIM).astype(np.float32), constants,
                     reset=(t % 5 == 0))
