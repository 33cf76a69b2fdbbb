"""Shortcut distillation and the output-matching recovery that pruning uses, for both architectures.

Flow convention (flow.py): x_t = (1 - t) x0 + t noise, t = 1 is noise; the network predicts x0 and the
velocity is derived, v = (x_t - x0_hat) / t, so a step of size d goes x_{t-d} = x_t - d v.

Shortcut model: the network is also told the step size d it will be sampled with. Step sizes are
powers of two, d in {1/M, 2/M, ..., 1} with M = `DistillConfig.finest` (32), so the same weights
sample in 1, 2, 4, ... M steps (the Generator passes d = 1/steps when `cfg.shortcut`).
- Flow rows (about 7/8 of the batch): plain flow matching at the finest step d = 1/M, x-prediction of
  the true clean frame, noise levels t drawn as the generator's training draws them.
- Self-consistency rows (about 1/8): a step of D = 2d from t (t on the grid of multiples of D, the
  levels a D-step sampler visits) must equal two d-steps of the EMA model:
  v1 = v_ema(x_t, t, d), v2 = v_ema(x_t - d v1, t - d, d), target velocity (v1 + v2) / 2, i.e. the
  x-prediction target x0* = x_t - t (v1 + v2) / 2 (shortcut.py).
Both losses are MSE in x-space like the generator's, so the step-size-free part is unchanged. The student
starts from the teacher's weights; the hourglass student's step-size embedding is folded to its d = 0
value (`shortcut.fold_step_embedding`), so at its first step it computes the teacher's function for every d.

The hourglass (arch "hourglass") has its own batch construction (distill_hourglass.py: the reprojected
history, one self-consistency frame per clip) and is measured by streaming clips through the serving
sampler; this file holds the DiT's and everything both share (the run itself, the tables, the pool).
DiT clips keep the generator's training structure: diffusion forcing (every frame its own level; context
frames at low levels with d = 0, as the Generator writes its cache), history augmentation (blur,
colour shifts, the model's own one-step outputs as context) and conditioning-group dropout.

Both step through the shared loop (loop.py). Recovery (`recovery_loss`, used by prune.py): a pruned student
learns to match the unpruned teacher's prediction on the same noisy clip (output matching) plus the flow
loss on the true frame.
"""
from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from neural_renderer.eval.metrics import psnr_from_mse
from neural_renderer.training.clip_sources import ClipBatch
from neural_renderer.model.inputs import drop_groups, sample_group_keep
from neural_renderer.model.flow import add_noise, euler_step, schedule
from neural_renderer.model.dit import CausalDiT
from neural_renderer.model.registry import build
from neural_renderer.training.distill_hourglass import (augment, hourglass_clip_inputs, hourglass_self_consistency_error,
                                                        hourglass_shortcut_loss, stream_clip)
from neural_renderer.training.loop import pick_device, run_loop, save_loss_plot
from neural_renderer.training.shortcut import (big_steps, fold_step_embedding, masked_shortcut_target,
                                               output_matching_loss, random_step_sizes, step_sizes)
from neural_renderer.training.config import DistillConfig, TrainConfig
from neural_renderer.training.train import frame_levels, history_augment


# -- one batch ---------------------------------------------------------------------------------------


@dataclass
class NoisyClips:
    """What one batch feeds the model: per-frame levels, the context signal and which frames are targets."""

    cond: torch.Tensor  # (B, L, C, R, R)
    source: torch.Tensor  # (B, L, 3, R, R) clean signal the noise is added to (history-augmented)
    noise: torch.Tensor  # (B, L, 3, R, R)
    t: torch.Tensor  # (B, L)
    is_target: torch.Tensor  # (B, L) bool: denoising targets (the rest are context frames)


def noisy_clips(ema_model: CausalDiT, batch: ClipBatch, tcfg: TrainConfig, g: torch.Generator, amp_dtype) -> NoisyClips:
    """The generator's training inputs (train.training_step, steps 1-3), reproduced here because that
    function also runs the forward and the loss."""
    B, L = batch.target.shape[:2]
    dev = batch.target.device
    keep = sample_group_keep(B, tcfg.drop_group_p, g)
    cond = drop_groups(batch.cond, keep)
    t = frame_levels(B, L, tcfg, g, dev)
    noise = torch.randn(batch.target.shape, generator=g).to(dev)
    is_target = t > tcfg.context_max_noise
    source = batch.target
    if tcfg.history_aug:
        if float(torch.rand(1, generator=g)) < tcfg.own_output_frac:
            with torch.no_grad(), torch.autocast(dev.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                ones = torch.ones_like(t)
                source = ema_model.forward_clip(noise, cond, ones, torch.ones_like(t) if ema_model.cfg.shortcut else torch.zeros_like(t),
                                                batch.action, batch.prompt).float().clamp(-1, 1)
        else:
            source = history_augment(batch.target, tcfg, g)
        source = torch.where(is_target.view(B, L, 1, 1, 1), batch.target, source)
    return NoisyClips(cond, source, noise, t, is_target)


def shortcut_loss(model, ema_model: CausalDiT, batch: ClipBatch, nc: NoisyClips, n_sc: int, finest: int,
                  g: torch.Generator, amp_dtype) -> tuple[torch.Tensor, dict]:
    """Flow matching at d = 1/finest on clips n_sc.., self-consistency on clips :n_sc. Returns the
    loss and its two parts (tensors, no host sync)."""
    B, L = nc.t.shape
    dev = nc.t.device
    d_min = step_sizes(finest)[0]
    t, is_target = nc.t.clone(), nc.is_target
    d_in = torch.where(is_target, torch.full_like(t, d_min), torch.zeros_like(t))  # context frames: d = 0
    target = batch.target.clone()
    if n_sc > 0:
        # big step D = 2d per clip, t on the D-grid (j D, j = 1..1/D) per target frame
        D, t_sc = big_steps(n_sc, L, finest, g)
        t_sc = t_sc.to(dev)
        D = D.to(dev)[:, None].expand(n_sc, L)
        tgt = is_target[:n_sc]
        t[:n_sc] = torch.where(tgt, t_sc, t[:n_sc])
        d_in[:n_sc] = torch.where(tgt, D, torch.zeros_like(D))
    x_t = add_noise(nc.source, nc.noise, t)
    if n_sc > 0:
        sl = slice(0, n_sc)
        tgt = is_target[sl]
        half = torch.where(tgt, d_in[sl] * 0.5, torch.zeros_like(t[sl]))
        t_safe = torch.where(tgt, t[sl], torch.ones_like(t[sl]))  # context frames: any t > 0 (result unused)

        def predict(x, tt, dd):
            tt = torch.where(tgt, tt, t[sl])  # context frames keep their own level and d = 0
            with torch.autocast(dev.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                return ema_model.forward_clip(x, nc.cond[sl], tt, dd, batch.action[sl], batch.prompt[sl]).float()

        with torch.no_grad():
            x0_sc, _ = masked_shortcut_target(predict, x_t[sl], t_safe, half, tgt)
        target[sl] = torch.where(tgt.view(n_sc, L, 1, 1, 1), x0_sc, target[sl])
    with torch.autocast(dev.type, dtype=amp_dtype, enabled=amp_dtype is not None):
        pred = model(x_t, nc.cond, t, d_in, batch.action, batch.prompt).float()
    err = (pred - target).pow(2).mean(dim=(2, 3, 4))  # (B, L)
    flow = err[n_sc:].mean() if n_sc < B else err.new_zeros(())
    sc = (err[:n_sc] * is_target[:n_sc]).sum() / is_target[:n_sc].sum().clamp(min=1) if n_sc > 0 else err.new_zeros(())
    return err.mean(), {"flow": flow.detach(), "sc": sc.detach()}


def recovery_loss(student, teacher: CausalDiT, batch: ClipBatch, nc: NoisyClips, finest: int,
                  g: torch.Generator, amp_dtype, match_weight: float = 1.0) -> tuple[torch.Tensor, dict]:
    """Output matching to the unpruned teacher + the flow loss, on the same noisy clips. Target frames
    get a random shortcut step size when the teacher is a shortcut model (so the student keeps it)."""
    inputs, target = _dit_inputs(nc, batch, teacher, finest, g)
    return output_matching_loss(student, teacher, inputs, target, amp_dtype, match_weight)


def _dit_inputs(nc: NoisyClips, batch: ClipBatch, teacher: CausalDiT, finest: int, g: torch.Generator):
    d = random_step_sizes(teacher.cfg.shortcut, nc.is_target, finest, g)
    return (add_noise(nc.source, nc.noise, nc.t), nc.cond, nc.t, d, batch.action, batch.prompt), batch.target


def clip_inputs(teacher, batch: ClipBatch, cfg, g: torch.Generator, amp_dtype) -> tuple[tuple, torch.Tensor]:
    """(the teacher's forward arguments, the true frames) for one batch of either architecture, built as
    its training builds them: what pruning scores on and recovery matches outputs on. `cfg` carries
    data / history_aug / finest (a PruneConfig or DistillConfig)."""
    if teacher.cfg.arch == "hourglass":
        return hourglass_clip_inputs(teacher, batch, augment(cfg.history_aug), cfg.finest, g, amp_dtype)
    return _dit_inputs(noisy_clips(teacher, batch, train_config(cfg), g, amp_dtype), batch, teacher, cfg.finest, g)


# -- fixed-input evaluation ---------------------------------------------------------------------------


@torch.no_grad()
def sample_last_frame(model: CausalDiT, batch: ClipBatch, noise: torch.Tensor, steps: int, context_noise: float | None = None) -> torch.Tensor:
    """Sample the last frame of each clip in `steps` Euler steps, earlier frames as clean context at the
    model's cache noise level (what the Generator caches). noise (B, 3, R, R) -> (B, 3, R, R)."""
    B, L = batch.target.shape[:2]
    dev = batch.target.device
    lvl = model.cfg.context_noise if context_noise is None else context_noise
    g = torch.Generator().manual_seed(1234)
    ctx = add_noise(batch.target, torch.randn(batch.target.shape, generator=g).to(dev), torch.full((B, L), lvl, device=dev))
    x = ctx.clone()
    x[:, -1] = noise
    t = torch.full((B, L), lvl, device=dev)
    d = torch.zeros(B, L, device=dev)
    d_step = 1.0 / steps if model.cfg.shortcut else 0.0
    levels = schedule(steps)
    x0 = noise
    for k in range(steps):
        t[:, -1], d[:, -1] = levels[k], d_step
        x0 = model.forward_clip(x, batch.cond, t, d, batch.action, batch.prompt)[:, -1].float()
        x[:, -1] = euler_step(x[:, -1], x0, levels[k], levels[k + 1])
    return x0.clamp(-1, 1)


@torch.no_grad()
def self_consistency_error(model: CausalDiT, batch: ClipBatch, finest: int, seed: int = 0,
                           target_model: CausalDiT | None = None) -> float:
    """Mean over step sizes D = 2/M..1 of the MSE between the model's one D-step prediction of the last
    frame and two D/2-steps of `target_model` (default: the same model), in x-space, at t = D (the
    last step of a D-step sampler) and t = 1 (the first), on fixed noise; earlier frames are clean
    context at the cache level. Zero for a perfectly self-consistent shortcut model. The hourglass's
    version: distill_hourglass.hourglass_self_consistency_error."""
    if model.cfg.arch == "hourglass":
        return hourglass_self_consistency_error(model, batch, finest, seed, target_model)
    target_model = model if target_model is None else target_model
    B, L = batch.target.shape[:2]
    dev = batch.target.device
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(batch.target.shape, generator=g).to(dev)
    lvl = model.cfg.context_noise
    errs = []
    for D in step_sizes(finest)[1:]:
        for t_last in sorted({D, 1.0}):
            t = torch.full((B, L), lvl, device=dev)
            t[:, -1] = t_last
            x_t = add_noise(batch.target, noise, t)
            is_last = torch.zeros(B, L, dtype=torch.bool, device=dev)
            is_last[:, -1] = True

            def predictor(m):
                return lambda x, tt, dd: m.forward_clip(x, batch.cond, torch.where(is_last, tt, t), dd, batch.action,
                                                        batch.prompt).float()

            d_half = torch.where(is_last, torch.full_like(t, D / 2), torch.zeros_like(t))
            t_safe = torch.where(is_last, t, torch.ones_like(t))
            target, _ = masked_shortcut_target(predictor(target_model), x_t, t_safe, d_half, is_last)
            one = predictor(model)(x_t, t, torch.where(is_last, torch.full_like(t, D), torch.zeros_like(t)))
            errs.append(float((one[:, -1] - target[:, -1]).pow(2).mean()))
    return sum(errs) / len(errs)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of two images in [-1, 1] (peak-to-peak 2)."""
    return psnr_from_mse(float((a.float() - b.float()).pow(2).mean()), data_range=2.0)


@torch.no_grad()
def sampling_table(student, teacher, batch: ClipBatch, steps_list=(1, 2, 4, 32), teacher_steps: int = 32,
                   seed: int = 0) -> dict:
    """PSNR (dB) of the student's k-step output vs the teacher's `teacher_steps`-step one and vs the true
    frames, on the same fixed noise: the DiT's last frame of each clip (`sample_last_frame`), the
    hourglass's every frame streamed through the serving sampler (`distill_hourglass.stream_clip`)."""
    if student.cfg.arch == "hourglass":
        sample = lambda m, k: stream_clip(m, batch, k, seed)
        truth = batch.target
    else:
        R = student.cfg.resolution
        g = torch.Generator().manual_seed(seed)
        noise = torch.randn(batch.target.shape[0], 3, R, R, generator=g).to(batch.target.device)
        sample = lambda m, k: sample_last_frame(m, batch, noise, k)
        truth = batch.target[:, -1]
    ref = sample(teacher, teacher_steps)
    rows = {"teacher": {"steps": teacher_steps, "psnr_vs_truth": psnr(ref, truth)}}
    for k in steps_list:
        out = sample(student, k)
        rows[f"student_{k}"] = {"steps": k, "psnr_vs_teacher": psnr(out, ref), "psnr_vs_truth": psnr(out, truth)}
    return rows


def build_pool(cfg, resolution: int, device, progress: bool = True, world: bool = False):
    """A ClipPool filled from cfg.data (train.clip_stream), and the stream that refreshes it; `world` for
    a model that reads the world group (its cfg.world_freqs)."""
    from tqdm import tqdm

    from neural_renderer.training.clip_sources import ClipPool
    from neural_renderer.serving.prompts import style_embeddings
    from neural_renderer.training.train import clip_stream

    # The optimizer's first construction imports torch._dynamo -> triton, whose LLVM crashes the process
    # when Mesa's llvmpipe (the CPU GL driver the world renderer uses) is already loaded: import first.
    import torch._dynamo  # noqa: F401

    tcfg = train_config(cfg)
    table = style_embeddings()
    styles = sorted(table)
    pool = ClipPool(cfg.pool, cfg.clip_len, resolution, styles, table, device=device, world=world)
    stream = clip_stream(tcfg, resolution, styles, rank=0)
    for _ in tqdm(range(cfg.pool), desc="filling clip pool", disable=not progress):
        pool.add(next(stream))
    return pool, stream


def train_config(cfg) -> TrainConfig:
    """The generator's training config carrying the augmentation settings distillation shares."""
    return TrainConfig(data=cfg.data, clip_len=cfg.clip_len, pool=cfg.pool, seed=cfg.seed,
                       history_aug=cfg.history_aug)


def eval_batch(pool, n: int, seed: int) -> ClipBatch:
    return pool.sample(n, torch.Generator().manual_seed(seed + 99991))


def distill(cfg: DistillConfig, progress: bool = True) -> dict:
    """Shortcut-train a copy of the teacher (either architecture); write NAME.json + safetensors (shortcut=True, steps =
    recommended), loss.png, sampling.png and distill_result.json under cfg.out."""
    from neural_renderer.model.checkpoint import load_model, resolve, save_checkpoint

    dev = pick_device(cfg.device)
    torch.manual_seed(cfg.seed)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    teacher = load_model(cfg.init, device=dev).requires_grad_(False)
    scfg = copy.deepcopy(teacher.cfg)
    scfg.shortcut, scfg.steps = True, cfg.recommended_steps
    scfg.name = cfg.name or scfg.name
    model = build(scfg).to(dev)
    model.load_state_dict(teacher.state_dict())
    if scfg.arch == "hourglass" and not teacher.cfg.shortcut:
        # the DiT keeps its first recipe: its tables and tests query the teacher at d > 0 unfolded
        fold_step_embedding(model)
    model.train()
    ema_model = copy.deepcopy(model).requires_grad_(False).eval()
    amp_dtype = torch.bfloat16 if dev.type == "cuda" else None
    tcfg, aug = train_config(cfg), augment(cfg.history_aug)
    pool, stream = build_pool(cfg, scfg.resolution, dev, progress, world=bool(scfg.world_freqs))
    g = torch.Generator().manual_seed(cfg.seed * 1000 + 17)
    n_sc = max(1, int(round(cfg.batch * cfg.sc_frac))) if cfg.sc_frac > 0 else 0
    fixed = eval_batch(pool, cfg.eval_clips, cfg.seed)
    before = sampling_table(model, teacher, fixed)
    sc_before = self_consistency_error(model, fixed, cfg.finest, cfg.seed)
    vs_teacher_before = self_consistency_error(model, fixed, cfg.finest, cfg.seed, target_model=teacher)

    def loss_fn(batch):
        if scfg.arch == "hourglass":
            return hourglass_shortcut_loss(model, ema_model, batch, aug, n_sc, cfg.finest, g, amp_dtype)
        nc = noisy_clips(ema_model, batch, tcfg, g, amp_dtype)
        return shortcut_loss(model, ema_model, batch, nc, n_sc, cfg.finest, g, amp_dtype)

    # the student starts from the teacher's weights, so its EMA averages from the first step (no warm-up)
    st = run_loop(model, loss_fn, pool, cfg, g, f"distill {scfg.name}", ema_model=ema_model, ema=cfg.ema,
                  ema_warmup=False, stream=stream, progress=progress)
    # ema = 1 freezes the target model at the teacher (fixed self-consistency targets): the online
    # weights are then the result; otherwise the EMA is (as in the generator's training)
    final = model.eval() if cfg.ema >= 1.0 else ema_model.eval()
    after = sampling_table(final, teacher, fixed)
    sc_after = self_consistency_error(final, fixed, cfg.finest, cfg.seed)
    vs_teacher_after = self_consistency_error(final, fixed, cfg.finest, cfg.seed, target_model=teacher)
    name = cfg.name or scfg.name
    meta = {"kind": "shortcut", "teacher": str(resolve(cfg.init)), "finest_steps": cfg.finest,
            "step_sizes": step_sizes(cfg.finest), "recommended_steps": cfg.recommended_steps,
            "distill_steps": st.step, "elapsed_s": st.elapsed_s,
            "distill_config": {k: v for k, v in asdict(cfg).items()}}
    ckpt = save_checkpoint(final.state_dict(), scfg, out / name, meta=meta)
    result = {"checkpoint": str(ckpt), "steps": st.step, "elapsed_s": st.elapsed_s, "device": str(dev),
              "n_self_consistency_clips": n_sc, "batch": cfg.batch, "history": st.history,
              "sampling_before": before, "sampling_after": after,
              "self_consistency_before": sc_before, "self_consistency_after": sc_after,
              "vs_teacher_two_steps_before": vs_teacher_before, "vs_teacher_two_steps_after": vs_teacher_after}
    (out / "distill_result.json").write_text(json.dumps(result, indent=1))
    save_loss_plot(st.history.get("loss", []), out / "loss.png", f"shortcut distillation {name}: {st.step} steps")
    save_sampling_plot(before, after, out / "sampling.png", name)
    return result


def save_sampling_plot(before: dict, after: dict, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [k for k in after if k.startswith("student_")]
    steps = [after[k]["steps"] for k in keys]
    fig, ax = plt.subplots(figsize=(6, 4))
    for rows, label in ((before, "before (teacher weights)"), (after, "after distillation")):
        ax.plot(steps, [rows[k]["psnr_vs_teacher"] for k in keys], "o-", label=f"{label}: vs teacher 32-step")
        ax.plot(steps, [rows[k]["psnr_vs_truth"] for k in keys], "s--", label=f"{label}: vs true frame")
    ax.axhline(after["teacher"]["psnr_vs_truth"], color="k", lw=0.8, label="teacher 32-step vs true frame")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("sampling steps")
    ax.set_ylabel("PSNR dB (last frame of fixed clips)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

