"""Architecture-aware pruning of a trained generator, then recovery by distillation.

Both architectures share the transformer `Block` (dit.py): the DiT is nothing but these blocks over
pixel patches, the hourglass runs them as its trunk at 1/patch between the convolutional encoder and
decoder. Pruning works on `model.blocks` and the config's depth / mlp_ratio only, so one code path
serves both. The hourglass's convolutional levels are kept whole, so trunk pruning reaches only part
of its work: at the shipped tiny's 128x128 they are 47% of a frame's multiply-accumulates (`frame_macs`).

Units and how they are scored on real clips (the training pool: world renders, a dataset or synthetic):
- attention heads and MLP channels: first-order Taylor importance, sum over scoring batches of
  |w * dL/dw| over the weights that belong to the unit (a head: its q, k, v rows of `qkv` and its
  columns of `proj`; an MLP channel: its `fc1` row and bias, its `fc2` column), L = the flow loss;
- whole blocks: measured ablation, the mean squared change of the model's prediction when the block is
  skipped (its residual branch removed), the TinyFusion view that depth is what buys wall-clock.

What is removed must still be a model the daemon loads from a plain `GeneratorConfig`
(`generator:/path.safetensors`): that config fixes one residual width with dim = heads * 64 and one
MLP width mlp_ratio * dim for every block. So a plan removes (a) whole blocks, the lowest-scoring ones,
and (b) per kept block the lowest-scoring MLP channels down to mlp_ratio' * dim (a multiple of 64
because dim is). Heads are scored and can be masked (`UnitMask`) but are not physically removed:
per-block head counts need a per-block width in GeneratorConfig (named in the issue note).

`masked(model, mask)` zeroes units in place of removing them: a pruned model equals the unpruned one
under the matching mask, exactly (tests check it), which is what makes the scores meaningful.
"""
from __future__ import annotations

import copy
import json
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from neural_renderer.model.dit import HEAD_DIM
from neural_renderer.model.registry import GeneratorConfig, build
from neural_renderer.training.config import PruneConfig

TILE = 64  # every remaining width is a multiple of this (kernel tile, head dim)


@dataclass
class Scores:
    heads: torch.Tensor  # (depth, heads)
    mlp: torch.Tensor  # (depth, hidden)
    blocks: torch.Tensor  # (depth,)

    def to_dict(self) -> dict:
        return {"heads": self.heads.tolist(), "mlp": self.mlp.tolist(), "blocks": self.blocks.tolist()}


@dataclass
class UnitMask:
    """True = unit kept."""

    blocks: torch.Tensor  # (depth,) bool
    heads: torch.Tensor  # (depth, heads) bool
    mlp: torch.Tensor  # (depth, hidden) bool

    @classmethod
    def full(cls, cfg: GeneratorConfig) -> "UnitMask":
        return cls(torch.ones(cfg.depth, dtype=torch.bool), torch.ones(cfg.depth, cfg.heads, dtype=torch.bool),
                   torch.ones(cfg.depth, cfg.mlp_ratio * cfg.dim, dtype=torch.bool))


@dataclass
class PrunePlan:
    keep_blocks: list[int]  # original indices, ascending
    keep_mlp: list[list[int]]  # per kept block: original channel indices, ascending
    mlp_ratio: int

    def mask(self, cfg: GeneratorConfig) -> UnitMask:
        m = UnitMask.full(cfg)
        m.blocks[:] = False
        m.blocks[self.keep_blocks] = True
        m.mlp[:] = False
        for b, ch in zip(self.keep_blocks, self.keep_mlp):
            m.mlp[b, ch] = True
        return m

    def to_dict(self) -> dict:
        return asdict(self)


# -- masking ---------------------------------------------------------------------------------------


@contextmanager
def masked(model: torch.nn.Module, mask: UnitMask):
    """Run `model` with the masked-out units zeroed: a skipped block returns its input; a masked head
    contributes nothing to `proj`; a masked MLP channel contributes nothing to `fc2`."""
    handles = []
    for i, blk in enumerate(model.blocks):
        if not bool(mask.blocks[i]):
            handles.append(blk.register_forward_hook(lambda m, args, out: args[0]))
            continue
        if not bool(mask.heads[i].all()):
            hm = mask.heads[i].repeat_interleave(HEAD_DIM)  # (dim,) heads are head-major in proj's input
            handles.append(blk.proj.register_forward_pre_hook(lambda m, args, hm=hm: (args[0] * hm.to(args[0]),)))
        if not bool(mask.mlp[i].all()):
            mm = mask.mlp[i]
            handles.append(blk.fc2.register_forward_pre_hook(lambda m, args, mm=mm: (args[0] * mm.to(args[0]),)))
    try:
        yield model
    finally:
        for h in handles:
            h.remove()


# -- scoring ---------------------------------------------------------------------------------------


def head_rows(dim: int, h: int) -> torch.Tensor:
    """Rows of `qkv` (3*dim outputs: q | k | v, each head-major) that belong to head h."""
    base = torch.arange(h * HEAD_DIM, (h + 1) * HEAD_DIM)
    return torch.cat([base, base + dim, base + 2 * dim])


def taylor_scores(model: torch.nn.Module, batches, loss_fn) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum over `batches` of |w * dL/dw| per head (depth, heads) and per MLP channel (depth, hidden).
    `loss_fn(model, batch) -> scalar`."""
    cfg = model.cfg
    heads = torch.zeros(cfg.depth, cfg.heads)
    mlp = torch.zeros(cfg.depth, cfg.mlp_ratio * cfg.dim)
    params = [p for blk in model.blocks for p in (blk.qkv.weight, blk.qkv.bias, blk.proj.weight, blk.fc1.weight, blk.fc1.bias, blk.fc2.weight)]
    was = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(True)
    for batch in batches:
        model.zero_grad(set_to_none=True)
        loss_fn(model, batch).backward()
        with torch.no_grad():
            for i, blk in enumerate(model.blocks):
                qkv = (blk.qkv.weight * blk.qkv.weight.grad).abs().sum(1) + (blk.qkv.bias * blk.qkv.bias.grad).abs()  # (3D,)
                proj = (blk.proj.weight * blk.proj.weight.grad).abs().sum(0)  # (D,) per input channel
                for h in range(cfg.heads):
                    heads[i, h] += float(qkv[head_rows(cfg.dim, h)].sum() + proj[h * HEAD_DIM : (h + 1) * HEAD_DIM].sum())
                fc1 = (blk.fc1.weight * blk.fc1.weight.grad).abs().sum(1) + (blk.fc1.bias * blk.fc1.bias.grad).abs()
                fc2 = (blk.fc2.weight * blk.fc2.weight.grad).abs().sum(0)
                mlp[i] += (fc1 + fc2).float().cpu()
    model.zero_grad(set_to_none=True)
    for p, w in zip(params, was):
        p.requires_grad_(w)
    return heads, mlp


@torch.no_grad()
def block_scores(model: torch.nn.Module, batches, predict) -> torch.Tensor:
    """(depth,) mean squared change of the prediction when each block alone is skipped.
    `predict(model, batch) -> prediction tensor`."""
    cfg = model.cfg
    out = torch.zeros(cfg.depth)
    for batch in batches:
        ref = predict(model, batch).float()
        for i in range(cfg.depth):
            m = UnitMask.full(cfg)
            m.blocks[i] = False
            with masked(model, m):
                out[i] += float((predict(model, batch).float() - ref).pow(2).mean())
    return out / max(1, len(batches))


# -- planning and removal ---------------------------------------------------------------------------


def check_request(cfg: GeneratorConfig, drop_blocks: int, mlp_ratio: int) -> None:
    if not 0 <= drop_blocks < cfg.depth:
        raise ValueError(f"drop_blocks must be in [0, {cfg.depth - 1}], got {drop_blocks}")
    if not 1 <= mlp_ratio <= cfg.mlp_ratio:
        raise ValueError(f"mlp_ratio must be in [1, {cfg.mlp_ratio}], got {mlp_ratio}")


def plan_prune(scores: Scores, cfg: GeneratorConfig, drop_blocks: int, mlp_ratio: int) -> PrunePlan:
    """Drop the `drop_blocks` lowest-scoring blocks; in each kept block keep the mlp_ratio * dim
    highest-scoring MLP channels (ties broken by lower index first, so a plan is deterministic)."""
    check_request(cfg, drop_blocks, mlp_ratio)
    order = sorted(range(cfg.depth), key=lambda i: (float(scores.blocks[i]), i))
    keep_blocks = sorted(order[drop_blocks:])
    width = mlp_ratio * cfg.dim
    keep_mlp = []
    for b in keep_blocks:
        s = scores.mlp[b]
        ranked = sorted(range(len(s)), key=lambda j: (-float(s[j]), j))
        keep_mlp.append(sorted(ranked[:width]))
    return PrunePlan(keep_blocks, keep_mlp, mlp_ratio)


def pruned_config(cfg: GeneratorConfig, plan: PrunePlan, name: str | None = None) -> GeneratorConfig:
    new = copy.deepcopy(cfg)
    new.depth, new.mlp_ratio = len(plan.keep_blocks), plan.mlp_ratio
    new.name = name or f"{cfg.name}-pruned"
    for w in (new.dim, new.mlp_ratio * new.dim, new.heads * HEAD_DIM):
        assert w % TILE == 0, f"width {w} is not a multiple of {TILE}"
    return new


def apply_plan(model: torch.nn.Module, plan: PrunePlan, name: str | None = None) -> torch.nn.Module:
    """A new, smaller model of the same architecture holding exactly the kept units' weights."""
    cfg = pruned_config(model.cfg, plan, name)
    src = model.state_dict()
    state = {k: v for k, v in src.items() if not k.startswith("blocks.")}
    for new_i, (old_i, ch) in enumerate(zip(plan.keep_blocks, plan.keep_mlp)):
        ch = torch.tensor(ch, dtype=torch.long)
        for k, v in src.items():
            prefix = f"blocks.{old_i}."
            if not k.startswith(prefix):
                continue
            rest = k[len(prefix):]
            if rest in ("fc1.weight", "fc1.bias"):
                v = v[ch]
            elif rest == "fc2.weight":
                v = v[:, ch]
            state[f"blocks.{new_i}.{rest}"] = v.clone()
    p = next(model.parameters())
    out = build(cfg).to(p.device, p.dtype)
    out.load_state_dict(state)
    return out.train(model.training)


def count_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def frame_macs(cfg: GeneratorConfig) -> int:
    """Multiply-accumulates of one streaming forward of one frame at cfg.resolution: the trunk's matmuls
    and attention over all slots, plus the DiT's patch embedding or the hourglass's convolutions."""
    T, D = cfg.tokens, cfg.dim
    per_block = T * (3 * D * D + D * D + 2 * cfg.mlp_ratio * D * D + 6 * D * D) + 2 * T * cfg.slots * T * D
    if cfg.arch == "hourglass":
        return cfg.depth * per_block + conv_macs(cfg)
    return cfg.depth * per_block + T * D * 3 * cfg.patch ** 2


@torch.no_grad()
def conv_macs(cfg: GeneratorConfig) -> int:
    """The hourglass's convolutions on one frame at cfg.resolution, counted on a forward of the model
    (every level's size and width, without restating the architecture here)."""
    from neural_renderer.model.inputs import COND_CHANNELS
    from neural_renderer.model.history import HISTORY_PLANES

    model = build(cfg).eval()
    total = [0]

    def count(m, args, out):
        total[0] += out.numel() // out.shape[0] * m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1]

    hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    R = cfg.resolution
    one = lambda *s: torch.zeros(1, 1, *s)
    model.forward_clip(one(3, R, R), one(COND_CHANNELS, R, R), one(HISTORY_PLANES, R, R), one(), one(), one(),
                       one(model.action_embed[0].in_features), torch.zeros(1, model.prompt_embed.in_features))
    for h in hooks:
        h.remove()
    return total[0]


# -- pruning ------------------------------------------------------------------------------------


def prune(cfg: PruneConfig, progress: bool = True) -> dict:
    """Score on real clips, remove, recover by distillation from the unpruned model, save; writes
    NAME.json + safetensors, scores.png, loss.png and prune_result.json under cfg.out."""
    from neural_renderer.model.checkpoint import load_model, resolve, save_checkpoint
    from neural_renderer.training.distill import build_pool, clip_inputs, eval_batch, sampling_table
    from neural_renderer.training.shortcut import output_matching_loss
    from neural_renderer.training.loop import pick_device, run_loop, save_loss_plot

    dev = pick_device(cfg.device)
    torch.manual_seed(cfg.seed)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    teacher = load_model(cfg.init, device=dev).requires_grad_(False)
    check_request(teacher.cfg, cfg.drop_blocks, cfg.mlp_ratio)  # before minutes of clip rendering
    pool, stream = build_pool(cfg, teacher.cfg.resolution, dev, progress, world=bool(teacher.cfg.world_freqs))
    g = torch.Generator().manual_seed(cfg.seed * 1000 + 29)
    score_set = []
    for _ in range(cfg.score_batches):
        batch = pool.sample(cfg.batch, g)
        score_set.append(clip_inputs(teacher, batch, cfg, g, None))

    scoring = copy.deepcopy(teacher).float().eval()
    heads, mlp = taylor_scores(scoring, score_set, lambda m, b: F.mse_loss(m(*b[0]).float(), b[1]))
    blocks = block_scores(scoring, score_set, lambda m, b: m(*b[0]))
    del scoring
    scores = Scores(heads, mlp, blocks)
    plan = plan_prune(scores, teacher.cfg, cfg.drop_blocks, cfg.mlp_ratio)
    name = cfg.name or f"{teacher.cfg.name}-pruned"
    student = apply_plan(teacher, plan, name).requires_grad_(True).train()
    fixed = eval_batch(pool, 4, cfg.seed)
    k_eval = teacher.cfg.steps
    before = {"unpruned": sampling_table(teacher, teacher, fixed, steps_list=(k_eval,), teacher_steps=32),
              "pruned_before_recovery": sampling_table(student.eval(), teacher, fixed, steps_list=(k_eval,), teacher_steps=32)}
    held_out = [clip_inputs(teacher, fixed, cfg, torch.Generator().manual_seed(cfg.seed + 4242), None)]
    match_before = match_error(student, teacher, held_out)
    student.train()
    amp_dtype = torch.bfloat16 if dev.type == "cuda" else None

    def loss_fn(batch):
        inputs, target = clip_inputs(teacher, batch, cfg, g, amp_dtype)
        return output_matching_loss(student, teacher, inputs, target, amp_dtype, cfg.match_weight)

    st = run_loop(student, loss_fn, pool, cfg, g, f"recover {name}", stream=stream, progress=progress)
    student.eval()
    after = sampling_table(student, teacher, fixed, steps_list=(k_eval,), teacher_steps=32)
    match_after = match_error(student, teacher, held_out)
    meta = {"kind": "pruned", "from": str(resolve(cfg.init)), "plan": plan.to_dict(),
            "removed_blocks": [i for i in range(teacher.cfg.depth) if i not in plan.keep_blocks],
            "recovery_steps": st.step, "elapsed_s": st.elapsed_s, "prune_config": asdict(cfg)}
    ckpt = save_checkpoint(student.state_dict(), student.cfg, out / name, meta=meta)
    result = {"checkpoint": str(ckpt), "device": str(dev), "params_unpruned": count_params(teacher),
              "params_pruned": count_params(student), "macs_per_frame_unpruned": frame_macs(teacher.cfg),
              "macs_per_frame_pruned": frame_macs(student.cfg), "plan": plan.to_dict(), "scores": scores.to_dict(),
              "recovery_steps": st.step, "elapsed_s": st.elapsed_s, "history": st.history,
              "sampling_steps": k_eval, "sampling_before": before, "sampling_after": after,
              "match_error_before_recovery": match_before, "match_error_after_recovery": match_after}
    (out / "prune_result.json").write_text(json.dumps(result, indent=1))
    save_loss_plot(st.history.get("loss", []), out / "loss.png", f"recovery of {name}: {st.step} steps")
    save_scores_plot(scores, plan, teacher.cfg, out / "scores.png")
    return result


@torch.no_grad()
def match_error(student: torch.nn.Module, teacher: torch.nn.Module, inputs) -> float:
    """Mean squared difference of the student's and the teacher's predictions on fixed noisy clips."""
    errs = [float((student(*x).float() - teacher(*x).float()).pow(2).mean()) for x, _ in inputs]
    return sum(errs) / len(errs)


def save_scores_plot(scores: Scores, plan: PrunePlan, cfg: GeneratorConfig, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    kept = [i in plan.keep_blocks for i in range(cfg.depth)]
    axes[0].bar(range(cfg.depth), scores.blocks.tolist(), color=["tab:blue" if k else "tab:red" for k in kept])
    axes[0].set_title("blocks, ablation score (red = removed)", fontsize=10)
    axes[0].set_xlabel("block")
    axes[0].set_yscale("log")
    for i in range(cfg.depth):
        s = scores.mlp[i].sort(descending=True).values.tolist()
        axes[1].plot(s, lw=0.8, ls="-" if kept[i] else ":", label=f"block {i}")
    axes[1].axvline(plan.mlp_ratio * cfg.dim, color="k", lw=0.8)
    axes[1].set_title(f"MLP channels, Taylor, sorted (keep {plan.mlp_ratio * cfg.dim})", fontsize=10)
    axes[1].set_yscale("log")
    axes[1].legend(fontsize=6)
    im = axes[2].imshow(scores.heads.numpy(), aspect="auto", cmap="viridis")
    axes[2].set_title("heads, Taylor (block x head; kept)", fontsize=10)
    axes[2].set_xlabel("head")
    axes[2].set_ylabel("block")
    fig.colorbar(im, ax=axes[2])
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
