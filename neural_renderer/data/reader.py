"""Reading a dataset: memory-mapped random access to clips, and a torch-free random-clip iterator.

Opening maps every shard file read-only (np.load(mmap_mode="r")); a clip is a set of slices of
those maps, so nothing is read from disk until the caller touches the pixels, and many worker
processes can share the page cache.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from .format import (INDEX_FILE, DatasetError, SequenceInfo, parse_sequences, read_index,
                     reference_array, unflatten_constants)


@dataclass
class Clip:
    """Frames [start, start + length) of one sequence. Arrays are read-only memory-mapped views."""
    seq_idx: int
    seed: int
    start: int
    engine: dict[str, np.ndarray]     # channel -> (T, H, W, C)
    reference: dict[str, np.ndarray]  # style -> (T, H, W, 3) float16
    action: np.ndarray                # (T, ACTION_DIM) float32
    constants: np.ndarray             # (T, CONSTANTS_DIM) float32, CONSTANTS_LAYOUT order
    reset: np.ndarray                 # (T,) uint8, 1 on a camera cut

    def __len__(self) -> int:
        return len(self.reset)

    def constants_at(self, t: int) -> dict[str, np.ndarray]:
        return unflatten_constants(self.constants[t])


class SequenceDataset:
    """A dataset directory written by `neurender dataset make` (or an eval-suite cache).

    `split` is what the caller expects: training code keeps the default "train", so an evaluation
    cache handed to a trainer by mistake is refused; None accepts either.
    """

    def __init__(self, root: str | Path, split: str | None = "train"):
        self.root = Path(root)
        self.index = read_index(self.root)
        if split is not None and self.index["split"] != split:
            raise DatasetError(f"{self.root}: a {self.index['split']!r} dataset, expected {split!r}")
        self.split = self.index["split"]
        self.width, self.height = int(self.index["width"]), int(self.index["height"])
        self.styles: dict[str, str] = {s["name"]: s["prompt"] for s in self.index["styles"]}
        self.channels: list[str] = list(self.index["channels"])
        self.sequences: list[SequenceInfo] = parse_sequences(self.index, self.root / INDEX_FILE)
        self._shards = [self._map_shard(i, s) for i, s in enumerate(self.index["shards"])]

    def _map_shard(self, i: int, shard: dict) -> dict[str, np.ndarray]:
        d = self.root / str(shard.get("dir", ""))
        if not d.is_dir():
            raise DatasetError(f"{self.root}: shard {i} directory {d.name!r} is missing")
        arrays = {}
        for name, spec in self.index["arrays"].items():
            path = d / f"{name}.npy"
            if not path.is_file():
                raise DatasetError(f"{path}: missing")
            try:
                a = np.load(path, mmap_mode="r", allow_pickle=False)
            except (ValueError, OSError) as e:  # truncated file, bad header
                raise DatasetError(f"{path}: unreadable ({e})") from None
            want = (int(shard["frames"]), *spec["shape"])
            if a.shape != want or a.dtype != np.dtype(spec["dtype"]):
                raise DatasetError(f"{path}: holds {a.dtype}{list(a.shape)}, index says {spec['dtype']}{list(want)}")
            arrays[name] = a
        return arrays

    def __len__(self) -> int:
        return len(self.sequences)

    @property
    def total_frames(self) -> int:
        return sum(s.frames for s in self.sequences)

    def clip(self, seq_idx: int, start: int = 0, length: int | None = None,
             channels: list[str] | None = None, styles: list[str] | None = None) -> Clip:
        if not 0 <= seq_idx < len(self.sequences):
            raise IndexError(f"sequence {seq_idx} of {len(self.sequences)}")
        seq = self.sequences[seq_idx]
        length = seq.frames - start if length is None else length
        if start < 0 or length <= 0 or start + length > seq.frames:
            raise IndexError(f"clip [{start}, {start + length}) outside sequence {seq_idx} ({seq.frames} frames)")
        channels = self.channels if channels is None else channels
        styles = list(self.styles) if styles is None else styles
        for c in channels:
            if c not in self.channels:
                raise KeyError(f"channel {c!r} not in this dataset ({self.channels})")
        for s in styles:
            if s not in self.styles:
                raise KeyError(f"style {s!r} not in this dataset ({list(self.styles)})")
        a, rows = self._shards[seq.shard], slice(seq.start + start, seq.start + start + length)
        return Clip(seq_idx, seq.seed, start,
                    engine={c: a[c][rows] for c in channels},
                    reference={s: a[reference_array(s)][rows] for s in styles},
                    action=a["action"][rows], constants=a["constants"][rows], reset=a["reset"][rows])

    def random_clips(self, length: int, *, seed: int = 0, count: int | None = None,
                     channels: list[str] | None = None, styles: list[str] | None = None) -> Iterator[Clip]:
        """Uniform over every valid (sequence, start) pair; endless unless `count` is given."""
        starts = np.array([max(s.frames - length + 1, 0) for s in self.sequences], np.int64)
        if starts.sum() == 0:
            raise ValueError(f"no sequence has {length} frames (longest: {max(s.frames for s in self.sequences)})")
        cum = np.cumsum(starts)
        rng = np.random.default_rng(seed)
        n = 0
        while count is None or n < count:
            k = int(rng.integers(cum[-1]))
            i = int(np.searchsorted(cum, k, side="right"))
            start = k - (int(cum[i - 1]) if i else 0)
            yield self.clip(i, start, length, channels, styles)
            n += 1
