"""Models for tests: every weight set, so no path is silent."""
from __future__ import annotations

import torch

from neural_renderer.model.dit import CausalDiT


def randomised(cfg, seed: int = 0) -> CausalDiT:
    """A model whose zero-initialised layers (adaLN, final layer) are filled, so every path carries signal."""
    torch.manual_seed(seed)
    m = CausalDiT(cfg)
    with torch.no_grad():
        for p in m.parameters():
            if p.dim() >= 2:
                p.normal_(0, 0.08)
    return m.eval()
