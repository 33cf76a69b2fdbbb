"""The game world as a source of training and evaluation frames: the one door from neural_renderer to `demos`.

Everything here is a thin, lazily importing front for `demos` (moderngl and the shaders load only
when a frame is actually rendered), so the rest of the package names the world without depending on
how it is built, and the serving path never pulls it in.
"""
from __future__ import annotations

from pathlib import Path

from demos.seeds import EVAL_SEED_BASE, TRAIN_SEEDS, check_train_seed, is_eval_seed

__all__ = ["EVAL_SEED_BASE", "TRAIN_SEEDS", "check_train_seed", "is_eval_seed", "create_context", "release_context",
           "render_sequence", "SequenceRenderer", "source_root", "contact_sheet", "to_srgb8"]


def create_context(*args, **kwargs):
    from demos.gl import create_context as create

    return create(*args, **kwargs)


def release_context(ctx) -> None:
    from demos.gl import release_context as release

    release(ctx)


def render_sequence(*args, **kwargs):
    from demos.sequence import render_sequence as render

    return render(*args, **kwargs)


def SequenceRenderer(*args, **kwargs):  # noqa: N802  (stands in for the class it builds)
    from demos.sequence import SequenceRenderer as Renderer

    return Renderer(*args, **kwargs)


def contact_sheet(*args, **kwargs):
    from demos.present import contact_sheet as sheet

    return sheet(*args, **kwargs)


def to_srgb8(*args, **kwargs):
    from demos.present import to_srgb8 as convert

    return convert(*args, **kwargs)


def source_root() -> Path:
    """The folder of the world renderer's sources (what the evaluation cache fingerprints)."""
    import demos

    return Path(demos.__file__).parent
