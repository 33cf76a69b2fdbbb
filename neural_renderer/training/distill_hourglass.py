"""Shortcut distillation, recovery inputs and the sampling measurements for the hourglass generator.

Every batch starts from the hourglass's own training inputs (history.hourglass_inputs: dropped groups,
per-frame levels, the reprojected and augmented history, with the EMA model's one-step output as the
history for part of the batches), so the student keeps the objective it was trained with:
- flow frames: x-prediction of the true frame at the finest step d = 1/M (the d -> 0 limit), every frame
  of the flow clips and the frames of the self-consistency clips that are not their target;
- self-consistency (the first `n_sc` clips): ONE frame per clip takes a step D = 2d from a level on the
  D-grid and must land where two d-steps of the EMA model land (shortcut.shortcut_target). One frame,
  because every hourglass frame is a denoising target and later frames attend to earlier ones: the
  intermediate step of a second frame would move the first frame's context, and the student's one big
  step never sees that. With one frame stepped, the other frames are exactly the context (and the
  history) the student sees.

Sampling is measured the way the daemon samples: the clip's frames one after another through the
serving path's `StreamingSampler` (KV cache, the previous output reprojected as history), with the
same seeded noise for every model and step count.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from neural_renderer.model.flow import add_noise
from neural_renderer.serving.stream import StreamingSampler
from neural_renderer.training.clip_sources import ClipBatch
from neural_renderer.training.history import HistoryAugment, hourglass_inputs
from neural_renderer.training.shortcut import big_steps, masked_shortcut_target, random_step_sizes, step_sizes


def augment(history_aug: bool) -> HistoryAugment:
    """The hourglass's training augmentation (train.py's defaults), or none at all for the ablation."""
    if history_aug:
        return HistoryAugment()
    return HistoryAugment(own_output_frac=0.0, history_noise_p=0.0, blur_p=0.0, color_shift_p=0.0)


def _frame_predictor(model, x, batch: ClipBatch, rows: slice, t_ctx: torch.Tensor, d_ctx: torch.Tensor,
                     frames: torch.Tensor, amp_dtype):
    """(x, t, d) -> x0_hat of clips `rows`, where the frames outside `frames` keep their own t and d. A
    model trained without shortcut targets is always told d = 0, the only step size it knows."""
    dev = t_ctx.device

    def predict(xx, tt, dd):
        tt = torch.where(frames, tt, t_ctx)
        dd = torch.where(frames, dd, d_ctx) if model.cfg.shortcut else torch.zeros_like(dd)
        with torch.autocast(dev.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            return model(xx, x.cond[rows], x.hist[rows], tt, dd, x.h[rows], batch.action[rows], batch.prompt[rows]).float()

    return predict


def hourglass_shortcut_loss(model, ema_model, batch: ClipBatch, aug: HistoryAugment, n_sc: int, finest: int,
                            g: torch.Generator, amp_dtype) -> tuple[torch.Tensor, dict]:
    """Flow matching at d = 1/finest everywhere but one frame of each of the first n_sc clips, which gets
    the self-consistency target of the EMA model. Returns the loss and its two parts (no host sync)."""
    x = hourglass_inputs(ema_model, batch, aug, g, amp_dtype)
    B, L = x.t.shape
    dev = x.t.device
    t = x.t.clone()
    d = torch.full_like(t, step_sizes(finest)[0])
    target = batch.target
    sc = torch.zeros(B, L, dtype=torch.bool, device=dev)
    x_t = x.x_t
    if n_sc > 0:
        D, t_sc = big_steps(n_sc, 1, finest, g)
        frame = torch.randint(L, (n_sc,), generator=g)
        sc[torch.arange(n_sc), frame] = True
        rows, m = slice(0, n_sc), sc[:n_sc]
        t[rows] = torch.where(m, t_sc.to(dev), t[rows])
        d[rows] = torch.where(m, D.to(dev)[:, None], d[rows])
        x_t = add_noise(batch.target, x.noise, t)
        t_safe = torch.where(m, t[rows], torch.ones_like(t[rows]))  # other frames: any t > 0 (result unused)
        with torch.no_grad():
            predict = _frame_predictor(ema_model, x, batch, rows, t[rows], d[rows], m, amp_dtype)
            x0_sc, _ = masked_shortcut_target(predict, x_t[rows], t_safe, d[rows] * 0.5, m)
        target = batch.target.clone()
        target[rows] = torch.where(m.view(n_sc, L, 1, 1, 1), x0_sc, target[rows])
    with torch.autocast(dev.type, dtype=amp_dtype, enabled=amp_dtype is not None):
        pred = model(x_t, x.cond, x.hist, t, d, x.h, batch.action, batch.prompt).float()
    err = (pred - target).pow(2).mean(dim=(2, 3, 4))  # (B, L)
    flow = (err * ~sc).sum() / (~sc).sum().clamp(min=1)
    sc_part = (err * sc).sum() / sc.sum().clamp(min=1)
    return err.mean(), {"flow": flow.detach(), "sc": sc_part.detach()}


def hourglass_clip_inputs(teacher, batch: ClipBatch, aug: HistoryAugment, finest: int, g: torch.Generator,
                          amp_dtype) -> tuple[tuple, torch.Tensor]:
    """(the hourglass's forward arguments, the true frames) of one batch, for output matching and pruning's
    scores; a shortcut teacher's frames get random step sizes."""
    x = hourglass_inputs(teacher, batch, aug, g, amp_dtype)
    d = random_step_sizes(teacher.cfg.shortcut, torch.ones_like(x.t, dtype=torch.bool), finest, g)
    return (x.x_t, x.cond, x.hist, x.t, d, x.h, batch.action, batch.prompt), batch.target


# -- measurements on fixed clips ------------------------------------------------------------------


@torch.no_grad()
def stream_clip(model, batch: ClipBatch, steps: int, seed: int = 0) -> torch.Tensor:
    """Every frame of the clips, streamed in order as the daemon does, `steps` Euler steps each
    -> (B, L, 3, H, W) in [-1, 1]."""
    was = model.training
    B, L = batch.target.shape[:2]
    s = StreamingSampler(model, batch.prompt, steps=steps, seed=seed, batch=B, cuda_graph=False)
    frame = lambda a, i: None if a is None else a[:, i]  # a client without motion vectors: no history
    outs = [s.step(batch.cond[:, i], batch.action[:, i], frame(batch.motion, i), frame(batch.disocclusion, i))
            for i in range(L)]
    model.train(was)  # the sampler puts the model in eval mode
    return torch.stack(outs, dim=1).float()


@torch.no_grad()
def hourglass_self_consistency_error(model, batch: ClipBatch, finest: int, seed: int = 0, target_model=None) -> float:
    """Mean over step sizes D = 2/M..1 of the MSE between the model's one D-step prediction of the last
    frame and two D/2-steps of `target_model` (default: the same model), at t = D and t = 1, on inputs
    fixed by `seed` (history from the corrupted true frames, never a model's own output)."""
    target_model = model if target_model is None else target_model
    aug = HistoryAugment(own_output_frac=0.0)
    x = hourglass_inputs(model, batch, aug, torch.Generator().manual_seed(seed), None)
    B, L = x.t.shape
    last = torch.zeros(B, L, dtype=torch.bool, device=x.t.device)
    last[:, -1] = True
    d_ctx = torch.full_like(x.t, step_sizes(finest)[0])
    errs = []
    for D in step_sizes(finest)[1:]:
        for t_last in sorted({D, 1.0}):
            t = torch.where(last, torch.full_like(x.t, t_last), x.t)
            x_t = add_noise(batch.target, x.noise, t)
            t_safe = torch.where(last, t, torch.ones_like(t))
            half = torch.where(last, torch.full_like(t, D / 2), d_ctx)
            predict = _frame_predictor(target_model, x, batch, slice(None), t, d_ctx, last, None)
            target, _ = masked_shortcut_target(predict, x_t, t_safe, half, last)
            one = _frame_predictor(model, x, batch, slice(None), t, d_ctx, last, None)(x_t, t, torch.full_like(t, D))
            errs.append(float(F.mse_loss(one[:, -1], target[:, -1])))
    return sum(errs) / len(errs)
