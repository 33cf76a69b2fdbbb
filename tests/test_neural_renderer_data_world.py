"""neural_renderer's one door to the game world: training seeds are exactly 0..999 (as docs/dataset.md
says), evaluation seeds are refused for training, and frames come through unchanged."""
from __future__ import annotations

import numpy as np
import pytest

from neural_renderer.data import world


def test_training_seeds_are_exactly_0_to_999():
    assert world.check_train_seed(0) == 0 and world.check_train_seed(999) == 999
    for seed in (1000, 5000, world.EVAL_SEED_BASE, world.EVAL_SEED_BASE + 3, -1):
        with pytest.raises(ValueError, match="training uses 0..999"):
            world.check_train_seed(seed)
    with pytest.raises(ValueError, match="reserved for evaluation"):
        world.check_train_seed(1_000_000)


def test_frames_through_the_door_are_the_world_renderers(gl_context):
    from demos.sequence import render_sequence

    ours = next(iter(world.render_sequence(7, 1, 16, 12, styles=("sunny",), ctx=gl_context)))
    theirs = next(iter(render_sequence(7, 1, 16, 12, styles=("sunny",), ctx=gl_context)))
    assert set(ours.engine) == set(theirs.engine)
    for k in ours.engine:
        np.testing.assert_array_equal(ours.engine[k], theirs.engine[k])
    np.testing.assert_array_equal(ours.reference["sunny"], theirs.reference["sunny"])
    assert ours.engine["color"].shape[:2] == (12, 16)
