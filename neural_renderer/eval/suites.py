"""The evaluation suites: which held-out sequences, at which resolution, with which prompt schedule.

Every seed of the named suites is an evaluation seed (EVAL_SEED_BASE and up, see neural_renderer/data/world.py), never
a training one. A sequence's frames are rendered once into an eval-split dataset under the cache directory, keyed by
everything that determines them, so `standard` and `full` never re-render a sequence already there.

A tuning suite (`split="train"`, built by a tuning script, never listed in SUITES) is the other way round: training
seeds only, its frames a train-split dataset. Inference knobs are chosen on it, so the evaluation seeds stay unseen by
every choice; a Suite refuses a seed of the other split at construction.
"""
from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass, replace

from neural_renderer.data.world import EVAL_SEED_BASE, TRAIN_SEEDS, is_eval_seed, source_root

CACHE_VERSION = 1  # bump when the cache layout changes; world changes are caught by world_fingerprint


@functools.lru_cache(maxsize=1)
def world_fingerprint() -> str:
    """Hash of the world renderer's sources (demos/*.py and its shaders): any edit to what a seed
    renders gives new cache keys, so a stale cache is never scored against."""
    root = source_root()
    h = hashlib.sha256()
    for f in sorted(list(root.glob("*.py")) + list(root.glob("shaders/*"))):
        if f.is_file() and f.name not in ("demo_cmd.py", "record_script.py"):
            h.update(f.relative_to(root).as_posix().encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:12]


@dataclass(frozen=True)
class EvalSequence:
    seed: int
    frames: int
    styles: tuple[str, ...]                 # reference looks rendered for this sequence
    schedule: tuple[tuple[int, str], ...]   # (first frame, style) prompt switches; the first at frame 0
    script: str = "mixed"
    # Frames where eval itself tells the renderer to reset (as a game does on a level load), on top
    # of the world's own cuts: short runs rarely contain a cut, and responsiveness needs one.
    resets: tuple[int, ...] = ()

    def style_at(self, t: int) -> str:
        style = self.schedule[0][1]
        for start, s in self.schedule:
            if start <= t:
                style = s
        return style

    def cache_key(self, width: int, height: int) -> str:
        return (f"v{CACHE_VERSION}-{world_fingerprint()}-{width}x{height}-seed{self.seed}-{self.frames}f-"
                f"{self.script}-{'+'.join(self.styles)}")


@dataclass(frozen=True)
class Suite:
    name: str
    width: int
    height: int
    sequences: tuple[EvalSequence, ...]
    drift_window: int        # frames per window; drift compares the last window of the longest run to its first
    samples: int = 4         # frames shown in the report's sample grid
    warmup_frames: int = 2   # frames of each run left out of latency figures (first-call allocation, compile)
    split: str = "eval"      # "eval": evaluation seeds only; "train": a tuning suite, training seeds only

    def __post_init__(self):
        if self.split not in ("eval", "train"):
            raise ValueError(f"suite split must be 'eval' or 'train', got {self.split!r}")
        for q in self.sequences:
            if self.split == "eval" and not is_eval_seed(q.seed):
                raise ValueError(f"suite {self.name!r}: seed {q.seed} is not an evaluation seed")
            if self.split == "train" and q.seed not in TRAIN_SEEDS:
                raise ValueError(f"tuning suite {self.name!r}: seed {q.seed} is not a training seed "
                                 f"({TRAIN_SEEDS.start}..{TRAIN_SEEDS.stop - 1})")


def _cycle(styles: tuple[str, ...], frames: int, every: int) -> tuple[tuple[int, str], ...]:
    return tuple((t, styles[(t // every) % len(styles)]) for t in range(0, frames, every))


def quick() -> Suite:
    """CPU-sized, runs in CI: two short runs, two prompt switches (back to the first look, so drift
    compares like with like), 64x64."""
    s = ("sunny", "night")
    return Suite("quick", 64, 64, (
        EvalSequence(EVAL_SEED_BASE + 0, 36, s, ((0, "sunny"), (12, "night"), (24, "sunny"))),
        EvalSequence(EVAL_SEED_BASE + 1, 24, s, ((0, "night"),), resets=(12,)),
    ), drift_window=8)


def standard() -> Suite:
    """GPU machine: eight runs of 300 frames at 128x128; each switches look at 100 and back at 200
    (so drift compares like with like) and is reset by eval at 150. Six looks over the eight runs."""
    s = ("sunny", "sunset", "night", "winter", "foggy", "cartoon")
    seqs = []
    for i in range(8):
        a, b = s[i % 6], s[(i + 1) % 6]
        seqs.append(EvalSequence(EVAL_SEED_BASE + 100 + i, 300, (a, b), ((0, a), (100, b), (200, a)), resets=(150,)))
    return Suite("standard", 128, 128, tuple(seqs), drift_window=50)


def full() -> Suite:
    """`standard` plus one 10,000-frame run of a single session (drift: frames 9,000-10,000 vs 0-1,000)."""
    std = standard()
    s = ("sunny", "night")
    # 0-2,000 sunny, 2,000-4,000 night, ..., 8,000-10,000 sunny: first and last windows share a look
    long_run = EvalSequence(EVAL_SEED_BASE + 900, 10_000, s, _cycle(s, 10_000, 2_000))
    return Suite("full", std.width, std.height, std.sequences + (long_run,), drift_window=1000)


SUITES = {"quick": quick, "standard": standard, "full": full}


def get_suite(name: str, resolution: tuple[int, int] | None = None) -> Suite:
    if name not in SUITES:
        raise KeyError(f"unknown suite {name!r}; known: {', '.join(SUITES)}")
    suite = SUITES[name]()
    if resolution is not None:
        suite = replace(suite, width=resolution[0], height=resolution[1])
    return suite
