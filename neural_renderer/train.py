"""Training the causal generator: flow matching (x-prediction) with diffusion forcing and history
augmentation, EMA, bf16 autocast on GPU, safetensors checkpoints, resume, DDP via torchrun.

One step:
1. sample B clips of L frames from the on-device `ClipPool`, a style (target look) and a phrasing of
   its prompt per clip, and which conditioning groups the imagined client declares (dropout);
2. history augmentation of the frames' clean signal (what later frames see as context): for part of
   the batches the model's own one-step predictions replace it; otherwise blur and colour shifts;
3. an independent noise level per frame (diffusion forcing), part of the frames at low
   "context" levels; the model is told every frame's level;
4. one `forward_clip` pass (frame-causal context, exactly as streaming) and MSE to the clean target.
"""
from __future__ import annotations

import copy
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from neural_renderer.checkpoint import save_checkpoint
from neural_renderer.clip_sources import ClipBatch, ClipPool, dataset_clips, synthetic_clips, world_clips
from neural_renderer.engine_inputs import drop_groups
from neural_renderer.flow import add_noise, sample_train_t
from neural_renderer.model import MODELS, CausalDiT


@dataclass
class TrainConfig:
    model: str = "tiny"
    out: str = "runs/tiny"
    steps: int = 1000
    batch: int = 4
    clip_len: int = 6
    lr: float = 3e-4
    warmup: int = 100
    ema: float = 0.999
    grad_clip: float = 1.0
    source: str = "world"  # world | synthetic | a dataset directory
    pool: int = 64  # clips kept on device
    refresh_every: int = 4  # steps between two new clips entering the pool
    styles: list[str] = field(default_factory=list)  # empty = all
    # history augmentation / diffusion forcing
    own_output_frac: float = 0.3
    context_frac: float = 0.5
    context_max_noise: float = 0.2
    blur_p: float = 0.25
    color_shift_p: float = 0.25
    drop_group_p: float = 0.25
    history_aug: bool = True  # False = the ablation: clean context, no corruption
    seed: int = 0
    log_every: int = 25
    ckpt_every: int = 500
    time_budget_s: float = 0.0  # stop (and save) after this many seconds; 0 = no limit
    resume: str = ""  # a train_state.pt to continue from
    init: str = ""  # a shipped/json checkpoint to start the weights from
    device: str = ""
    # fine-tuning on a recording (neural_renderer/training/finetune.py): its clips, mixed at look_share with
    # `source` clips; looks = {name: prompt embedding}, saved into the checkpoint for serving
    recording: str = ""
    look_share: float = 0.5
    looks: dict = field(default_factory=dict)


# -- distributed -----------------------------------------------------------------------------------


def setup_distributed(device: str) -> tuple[int, int, torch.device]:
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


# -- augmentation ----------------------------------------------------------------------------------


def blur(x: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) -> a 3x3 box-blurred copy (reflect-padded)."""
    return F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, stride=1)


def history_augment(clean: torch.Tensor, cfg: TrainConfig, g: torch.Generator) -> torch.Tensor:
    """clean (B, L, 3, H, W) -> the same frames with blur / colour shifts on random frames."""
    B, L = clean.shape[:2]
    dev = clean.device
    x = clean.clone()
    flat = x.view(B * L, *x.shape[2:])
    pick = (torch.rand(B * L, generator=g) < cfg.blur_p).to(dev)
    flat[:] = torch.where(pick.view(-1, 1, 1, 1), blur(flat), flat)
    shift = (torch.rand(B * L, generator=g) < cfg.color_shift_p).to(dev).view(-1, 1, 1, 1).float()
    gain = 1.0 + 0.1 * torch.randn(B * L, 3, 1, 1, generator=g).to(dev)
    bias = 0.05 * torch.randn(B * L, 3, 1, 1, generator=g).to(dev)
    flat[:] = shift * (flat * gain + bias) + (1 - shift) * flat
    return x.clamp_(-1, 1)


def frame_levels(B: int, L: int, cfg: TrainConfig, g: torch.Generator, dev) -> torch.Tensor:
    """(B, L) noise levels: independent per frame; some frames at context-like low levels."""
    t = sample_train_t((B, L), generator=g)
    ctx = torch.rand(B, L, generator=g) < cfg.context_frac
    ctx[:, -1] = False  # the last frame is always a real denoising target
    t = torch.where(ctx, torch.rand(B, L, generator=g) * cfg.context_max_noise, t)
    return t.to(dev)


# -- the loop --------------------------------------------------------------------------------------


def lr_at(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    prog = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(prog, 1.0))))


def clip_stream(cfg: TrainConfig, resolution: int, styles: list[str], rank: int):
    seed = cfg.seed * 7919 + rank * 104729
    if cfg.source == "synthetic":
        return synthetic_clips(cfg.clip_len, resolution, styles, seed=seed)
    if cfg.source == "world":
        from demos.seeds import TRAIN_SEEDS

        def seeds():
            g = torch.Generator().manual_seed(seed)
            while True:
                yield int(TRAIN_SEEDS[int(torch.randint(len(TRAIN_SEEDS), (1,), generator=g))])

        return world_clips(seeds(), cfg.clip_len, resolution, styles)
    return dataset_clips(cfg.source, cfg.clip_len, seed=seed)


def training_step(model, raw_model, batch: ClipBatch, cfg: TrainConfig, g: torch.Generator, amp_dtype):
    B, L = batch.target.shape[:2]
    dev = batch.target.device
    keep = {grp: (torch.rand(B, generator=g) >= cfg.drop_group_p) for grp in ("color", "gbuffer")}
    cond = drop_groups(batch.cond, keep)
    t = frame_levels(B, L, cfg, g, dev)
    d = torch.zeros_like(t)
    noise = torch.randn(batch.target.shape, generator=g).to(dev)
    source = batch.target
    if cfg.history_aug:
        if float(torch.rand(1, generator=g)) < cfg.own_output_frac:
            # the model's own one-step outputs as the clean signal of the context
            with torch.no_grad(), torch.autocast(dev.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                ones = torch.ones_like(t)
                own = raw_model.forward_clip(noise, cond, ones, d, batch.action, batch.prompt).float().clamp(-1, 1)
            source = own
        else:
            source = history_augment(batch.target, cfg, g)
        # the frame the loss is about keeps its true clean signal where it is a denoising target
        is_target = (t > cfg.context_max_noise).view(B, L, 1, 1, 1)
        source = torch.where(is_target, batch.target, source)
    x_t = add_noise(source, noise, t)
    with torch.autocast(dev.type, dtype=amp_dtype, enabled=amp_dtype is not None):
        pred = model(x_t, cond, t, d, batch.action, batch.prompt)
    return F.mse_loss(pred.float(), batch.target)


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
    ax.set_ylabel("MSE (x-prediction, [-1,1] pixels)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def train(cfg: TrainConfig, progress: bool = True) -> dict:
    from tqdm import tqdm

    from neural_renderer.prompts import style_embeddings

    rank, world, dev = setup_distributed(cfg.device)
    torch.manual_seed(cfg.seed)
    out = Path(cfg.out)
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
    mcfg = MODELS[cfg.model]()
    model = CausalDiT(mcfg).to(dev)
    if cfg.init:
        from neural_renderer.checkpoint import load_state

        _, state, _ = load_state(cfg.init)
        model.load_state_dict({k: v.float() for k, v in state.items()})
    ema_model = copy.deepcopy(model).requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.99), weight_decay=0.0)
    step, history, elapsed_before = 0, [], 0.0
    if cfg.resume:
        st = torch.load(cfg.resume, map_location=dev, weights_only=True)
        model.load_state_dict(st["model"])
        ema_model.load_state_dict(st["ema"])
        opt.load_state_dict(st["opt"])
        step = int(st["step"])
        history = [tuple(h) for h in st.get("history", [])]
        elapsed_before = float(st.get("elapsed_s", 0.0))
    ddp_model = model
    if world > 1:
        ddp_model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None)
    amp_dtype = torch.bfloat16 if dev.type == "cuda" else None
    ema_params, model_params = list(ema_model.parameters()), list(model.parameters())
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True

    style_table = style_embeddings()
    styles = cfg.styles or sorted(style_table)
    if cfg.recording:
        from neural_renderer.training.finetune import mixed_pool

        pool, stream = mixed_pool(cfg, mcfg.resolution, styles, style_table, dev, rank)
    else:
        pool = ClipPool(cfg.pool, cfg.clip_len, mcfg.resolution, styles, style_table, device=dev)
        stream = clip_stream(cfg, mcfg.resolution, styles, rank)
    t_fill = time.time()
    fill = tqdm(total=cfg.pool, desc="filling clip pool", disable=not (progress and rank == 0))
    while pool.filled < cfg.pool:
        pool.add(next(stream))
        fill.update(1)
    fill.close()
    fill_s = time.time() - t_fill

    g = torch.Generator().manual_seed(cfg.seed * 1000 + rank)
    bar = tqdm(total=cfg.steps, initial=step, desc=f"train {cfg.model}", disable=not (progress and rank == 0))
    t0 = time.time()
    loss_acc = torch.zeros((), device=dev)
    n_acc = 0
    step_times = []
    while step < cfg.steps:
        if cfg.time_budget_s and _over_budget(elapsed_before + time.time() - t0 > cfg.time_budget_s, world, dev):
            break
        ts = time.time()
        if cfg.refresh_every and step % cfg.refresh_every == 0 and step > 0:
            pool.add(next(stream))
        for pg in opt.param_groups:
            pg["lr"] = lr_at(step, cfg)
        batch = pool.sample(cfg.batch, g)
        loss = training_step(ddp_model, model, batch, cfg, g, amp_dtype)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        with torch.no_grad():
            decay = min(cfg.ema, (1 + step) / (10 + step))
            torch._foreach_lerp_(ema_params, model_params, 1 - decay)
        loss_acc += loss.detach()
        n_acc += 1
        step += 1
        step_times.append(time.time() - ts)
        bar.update(1)
        if step % cfg.log_every == 0 or step == cfg.steps:
            if world > 1:  # the logged loss is the mean over ranks, not rank 0's own
                torch.distributed.all_reduce(loss_acc, op=torch.distributed.ReduceOp.SUM)
                loss_acc /= world
            mean = float(loss_acc) / n_acc  # one sync per log interval, not per step
            history.append((step, mean))
            loss_acc.zero_()
            n_acc = 0
            bar.set_postfix(loss=f"{mean:.4f}", lr=f"{lr_at(step, cfg):.1e}")
        if rank == 0 and cfg.ckpt_every and step % cfg.ckpt_every == 0:
            _save(cfg, mcfg, model, ema_model, opt, step, history, elapsed_before + time.time() - t0, out)
    bar.close()
    elapsed = elapsed_before + time.time() - t0
    result = {"steps": step, "elapsed_s": elapsed, "pool_fill_s": fill_s, "final_loss": history[-1][1] if history else None,
              "median_step_s": sorted(step_times)[len(step_times) // 2] if step_times else None, "world_size": world,
              "device": str(dev)}
    if rank == 0:
        _save(cfg, mcfg, model, ema_model, opt, step, history, elapsed, out)
        (out / "train_result.json").write_text(json.dumps(result, indent=1))
    if world > 1:
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    return result


def _over_budget(mine: bool, world: int, dev) -> bool:
    """Every rank stops at the same step (a rank leaving early would hang DDP's all-reduce)."""
    if world == 1:
        return mine
    flag = torch.tensor([1.0 if mine else 0.0], device=dev)
    torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
    return bool(flag.item())


def _save(cfg, mcfg, model, ema_model, opt, step, history, elapsed, out: Path) -> None:
    meta = {"step": step, "train_config": {k: v for k, v in asdict(cfg).items() if k != "looks"},
            "elapsed_s": elapsed, "final_loss": history[-1][1] if history else None, "looks": cfg.looks}
    save_checkpoint(ema_model.state_dict(), mcfg, out / mcfg.name, meta=meta)
    torch.save({"model": model.state_dict(), "ema": ema_model.state_dict(), "opt": opt.state_dict(),
                "step": step, "history": history, "elapsed_s": elapsed}, out / "train_state.pt")
    (out / "loss_history.json").write_text(json.dumps(history))
    save_loss_plot(history, out / "loss.png", f"{mcfg.name}: {step} steps, {elapsed:.0f} s")
