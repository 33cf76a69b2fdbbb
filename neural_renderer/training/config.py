"""The settings of training, distillation and pruning: plain dataclasses, the one place their defaults live.

Light on purpose (no torch): the command line builds its flags from these fields.
Shared names mean the same thing everywhere: `init` is the checkpoint the weights start from,
`data` where clips come from, and the loop fields (steps .. time_budget_s) are read by loop.py.
"""
from __future__ import annotations

from dataclasses import dataclass, field


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
    data: str = "world"  # clip source: world | synthetic | a dataset directory
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
    init: str = ""  # checkpoint the weights start from (shipped name or .json); empty = random
    device: str = ""


@dataclass
class DistillConfig:
    init: str = "tiny"  # the teacher, whose weights the student starts from: shipped name or NAME.json / .safetensors
    out: str = "runs/tiny-shortcut"
    name: str = ""  # output checkpoint name (default: teacher's model name)
    steps: int = 1000
    batch: int = 4
    clip_len: int = 6
    lr: float = 1e-4
    warmup: int = 50
    ema: float = 0.99  # runs are short (minutes): a slower EMA would ship the teacher's weights
    grad_clip: float = 1.0
    finest: int = 32  # M: smallest step 1/M is plain flow matching
    sc_frac: float = 0.125  # share of each batch's clips with self-consistency targets
    recommended_steps: int = 2  # written into the checkpoint config as the default step count
    data: str = "world"  # clip source: world | synthetic | a dataset directory
    pool: int = 64
    refresh_every: int = 4
    history_aug: bool = True
    time_budget_s: float = 0.0
    log_every: int = 25
    eval_clips: int = 4  # fixed clips for the before/after sampling-error table
    seed: int = 0
    device: str = ""


@dataclass
class PruneConfig:
    init: str = "tiny"  # the unpruned (teacher) model: shipped name or NAME.json / .safetensors
    out: str = "runs/tiny-pruned"
    name: str = ""
    drop_blocks: int = 2
    mlp_ratio: int = 3
    score_batches: int = 8
    steps: int = 500  # recovery steps
    batch: int = 4
    clip_len: int = 6
    lr: float = 1e-4
    warmup: int = 20
    grad_clip: float = 1.0
    match_weight: float = 1.0
    finest: int = 32
    data: str = "world"  # clip source: world | synthetic | a dataset directory
    pool: int = 64
    refresh_every: int = 4
    history_aug: bool = True
    time_budget_s: float = 0.0
    log_every: int = 25
    seed: int = 0
    device: str = ""
