"""Training the causal generator: flow matching (x-prediction) with diffusion forcing and history
augmentation, bf16 autocast on GPU; the optimisation itself (EMA, checkpoints, resume, DDP via
torchrun) is the shared loop in loop.py.

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
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch
import torch.nn.functional as F

from neural_renderer.model.checkpoint import save_checkpoint
from neural_renderer.training.clip_sources import ClipBatch, ClipPool, clip_stream
from neural_renderer.model.inputs import drop_groups, sample_group_keep
from neural_renderer.model.flow import add_noise, sample_train_t
from neural_renderer.model.registry import MODELS, build
from neural_renderer.training.history import HistoryAugment, blur, hourglass_loss
from neural_renderer.training.config import TrainConfig
from neural_renderer.training.loop import LoopState, make_optimizer, run_loop, save_loss_plot, setup_distributed


# -- augmentation ----------------------------------------------------------------------------------


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


# -- clips -----------------------------------------------------------------------------------------


# -- the objective ---------------------------------------------------------------------------------


def training_step(model, raw_model, batch: ClipBatch, cfg: TrainConfig, g: torch.Generator, amp_dtype,
                  gn: torch.Generator | None = None):
    if raw_model.cfg.arch == "hourglass":  # the reprojected history's objective (training/history.py)
        aug = HistoryAugment(own_output_frac=cfg.own_output_frac, own_output_rounds=cfg.own_output_rounds,
                             drop_group_p=cfg.drop_group_p,
                             blur_p=cfg.blur_p, color_shift_p=cfg.color_shift_p)
        return hourglass_loss(model, raw_model, batch, aug, g, amp_dtype, history=cfg.history, gn=gn,
                              edge_weight=cfg.edge_loss)
    B, L = batch.target.shape[:2]
    dev = batch.target.device
    keep = sample_group_keep(B, cfg.drop_group_p, g)
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


def train(cfg: TrainConfig, progress: bool = True) -> dict:
    from tqdm import tqdm

    from neural_renderer.serving.prompts import style_embeddings

    rank, world, dev = setup_distributed(cfg.device)
    torch.manual_seed(cfg.seed)
    out = Path(cfg.out)
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
    mcfg = MODELS[cfg.model]()
    if not cfg.world:
        mcfg = replace(mcfg, world_freqs=0)
    model = build(mcfg).to(dev)
    if cfg.init:
        from neural_renderer.model.checkpoint import init_state

        state = init_state(cfg.init, mcfg)
        model.load_state_dict({k: v.float() for k, v in state.items()})
    ema_model = copy.deepcopy(model).requires_grad_(False)
    opt = make_optimizer(model, cfg.lr)
    state = LoopState()
    if cfg.resume:
        saved = torch.load(cfg.resume, map_location=dev, weights_only=True)
        model.load_state_dict(saved["model"])
        ema_model.load_state_dict(saved["ema"])
        opt.load_state_dict(saved["opt"])
        state = LoopState(step=int(saved["step"]), history={"loss": [tuple(h) for h in saved.get("history", [])]},
                          elapsed_s=float(saved.get("elapsed_s", 0.0)))
    ddp_model = model
    if world > 1:
        ddp_model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None)
    amp_dtype = torch.bfloat16 if dev.type == "cuda" else None
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True

    style_table = style_embeddings()
    styles = cfg.styles or sorted(style_table)
    render_res = cfg.render_resolution or mcfg.resolution
    if cfg.recording:
        from neural_renderer.training.recording_pool import mixed_pool

        pool, stream = mixed_pool(cfg, render_res, styles, style_table, dev, rank, world=bool(mcfg.world_freqs))
    else:
        pool = ClipPool(cfg.pool, cfg.clip_len, render_res, styles, style_table, device=dev, looks=cfg.looks_per_clip,
                        world=bool(mcfg.world_freqs))
        stream = clip_stream(cfg, render_res, styles, rank)
    t_fill = time.time()
    fill = tqdm(total=cfg.pool, desc="filling clip pool", disable=not (progress and rank == 0))
    while pool.filled < cfg.pool:
        if pool.filled >= cfg.batch and cfg.fill_max_s and time.time() - t_fill > cfg.fill_max_s:
            break  # start training; refreshes fill the rest
        clip = next(stream)
        if clip is None:  # parallel rendering: nothing ready yet
            time.sleep(0.02)
            continue
        pool.add(clip)
        fill.update(1)
    fill.close()
    fill_s = time.time() - t_fill

    g = torch.Generator().manual_seed(cfg.seed * 1000 + rank)
    # pixel noise is drawn where it is used: on a GPU by a generator of its own (same seed, other stream)
    gn = torch.Generator(device=dev).manual_seed(cfg.seed * 1000 + rank) if dev.type == "cuda" else g
    st = run_loop(model, lambda batch: (training_step(ddp_model, model, batch, cfg, g, amp_dtype, gn), {}), pool, cfg, g,
                  f"train {cfg.model}", ema_model=ema_model, ema=cfg.ema, ema_warmup=True, stream=stream,
                  progress=progress, opt=opt, state=state, world=world, rank=rank, ckpt_every=cfg.ckpt_every,
                  on_checkpoint=lambda s: _save(cfg, mcfg, model, ema_model, opt, s, out))
    if hasattr(stream, "close"):  # stop the render workers now, not at interpreter exit (where an EGL pool can hang)
        stream.close()
    step, history, elapsed, step_times = st.step, st.history.get("loss", []), st.elapsed_s, st.step_times
    run_s = max(sum(step_times), 1e-9)
    result = {"steps": step, "elapsed_s": elapsed, "pool_fill_s": fill_s, "final_loss": history[-1][1] if history else None,
              "median_step_s": sorted(step_times)[len(step_times) // 2] if step_times else None, "world_size": world,
              "device": str(dev), "samples_per_s": len(step_times) * cfg.batch * cfg.clip_len / run_s,
              "clips_added": st.clips_added, "data_share": st.data_s / run_s}
    if rank == 0:
        _save(cfg, mcfg, model, ema_model, opt, st, out)
        (out / "train_result.json").write_text(json.dumps(result, indent=1))
    if world > 1:
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    return result


def _save(cfg, mcfg, model, ema_model, opt, st: LoopState, out: Path) -> None:
    step, history, elapsed = st.step, st.history.get("loss", []), st.elapsed_s
    meta = {"step": step, "train_config": {k: v for k, v in asdict(cfg).items() if k != "looks"},
            "elapsed_s": elapsed, "final_loss": history[-1][1] if history else None, "looks": cfg.looks}
    save_checkpoint(ema_model.state_dict(), mcfg, out / mcfg.name, meta=meta)
    torch.save({"model": model.state_dict(), "ema": ema_model.state_dict(), "opt": opt.state_dict(),
                "step": step, "history": history, "elapsed_s": elapsed}, out / "train_state.pt")
    (out / "loss_history.json").write_text(json.dumps(history))
    save_loss_plot(history, out / "loss.png", f"{mcfg.name}: {step} steps, {elapsed:.0f} s")
