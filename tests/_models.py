"""Models for tests: every weight set, so no path is silent."""
from __future__ import annotations

import torch

from neural_renderer.model.registry import build


def randomised(cfg, seed: int = 0) -> torch.nn.Module:
    """A model (a config or a registry size, either architecture) whose zero-initialised layers (adaLN,
    residual convs, output) are filled, so every path carries signal."""
    torch.manual_seed(seed)
    m = build(cfg)
    with torch.no_grad():
        for p in m.parameters():
            if p.dim() >= 2:
                p.normal_(0, 0.08)
    return m.eval()
