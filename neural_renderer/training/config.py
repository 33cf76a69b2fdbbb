"""The settings of training, distillation and pruning: plain dataclasses, the one place their defaults live.

Light on purpose (no torch): the command line builds its flags from these fields.
Shared names mean the same thing everywhere: `init` is the checkpoint the weights start from,
`data` where clips come from, and the loop fields (steps .. time_budget_s) are read by loop.py.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ClipRunConfig:
    """What every run through the loop on clips shares; each command's config adds its own fields and
    sets the defaults that differ."""

    init: str = ""  # checkpoint the weights start from: shipped name or NAME.json / .safetensors
    out: str = "runs/out"  # output directory
    steps: int = 1000
    batch: int = 4
    clip_len: int = 6
    lr: float = 1e-4
    warmup: int = 50
    grad_clip: float = 1.0
    data: str = "world"  # clip source: world | synthetic | a dataset directory
    pool: int = 64  # clips kept on the device
    refresh_every: int = 4  # steps between two new clips entering the pool (0 = never)
    refresh_clips: int = 1  # clips taken at each refresh, as many as are ready (parallel rendering)
    render_resolution: int = 0  # world clips render at this size (0 = the model's); batches are crops
    crop: int = 0  # side of the random square crops batches are cut to (0 = whole frames)
    looks_per_clip: int = 0  # reference looks rendered per world sequence (0 = all)
    render_workers: int = 0  # world-rendering processes (0 = render in this process)
    fill_max_s: float = 0.0  # stop filling the pool after this long once it holds a batch (0 = fill it)
    history_aug: bool = True  # False = the ablation: clean context, no corruption
    time_budget_s: float = 0.0  # stop (and save) after this many seconds; 0 = no limit
    log_every: int = 25
    seed: int = 0
    device: str = ""


@dataclass
class TrainConfig(ClipRunConfig):
    init: str = ""  # empty = random weights
    out: str = "runs/tiny"
    lr: float = 3e-4
    warmup: int = 100
    model: str = "tiny"
    ema: float = 0.999
    styles: list[str] = field(default_factory=list)  # empty = all
    # history augmentation / diffusion forcing
    own_output_frac: float = 0.3
    # chained own predictions as history, 1..rounds per batch (training/history.py); clip_len - 1 = a full rollout
    own_output_rounds: int = 1
    context_frac: float = 0.5
    context_max_noise: float = 0.2
    blur_p: float = 0.25
    color_shift_p: float = 0.25
    drop_group_p: float = 0.25
    history: bool = True  # hourglass: False = the no-history ablation (the group is always absent)
    # hourglass: weight of the L1 on image gradients added to the MSE (0 = plain MSE). Same-budget H100 ablation
    # (benchmarks/RESULTS.md, "The loss ablation"): +0.64 dB, SSIM +0.014, lower warping error than plain MSE
    edge_loss: float = 0.05
    world: bool = True  # False = the ablation without world-position features (the model's world_freqs = 0)
    ckpt_every: int = 500
    resume: str = ""  # a train_state.pt to continue from
    # fine-tuning on a recording (training/finetune.py): its clips mixed at look_share with `data` clips;
    # looks = {name: prompt embedding}, saved into the checkpoint for serving
    recording: str = ""
    # the smallest share that reached the recorded look's plateau while costing the built-in looks 1.8 dB (a
    # share of 1.0 lost them: -20.6 dB); benchmarks/RESULTS.md, "How much of each batch should be the recording"
    look_share: float = 0.5
    looks: dict = field(default_factory=dict)


@dataclass
class DistillConfig(ClipRunConfig):
    init: str = "tiny"  # the teacher, whose weights the student starts from (the shipped hourglass tiny)
    out: str = "runs/tiny-shortcut"
    name: str = ""  # output checkpoint name (default: teacher's model name)
    ema: float = 0.99  # runs are short (minutes): a slower EMA would ship the teacher's weights
    finest: int = 32  # M: smallest step 1/M is plain flow matching
    sc_frac: float = 0.125  # share of each batch's clips with self-consistency targets
    recommended_steps: int = 2  # written into the checkpoint config as the default step count
    eval_clips: int = 4  # fixed clips for the before/after sampling-error table


@dataclass
class PruneConfig(ClipRunConfig):
    init: str = "tiny"  # the unpruned (teacher) model (the shipped hourglass tiny)
    out: str = "runs/tiny-pruned"
    steps: int = 500  # recovery steps
    warmup: int = 20
    name: str = ""
    drop_blocks: int = 1  # of the shipped tiny's 4 trunk blocks
    mlp_ratio: int = 3
    score_batches: int = 8
    match_weight: float = 1.0
    finest: int = 32
