"""The training objective of the hourglass generator: diffusion forcing with a reprojected history.

One step on a batch of clips (B, L frames):
1. conditioning groups dropped per sample (a client may declare any subset);
2. a noise level per frame (diffusion forcing): a share exactly at t = 1 and t = 1/2, the levels
   2-step sampling visits (without them the model learns to follow the prompt only weakly from pure
   noise), the rest logit-normal, some frames at low context levels;
3. the history each frame sees: the previous frame's clean signal, reprojected with the current
   frame's motion vectors and disocclusion, where that signal is either the reference corrupted
   (blur, colour shifts, noise whose level the model is told) or the model's own one-step prediction
   (what it will see at run time); frame 0 of a clip and a share of whole samples get none (a reset,
   a look switch, a client without motion vectors). The own prediction may be iterated (`own_output_rounds`):
   round r's history is round r-1's output, so after k rounds frame i's history has passed through the model
   min(k, i) times in a chain, as at run time where each output becomes the next frame's history (k = L - 1
   is the whole clip rolled out frame by frame with the one-step sampler; a model trained on one round only
   sees histories one generation deep and copies its own artefacts forward);
4. one `forward_clip` pass and the x-prediction MSE.
Steps 1-3 are `hourglass_inputs`, which shortcut distillation builds on too.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from neural_renderer.training.clip_sources import ClipBatch
from neural_renderer.model.inputs import drop_groups, sample_group_keep
from neural_renderer.model.flow import add_noise, sample_train_t
from neural_renderer.model.history import history_planes, reproject


@dataclass
class HistoryAugment:
    t_one_frac: float = 0.4  # frames trained exactly at t = 1 (the first sampling step)
    t_half_frac: float = 0.25  # exactly at t = 1/2 (the second of 2 steps)
    context_frac: float = 0.1  # low "context" levels, below context_max_noise
    context_max_noise: float = 0.2
    own_output_frac: float = 0.3  # batches whose history is the model's own prediction
    own_output_rounds: int = 1  # up to this many chained predictions (drawn uniformly in 1..rounds per batch)
    history_noise_p: float = 0.5  # samples whose history gets noise of a told level
    history_noise_max: float = 0.3
    history_drop_p: float = 0.1  # samples with no history at all
    blur_p: float = 0.25
    color_shift_p: float = 0.25
    drop_group_p: float = 0.25

    def __post_init__(self):
        if self.own_output_rounds < 1:
            raise ValueError(f"own_output_rounds must be >= 1 (1 = one prediction), got {self.own_output_rounds}")


def blur(x: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) -> a 3x3 box-blurred copy (edge-padded)."""
    return F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, stride=1)


def corrupt(clean: torch.Tensor, aug: HistoryAugment, g: torch.Generator) -> torch.Tensor:
    """clean (B, L, 3, H, W) -> the same frames with blur / colour shifts on random frames."""
    B, L = clean.shape[:2]
    dev = clean.device
    flat = clean.reshape(B * L, *clean.shape[2:])
    pick = (torch.rand(B * L, generator=g) < aug.blur_p).to(dev).view(-1, 1, 1, 1)
    flat = torch.where(pick, blur(flat), flat)
    shift = (torch.rand(B * L, generator=g) < aug.color_shift_p).to(dev).view(-1, 1, 1, 1).float()
    gain = 1.0 + 0.1 * torch.randn(B * L, 3, 1, 1, generator=g).to(dev)
    bias = 0.05 * torch.randn(B * L, 3, 1, 1, generator=g).to(dev)
    flat = shift * (flat * gain + bias) + (1 - shift) * flat
    return flat.clamp(-1, 1).view_as(clean)


def frame_levels(B: int, L: int, aug: HistoryAugment, g: torch.Generator, dev) -> torch.Tensor:
    """(B, L) noise levels, independent per frame."""
    t = sample_train_t((B, L), generator=g)
    u = torch.rand(B, L, generator=g)
    t = torch.where(u < aug.t_one_frac, torch.ones_like(t), t)
    t = torch.where((u >= aug.t_one_frac) & (u < aug.t_one_frac + aug.t_half_frac), torch.full_like(t, 0.5), t)
    lo = aug.t_one_frac + aug.t_half_frac
    ctx = (u >= lo) & (u < lo + aug.context_frac)
    t = torch.where(ctx, torch.rand(B, L, generator=g) * aug.context_max_noise, t)
    return t.to(dev)


def pixel_noise(shape, g: torch.Generator, dev) -> torch.Tensor:
    """Gaussian noise of a batch's pixel shape on `dev`, drawn by `g` where g lives (a CUDA generator on
    the GPU: drawing millions of values on the CPU and copying them was most of a GPU step's time)."""
    return torch.randn(shape, generator=g, device=g.device).to(dev)


def clip_history(source: torch.Tensor, batch: ClipBatch, h: torch.Tensor, present: torch.Tensor,
                 g: torch.Generator, gn: torch.Generator | None = None) -> torch.Tensor:
    """source (B, L, 3, H, W): the signal each frame leaves behind; h (B,) its noise level; present (B,)
    -> history planes (B, L, HISTORY_PLANES, H, W): frame i sees frame i-1 reprojected, frame 0 none.
    `gn` draws the pixel noise (default g)."""
    B, L, _, H, W = source.shape
    noisy = add_noise(source, pixel_noise(source.shape, gn or g, source.device).to(source), h[:, None].expand(B, L))
    prev = noisy[:, :-1].reshape(B * (L - 1), 3, H, W)
    mv = batch.motion[:, 1:].reshape(B * (L - 1), 2, H, W)
    dis = batch.disocclusion[:, 1:].reshape(B * (L - 1), 1, H, W)
    warped, valid = reproject(prev, mv, dis)
    pres = present[:, None].expand(B, L - 1).reshape(-1)
    planes = history_planes(warped, valid, pres).view(B, L - 1, -1, H, W)
    first = torch.zeros_like(planes[:, :1])
    return torch.cat([first, planes], dim=1)


def edge_l1(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean |finite difference of pred - that of target| over both image axes: (..., H, W) -> scalar.
    MSE on x-prediction is minimised by the mean of what the inputs leave open, which is soft; an L1 on
    gradients asks for edges where the target has them (the loss ablation in benchmarks/RESULTS.md)."""
    dx = (pred.diff(dim=-1) - target.diff(dim=-1)).abs().mean()
    dy = (pred.diff(dim=-2) - target.diff(dim=-2)).abs().mean()
    return dx + dy


@dataclass
class HourglassInputs:
    """One batch's inputs to the hourglass, everything but the network's own forward: the plain loss and the
    shortcut distillation (distill_hourglass.py) both start from these."""

    cond: torch.Tensor  # (B, L, C, H, W) conditioning with the dropped groups cleared
    hist: torch.Tensor  # (B, L, HISTORY_PLANES, H, W)
    t: torch.Tensor  # (B, L) noise levels
    d: torch.Tensor  # (B, L) step sizes (0: plain flow matching)
    h: torch.Tensor  # (B, L) the history's noise level, per sample
    noise: torch.Tensor  # (B, L, 3, H, W)
    x_t: torch.Tensor  # (B, L, 3, H, W) the target frames noised to t


def hourglass_inputs(raw_model, batch: ClipBatch, aug: HistoryAugment, g: torch.Generator, amp_dtype,
                     history: bool = True, gn: torch.Generator | None = None) -> HourglassInputs:
    """Steps 1-3 of the module docstring. `raw_model` runs the no-grad prediction of the own-output history
    (told step size 1 when it is a shortcut model: its one-step output; 0 otherwise, the step size it was
    trained with). `g` draws every per-sample decision; `gn` (default g) the pixel noise, on its own device."""
    gn = gn or g
    B, L = batch.target.shape[:2]
    dev = batch.target.device
    keep = sample_group_keep(B, aug.drop_group_p, g)
    cond = drop_groups(batch.cond, keep)
    t = frame_levels(B, L, aug, g, dev)
    d = torch.zeros_like(t)
    noise = pixel_noise(batch.target.shape, gn, dev)
    h = torch.where(torch.rand(B, generator=g) < aug.history_noise_p,
                    torch.rand(B, generator=g) * aug.history_noise_max, torch.zeros(B)).to(dev)
    present = (torch.rand(B, generator=g) >= aug.history_drop_p).float().to(dev) * float(history)
    hist = clip_history(corrupt(batch.target, aug, g), batch, h, present, g, gn)
    hh = h[:, None].expand(B, L)
    if history and float(torch.rand(1, generator=g)) < aug.own_output_frac:
        # the history becomes the model's own one-step prediction from pure noise, as at run time; chained
        # over `rounds` predictions, each from fresh noise (a run draws new noise every frame)
        rounds = 1 + int(torch.randint(aug.own_output_rounds, (1,), generator=g)) if aug.own_output_rounds > 1 else 1
        ones = torch.ones_like(t)
        for r in range(rounds):
            start = noise if r == 0 else pixel_noise(batch.target.shape, gn, dev)
            with torch.no_grad(), torch.autocast(dev.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                own = raw_model.forward_clip(start, cond, hist, ones, ones if raw_model.cfg.shortcut else d, hh,
                                             batch.action, batch.prompt).float().clamp(-1, 1)
            hist = clip_history(own, batch, h, present, g, gn)
    return HourglassInputs(cond, hist, t, d, hh, noise, add_noise(batch.target, noise, t))


def hourglass_loss(model, raw_model, batch: ClipBatch, aug: HistoryAugment, g: torch.Generator, amp_dtype,
                   history: bool = True, gn: torch.Generator | None = None, edge_weight: float = 0.0) -> torch.Tensor:
    """`model` may be the DDP wrapper; `raw_model` runs the no-grad prediction of the own-output history.
    `g` draws every per-sample decision; `gn` (default g) the pixel noise, on its own device;
    `edge_weight` adds that much of `edge_l1` to the x-prediction MSE."""
    x = hourglass_inputs(raw_model, batch, aug, g, amp_dtype, history, gn)
    with torch.autocast(batch.target.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
        pred = model(x.x_t, x.cond, x.hist, x.t, x.d, x.h, batch.action, batch.prompt)
    loss = F.mse_loss(pred.float(), batch.target)
    if edge_weight:
        loss = loss + edge_weight * edge_l1(pred.float(), batch.target)
    return loss
