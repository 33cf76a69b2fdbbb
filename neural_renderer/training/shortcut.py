"""What shortcut distillation and pruning's recovery share across the two architectures.

Flow convention (flow.py): x_t = (1 - t) x0 + t noise, t = 1 is noise; the network predicts x0 and the
velocity is derived, v = (x_t - x0_hat) / t, so a step of size d goes x_{t-d} = x_t - d v.
Step sizes are powers of two, d in {1/M, 2/M, ..., 1} with M the finest step count.

- the self-consistency target of one step of size 2d: two d-steps of a predictor (`shortcut_target`),
  only on chosen frames of a clip (`masked_shortcut_target`);
- where those big steps start (`big_steps`): a step size D >= 2/M and a level on the D-grid;
- the student's starting point (`fold_step_embedding`);
- output matching to a teacher (`output_matching_loss`) with the step sizes it draws (`random_step_sizes`).
"""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

Predictor = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]  # (x_t, t, d) -> x0_hat


def velocity(x_t: torch.Tensor, x0_hat: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """v = dx/dt = (x_t - x0_hat) / t; t broadcast from the leading dims."""
    t = t.reshape(*t.shape, *([1] * (x_t.dim() - t.dim())))
    return (x_t - x0_hat) / t


def shortcut_target(predict: Predictor, x_t: torch.Tensor, t: torch.Tensor, d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The self-consistency target for ONE step of size 2d from (x_t, t): two d-steps of `predict`.

    Returns (x0 target, velocity target). Needs t >= 2d > 0 (both evaluations at t, t - d > 0).
    """
    shape = (*t.shape, *([1] * (x_t.dim() - t.dim())))
    v1 = velocity(x_t, predict(x_t, t, d), t)
    x_mid = x_t - d.reshape(shape) * v1
    v2 = velocity(x_mid, predict(x_mid, t - d, d), t - d)
    v = 0.5 * (v1 + v2)
    return x_t - t.reshape(shape) * v, v


def masked_shortcut_target(predict: Predictor, x_t: torch.Tensor, t: torch.Tensor, half: torch.Tensor,
                           tgt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """shortcut_target on the frames `tgt` (B, L) of a clip; the other frames pass through unchanged (their
    x stays x_t, so every frame's context is exactly what streaming would show)."""
    m = tgt.view(*tgt.shape, 1, 1, 1)

    def frame_predict(x, tt, dd):
        return predict(torch.where(m, x, x_t), tt, dd)

    return shortcut_target(frame_predict, x_t, t, half)


def step_sizes(finest: int) -> list[float]:
    """1/M, 2/M, ..., 1 (M a power of two)."""
    k = int(round(math.log2(finest)))
    if 2 ** k != finest:
        raise ValueError(f"finest step count must be a power of two, got {finest}")
    return [2.0 ** -j for j in range(k, -1, -1)]


def big_steps(n: int, frames: int, finest: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """n self-consistency samples: a step size D per sample, uniform over 2/M..1, and for each of its
    `frames` frames a level on the D-grid (j D, j = 1..1/D: the levels a D-step sampler visits).
    Returns D (n,) and t (n, frames), on the CPU."""
    sizes = step_sizes(finest)
    k = torch.randint(1, len(sizes), (n,), generator=g)
    D = torch.tensor([sizes[i] for i in k.tolist()])
    j = torch.floor(torch.rand(n, frames, generator=g) * (1.0 / D)[:, None]) + 1.0
    return D, (j * D[:, None]).clamp(max=1.0)


@torch.no_grad()
def fold_step_embedding(model: torch.nn.Module) -> None:
    """Make the step-size embedding a constant equal to its value at d = 0. A model trained without
    shortcut targets only ever saw d = 0, and its embedding of any other d is an arbitrary offset to the
    conditioning: folded, the student computes the teacher's function for every d at its first step, and
    the embedding's last layer starts from zero (as a fresh model's does) to learn what d means."""
    last = model.d_embed.mlp[-1]
    c0 = model.d_embed(torch.zeros(1, device=last.weight.device))[0]
    last.weight.zero_()
    last.bias.copy_(c0)


def random_step_sizes(shortcut: bool, where: torch.Tensor, finest: int, g: torch.Generator) -> torch.Tensor:
    """(B, L) step sizes for output matching: for a shortcut teacher a random one of 1/M..1 on the frames
    `where` (so the student keeps every step size), 0 elsewhere and for a plain teacher."""
    d = torch.zeros(where.shape, device=where.device)
    if shortcut:
        sizes = torch.tensor(step_sizes(finest))
        d = torch.where(where, sizes[torch.randint(len(sizes), tuple(where.shape), generator=g)].to(d), d)
    return d


def output_matching_loss(student, teacher, inputs: tuple, target: torch.Tensor, amp_dtype,
                         match_weight: float = 1.0) -> tuple[torch.Tensor, dict]:
    """match_weight * MSE(student, teacher) + MSE(student, true frames), on the same model inputs."""
    dev = target.device
    with torch.autocast(dev.type, dtype=amp_dtype, enabled=amp_dtype is not None):
        with torch.no_grad():
            ref = teacher(*inputs).float()
        pred = student(*inputs).float()
    match = F.mse_loss(pred, ref)
    flow = F.mse_loss(pred, target)
    return match_weight * match + flow, {"match": match.detach(), "flow": flow.detach()}
