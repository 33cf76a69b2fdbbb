"""Held-out frames for the suites: rendered once by the world renderer into eval-split datasets."""
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
                     progress: bool = True, workers: int = 1) -> SequenceDataset:
    """The cached frames of one eval sequence, rendering them first if no complete copy exists."""
    root = Path(cache_dir) / seq.cache_key(width, height)
    try:
        return SequenceDataset(root, split="eval")
    except DatasetError:
        pass  # absent, or a render that never finished: (re)render below
    from bridge.styles import STYLES

    from ..data.make import render_plan

    render_plan(root, [SequencePlan(seq.seed, seq.frames, seq.script)], width=width, height=height,
                styles={s: STYLES[s] for s in seq.styles}, split="eval", workers=workers, overwrite=True,
                progress=progress, desc=f"render seed {seq.seed}", frames_per_shard=max(seq.frames, 1),
                meta={"created_by": "neurender eval (cache)"})
    return SequenceDataset(root, split="eval")
