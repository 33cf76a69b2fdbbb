"""The one optimisation loop that training, distillation and pruning's recovery all step through.

AdamW, linear warm-up then cosine decay to a tenth (`lr_at`), gradient clipping, an optional EMA of
the weights, a tqdm bar with one host sync per log interval, a time budget, periodic checkpoints,
resume and DDP (the caller wraps the model; every rank stops at the same step).

The EMA warm-up is a per-caller setting: a model starting from random weights ramps the decay up
((1 + step) / (10 + step), capped at `ema`) so the average does not keep its initial noise; a
student starting from its teacher's weights uses the constant decay from the first step.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol

import torch


class LoopConfig(Protocol):
    """The fields the loop reads from a caller's config dataclass (TrainConfig, DistillConfig, PruneConfig)."""

    steps: int
    batch: int
    lr: float
    warmup: int
    grad_clip: float
    refresh_every: int
    refresh_clips: int
    crop: int
    log_every: int
    time_budget_s: float


@dataclass
class LoopState:
    """Where a run stands; what `train_state.pt` keeps for a resume."""

    step: int = 0
    history: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    elapsed_s: float = 0.0
    step_times: list[float] = field(default_factory=list)
    clips_added: int = 0  # clips the stream brought into the pool during the run
    data_s: float = 0.0  # time spent taking them


def lr_at(step: int, cfg: LoopConfig, time_frac: float | None = None) -> float:
    """Linear warm-up, then cosine to a tenth: over cfg.steps, or over the time budget when one is set
    (`time_frac` = the share of it spent), so a run its budget cuts still ends at the low rate."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    prog = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    if time_frac is not None:
        prog = max(prog, time_frac)
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(prog, 1.0))))


def ema_decay(step: int, ema: float, warmup: bool) -> float:
    return min(ema, (1 + step) / (10 + step)) if warmup else ema


def make_optimizer(model: torch.nn.Module, lr: float) -> torch.optim.Optimizer:
    return torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, betas=(0.9, 0.99),
                             weight_decay=0.0)


# -- distributed -----------------------------------------------------------------------------------


def setup_distributed(device: str) -> tuple[int, int, torch.device]:
    """(rank, world size, device) from torchrun's environment; one process group per run."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if not device:
        device = f"cuda:{local}" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return rank, world, dev


def pick_device(name: str) -> torch.device:
    return torch.device(name or ("cuda" if torch.cuda.is_available() else "cpu"))


def _over_budget(mine: bool, world: int, dev) -> bool:
    """Every rank stops at the same step (a rank leaving early would hang DDP's all-reduce)."""
    if world == 1:
        return mine
    flag = torch.tensor([1.0 if mine else 0.0], device=dev)
    torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
    return bool(flag.item())


# -- the loop --------------------------------------------------------------------------------------


def run_loop(model: torch.nn.Module, loss_fn: Callable, pool, cfg: LoopConfig, g: torch.Generator, desc: str, *,
             ema_model: torch.nn.Module | None = None, ema: float = 0.0, ema_warmup: bool = True,
             stream=None, progress: bool = True, opt: torch.optim.Optimizer | None = None,
             state: LoopState | None = None, world: int = 1, rank: int = 0,
             ckpt_every: int = 0, on_checkpoint: Callable[[LoopState], None] | None = None) -> LoopState:
    """Step `model` until cfg.steps (or cfg.time_budget_s) on batches sampled from `pool`.

    `loss_fn(batch) -> (loss, parts)`, parts a dict of detached scalars logged beside the loss;
    `stream` (a clip iterator) refreshes the pool every cfg.refresh_every steps; `opt` and `state`
    continue a resumed run; `on_checkpoint(state)` runs every `ckpt_every` steps on rank 0."""
    from tqdm import tqdm

    opt = opt or make_optimizer(model, cfg.lr)
    st = state or LoopState()
    if ema_model is not None:
        ema_params = list(ema_model.parameters())
        model_params = [p for p in model.parameters()]
    dev = next(model.parameters()).device
    sums: dict[str, torch.Tensor] = {}
    n_acc = 0
    elapsed_before = st.elapsed_s
    t0 = time.time()
    bar = tqdm(total=cfg.steps, initial=st.step, desc=desc, disable=not (progress and rank == 0), dynamic_ncols=True)

    def log() -> dict[str, float]:
        nonlocal sums, n_acc
        if world > 1:  # the logged loss is the mean over ranks, not rank 0's own
            for v in sums.values():
                torch.distributed.all_reduce(v, op=torch.distributed.ReduceOp.SUM)
        means = {k: float(v) / n_acc / world for k, v in sums.items()}  # one sync per log interval
        for k, v in means.items():
            st.history.setdefault(k, []).append((st.step, v))
        sums, n_acc = {}, 0
        return means

    while st.step < cfg.steps:
        if cfg.time_budget_s and _over_budget(elapsed_before + time.time() - t0 > cfg.time_budget_s, world, dev):
            break
        ts = time.time()
        if stream is not None and cfg.refresh_every and st.step % cfg.refresh_every == 0 and st.step > 0:
            tw = time.time()
            for _ in range(max(1, cfg.refresh_clips)):
                clip = next(stream)
                if clip is None:  # a parallel renderer has nothing ready: train on what the pool holds
                    break
                pool.add(clip)
                st.clips_added += 1
            st.data_s += time.time() - tw
        time_frac = (elapsed_before + time.time() - t0) / cfg.time_budget_s if cfg.time_budget_s else None
        for pg in opt.param_groups:
            pg["lr"] = lr_at(st.step, cfg, time_frac)
        batch = pool.sample(cfg.batch, g, crop=cfg.crop)
        loss, parts = loss_fn(batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        if ema_model is not None:
            with torch.no_grad():  # one fused launch for all parameters, not one per tensor
                torch._foreach_lerp_(ema_params, model_params, 1.0 - ema_decay(st.step, ema, ema_warmup))
        for k, v in {"loss": loss.detach(), **parts}.items():
            sums[k] = sums.get(k, 0.0) + torch.as_tensor(v, device=dev, dtype=torch.float32)
        n_acc += 1
        st.step += 1
        st.step_times.append(time.time() - ts)
        bar.update(1)
        if st.step % cfg.log_every == 0 or st.step == cfg.steps:
            bar.set_postfix({**{k: f"{v:.4f}" for k, v in log().items()}, "lr": f"{opt.param_groups[0]['lr']:.1e}"})
        st.elapsed_s = elapsed_before + time.time() - t0
        if rank == 0 and ckpt_every and on_checkpoint is not None and st.step % ckpt_every == 0:
            on_checkpoint(st)
    if n_acc:
        log()
    bar.close()
    st.elapsed_s = elapsed_before + time.time() - t0
    return st


def save_loss_plot(history: list[tuple[int, float]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not history:
        return
    steps, losses = zip(*history)
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(steps, losses, lw=0.8, label="loss (mean over log interval)")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss (x-prediction MSE + any edge term)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
