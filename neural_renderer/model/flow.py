"""Flow matching with x-prediction: the network predicts the clean frame, the sampler
derives the velocity from it.

Convention: x_t = (1 - t) * x0 + t * noise, t = 1 is pure noise, t = 0 is the clean frame.
Velocity dx/dt = noise - x0 = (x_t - x0) / t, so an Euler step from t to s < t is
x_s = x_t + (s - t) * (x_t - x0_hat) / t, and the last step (s = 0) lands exactly on x0_hat.
"""
from __future__ import annotations

import torch


def add_noise(x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """x0, noise (B, L, C, H, W) or (B, C, H, W); t broadcastable from (B, L) / (B,)."""
    t = t.to(x0.dtype).reshape(*t.shape, *([1] * (x0.dim() - t.dim())))
    return (1.0 - t) * x0 + t * noise


def euler_step(x_t: torch.Tensor, x0_hat: torch.Tensor, t: float, s: float) -> torch.Tensor:
    if s <= 0.0:
        return x0_hat
    return x_t + (s - t) * (x_t - x0_hat) / t


def schedule(steps: int) -> list[float]:
    """Noise levels visited by `steps` Euler steps, from 1 down to 0 (uniform, steps + 1 values)."""
    return [1.0 - k / steps for k in range(steps + 1)]


def sample_train_t(shape, generator=None, device=None) -> torch.Tensor:
    """Independent noise level per frame (diffusion forcing): logit-normal, mean shifted towards
    noise, so the one-or-two-step regime that inference uses gets most of the training signal."""
    return torch.sigmoid(torch.randn(shape, generator=generator, device=device) * 1.0 + 1.0)
