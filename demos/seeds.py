"""Which scene seeds are for training and which are reserved for evaluation: the one place that says so."""
from __future__ import annotations

TRAIN_SEEDS = range(0, 1000)
EVAL_SEED_BASE = 1_000_000


def is_eval_seed(seed: int) -> bool:
    return int(seed) >= EVAL_SEED_BASE


def check_train_seed(seed: int) -> int:
    """Training data paths call this: an evaluation seed must never reach a training set."""
    if int(seed) not in TRAIN_SEEDS:
        why = f"reserved for evaluation (>= {EVAL_SEED_BASE})" if is_eval_seed(seed) else "not a training seed"
        raise ValueError(f"seed {seed} is {why}; training uses {TRAIN_SEEDS.start}..{TRAIN_SEEDS.stop - 1}")
    return int(seed)
