"""What a report's picture must be to count as one: a PNG that decodes to an image of real size holding a
drawing (many distinct colours, not one flat fill), not merely a file of some bytes."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def assert_drawing(path: str | Path, min_side: int = 100, min_colours: int = 8) -> np.ndarray:
    import imageio.v2 as imageio

    img = np.asarray(imageio.imread(path))
    assert img.ndim == 3 and min(img.shape[:2]) >= min_side, (path, img.shape)
    colours = np.unique(img[..., :3].reshape(-1, 3), axis=0)
    assert len(colours) >= min_colours, f"{path}: {len(colours)} colours, not a drawing"
    return img
