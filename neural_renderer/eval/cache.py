"""Frames for the suites, rendered once by the world renderer: eval-split datasets of held-out seeds, or train-split
ones of training seeds for a tuning suite (suites.Suite.split; the dataset writer refuses a seed of the other split)."""
from __future__ import annotations

import os
from pathlib import Path

from ..data import DatasetError, SequenceDataset
from ..data.writer import SequencePlan
from .suites import EvalSequence


def default_cache_dir() -> Path:
    env = os.environ.get("NEURENDER_EVAL_CACHE")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "neurender" / "eval"


def sequence_dataset(seq: EvalSequence, width: int, height: int, cache_dir: Path, *,
                     progress: bool = True, workers: int = 1, split: str = "eval") -> SequenceDataset:
    """The cached frames of one suite sequence, rendering them first if no complete copy exists."""
    root = Path(cache_dir) / (("" if split == "eval" else f"{split}-") + seq.cache_key(width, height))
    try:
        return SequenceDataset(root, split=split)
    except DatasetError:
        pass  # absent, or a render that never finished: (re)render below
    from bridge.styles import STYLES

    from ..data.make import render_plan

    render_plan(root, [SequencePlan(seq.seed, seq.frames, seq.script)], width=width, height=height,
                styles={s: STYLES[s] for s in seq.styles}, split=split, workers=workers, overwrite=True,
                progress=progress, desc=f"render seed {seq.seed}", frames_per_shard=max(seq.frames, 1),
                meta={"created_by": "neurender eval (cache)"})
    return SequenceDataset(root, split=split)
