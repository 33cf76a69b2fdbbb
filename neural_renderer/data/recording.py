"""Recordings (docs/dataset.md, "Recordings"): datasets the daemon writes from a game session opened with
`record: NAME`. Their target is the channel `final` (the game's own frame) under the look NAME.

Held-out split, defined here once: the last max(1, n // 10) sequences of a recording of n >= 2
sequences are held out. `neurender train --look` never trains on them; `neurender eval --data` scores on
them only. A recording of one sequence is all training data (record another session to score it).
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np

from bridge.channels import FINAL

from .format import DatasetError, unflatten_constants
from .reader import SequenceDataset


def open_recording(root: str | Path) -> SequenceDataset:
    """A recording directory; DatasetError if it is not one (a world dataset, no index, ...)."""
    ds = SequenceDataset(root, split=None)
    if "look" not in ds.index or FINAL.name not in ds.channels:
        raise DatasetError(f"{root}: not a recording (no look / no {FINAL.name!r} channel); record one with "
                           "Session(..., record=NAME) or `neurender demo --record NAME`")
    return ds


def look_name(ds: SequenceDataset) -> str:
    return str(ds.index["look"]["name"])


def held_out(n_sequences: int) -> list[int]:
    if n_sequences < 2:
        return []
    return list(range(n_sequences - max(1, n_sequences // 10), n_sequences))


def training_sequences(n_sequences: int) -> list[int]:
    out = set(held_out(n_sequences))
    return [k for k in range(n_sequences) if k not in out]


def recording_clips(root: str | Path, length: int, channels: tuple[str, ...], seed: int = 0) -> Iterator:
    """Endless clips of the training sequences: `RawClip`s (neural_renderer.training.clip_sources) whose one
    reference look is the recording's look, its pixels the recorded `final` frames. A clip with a cut
    inside (reset after its first frame) is skipped, as world clips are."""
    from neural_renderer.training.clip_sources import RawClip

    ds = open_recording(root)
    look = look_name(ds)
    seqs = [k for k in training_sequences(len(ds)) if ds.sequences[k].frames >= length]
    if not seqs:
        raise DatasetError(f"{root}: no training sequence has {length} frames (held out: {held_out(len(ds))})")
    chans = [c for c in channels if c in ds.channels]
    rng = np.random.default_rng(seed)
    skipped = 0
    while True:
        k = int(rng.choice(seqs))
        start = int(rng.integers(ds.sequences[k].frames - length + 1))
        clip = ds.clip(k, start, length, channels=[*chans, FINAL.name], styles=[])
        if clip.reset[1:].any() and skipped < 100:  # bounded: a recording full of cuts still trains
            skipped += 1
            continue
        skipped = 0
        yield RawClip(engine={c: np.array(clip.engine[c]) for c in chans},  # copies: the maps are read-only
                      reference={look: np.asarray(clip.engine[FINAL.name], np.float32)},
                      action=np.array(clip.action, np.float32), constants=unflatten_constants(clip.constants))
