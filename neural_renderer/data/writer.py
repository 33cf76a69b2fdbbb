"""Writing a dataset: lay shards out from a plan, pre-allocate them, fill frames, commit the index.

Shards are pre-allocated at their final size (np.lib.format.open_memmap), so any number of worker
processes can fill disjoint rows of them at once, and nothing is held in memory. index.json is
written last, atomically: a crash leaves a directory the reader refuses, never a half dataset.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bridge.channels import ACTION_DIM, CHANNELS
from .format import (INDEX_FILE, SPLITS, EvalSeedError, check_style_name, commit, flatten_constants,  # noqa: F401
                     make_index, reference_array, shard_dir_name)


@dataclass(frozen=True)
class SequencePlan:
    seed: int
    frames: int
    script: str = "mixed"
    fps: float = 30.0


def check_split_seeds(seeds, split: str) -> None:
    """Training data holds training seeds only; an eval cache holds evaluation seeds only."""
    from neural_renderer.data.world import TRAIN_SEEDS, is_eval_seed

    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    for seed in seeds:
        if split == "train" and is_eval_seed(seed):
            raise EvalSeedError(f"seed {seed} is an evaluation seed: the training data path refuses to write it")
        if split == "train" and seed not in TRAIN_SEEDS:
            raise EvalSeedError(f"seed {seed} is not a training seed ({TRAIN_SEEDS})")
        if split == "eval" and not is_eval_seed(seed):
            raise EvalSeedError(f"seed {seed} is not an evaluation seed; eval data uses held-out seeds only")


def plan_index(plan: list[SequencePlan], *, width: int, height: int, styles: dict[str, str],
               split: str, frames_per_shard: int = 2048, meta: dict | None = None) -> dict:
    """The index a plan will produce (minus anything measured while rendering). Pure: no I/O."""
    if width <= 0 or height <= 0:
        raise ValueError(f"resolution must be positive, got {width}x{height}")
    if not plan:
        raise ValueError("a dataset needs at least one sequence")
    for s in styles:
        check_style_name(s)
    check_split_seeds([p.seed for p in plan], split)
    shards: list[dict] = []
    sequences: list[dict] = []
    for p in plan:
        if p.frames <= 0:
            raise ValueError(f"sequence of seed {p.seed} has {p.frames} frames")
        # A sequence never spans shards, so a clip is always one contiguous slice of one file.
        if not shards or shards[-1]["frames"] + p.frames > frames_per_shard:
            shards.append({"dir": shard_dir_name(len(shards)), "frames": 0})
        sequences.append({"seed": p.seed, "frames": p.frames, "shard": len(shards) - 1,
                          "start": shards[-1]["frames"], "script": p.script, "fps": p.fps})
        shards[-1]["frames"] += p.frames
    return make_index(width=width, height=height, styles=styles, split=split, shards=shards,
                      sequences=sequences, meta=meta)


def dataset_bytes(index: dict) -> int:
    """Bytes the shard files of `index` take once written (headers aside)."""
    per_row = sum(np.dtype(a["dtype"]).itemsize * int(np.prod(a["shape"], dtype=np.int64))
                  for a in index["arrays"].values())
    return per_row * sum(s["frames"] for s in index["shards"])


def allocate(root: Path, index: dict, overwrite: bool = False) -> None:
    """Create the directory and every shard file at its final size (zero-filled, sparse on disk)."""
    root = Path(root)
    if root.exists() and any(root.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{root} exists and is not empty (pass overwrite to replace it)")
        if not (root / INDEX_FILE).exists() and not any(root.glob("shard_*")):
            raise FileExistsError(f"{root} is not a dataset directory; refusing to delete it")
        shutil.rmtree(root)
    root.mkdir(parents=True, exist_ok=True)
    need, free = dataset_bytes(index), shutil.disk_usage(root).free
    if need > free:  # the files are sparse until filled: without this check the disk fills mid-render
        raise OSError(f"{root}: the dataset needs {need / 2**30:.2f} GiB, only {free / 2**30:.2f} GiB are free")
    for shard in index["shards"]:
        d = root / shard["dir"]
        d.mkdir()
        for name, spec in index["arrays"].items():
            m = np.lib.format.open_memmap(d / f"{name}.npy", mode="w+", dtype=np.dtype(spec["dtype"]),
                                          shape=(shard["frames"], *spec["shape"]))
            del m


class FrameSink:
    """Writes frames of planned sequences into their pre-allocated rows (any process may own one)."""

    def __init__(self, root: Path, index: dict):
        self.root, self.index = Path(root), index
        self.styles = [s["name"] for s in index["styles"]]
        self._open: dict[int, dict[str, np.memmap]] = {}

    def _shard(self, i: int) -> dict[str, np.memmap]:
        if i not in self._open:
            d = self.root / self.index["shards"][i]["dir"]
            self._open[i] = {name: np.load(d / f"{name}.npy", mmap_mode="r+") for name in self.index["arrays"]}
        return self._open[i]

    def write(self, seq_idx: int, t: int, frame) -> None:
        """Store frame t of planned sequence seq_idx. `frame` is a demos.sequence.WorldFrame (or alike)."""
        seq = self.index["sequences"][seq_idx]
        if not 0 <= t < seq["frames"]:
            raise IndexError(f"frame {t} outside sequence {seq_idx} ({seq['frames']} frames)")
        arrays, row = self._shard(seq["shard"]), seq["start"] + t
        h, w = self.index["height"], self.index["width"]
        for name, spec in CHANNELS.items():
            if name not in frame.engine:
                raise ValueError(f"frame {t} of seed {seq['seed']} lacks engine channel {name!r}")
            arrays[name][row] = _image(frame.engine[name], (h, w, spec.components), name)
        for style in self.styles:
            if style not in frame.reference:
                raise ValueError(f"frame {t} of seed {seq['seed']} lacks the reference look {style!r}")
            arrays[reference_array(style)][row] = _image(frame.reference[style], (h, w, 3), style)
        action = np.asarray(frame.action, np.float32).reshape(-1)
        if action.shape != (ACTION_DIM,):
            raise ValueError(f"action must have {ACTION_DIM} values, got {action.shape}")
        arrays["action"][row] = action
        arrays["constants"][row] = flatten_constants(frame.constants)
        arrays["reset"][row] = 1 if frame.reset else 0

    def close(self) -> None:
        for arrays in self._open.values():
            for m in arrays.values():
                m.flush()
        self._open.clear()


def _image(x, shape: tuple[int, int, int], name: str) -> np.ndarray:
    a = np.asarray(x)
    if a.ndim == 2 and shape[2] == 1:
        a = a[..., None]
    if a.shape != shape:
        raise ValueError(f"{name}: expected shape {shape}, got {a.shape}")
    return a
