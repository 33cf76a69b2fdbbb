"""Which scene seeds are for training and which are reserved for evaluation: the one place that says so."""
from __future__ import annotations

TRAIN_SEEDS = range(0, 1000)
EVAL_SEED_BASE = 1_000_000


def is_eval_seed(seed: int) -> bool:
    return int(seed) >= EVAL_SEED_BASE


def check_train_seed(seed: int) -> int:
    """Training data paths call this: an evaluation seed must never reach a training set."""
    if is_eval_seed(seed):
        raise ValueError(f"seed {seed} is reserved for evaluation (>= {EVAL_SEED_BASE}); training uses {TRAIN_SEEDS}")
    return int(seed)
