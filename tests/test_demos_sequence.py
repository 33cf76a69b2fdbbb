"""render_sequence: the API the dataset writer, the evaluation and on-the-fly training data use."""
from __future__ import annotations

import numpy as np
import pytest

from bridge.channels import ACTION_DIM, CHANNELS, CONSTANTS_LAYOUT
from demos.materials import MATERIAL_ID
from demos.sequence import render_sequence

W, H = 48, 32


@pytest.fixture(scope="module")
def ctx():
    from demos.gl import create_context

    c = create_context(headless=True)
    yield c
    c.release()


def frames(ctx, seed, n=5, styles=("sunny", "night"), script="mixed"):
    return list(render_sequence(seed, n, W, H, styles=styles, script=script, ctx=ctx, ssaa=1))


def test_same_seed_gives_the_same_frames_and_another_seed_does_not(ctx):
    a, b = frames(ctx, 21), frames(ctx, 21)
    for fa, fb in zip(a, b):
        assert fa.index == fb.index and fa.reset == fb.reset
        np.testing.assert_array_equal(fa.action, fb.action)
        for k in CHANNELS:
            np.testing.assert_array_equal(fa.engine[k], fb.engine[k], err_msg=k)
        for k in fa.reference:
            np.testing.assert_array_equal(fa.reference[k], fb.reference[k], err_msg=k)
        for k in CONSTANTS_LAYOUT:
            np.testing.assert_array_equal(fa.constants[k], fb.constants[k])
    c = frames(ctx, 22)
    assert not np.array_equal(a[-1].engine["color"], c[-1].engine["color"])


def test_frame_contract(ctx):
    fs = frames(ctx, 5, n=3, styles=("cartoon",))
    f = fs[1]
    assert fs[0].reset and not f.reset
    assert set(f.engine) == set(CHANNELS)
    for k, spec in CHANNELS.items():
        assert f.engine[k].shape == (H, W, spec.components)
    assert f.engine["color"].dtype == np.float32 and f.engine["material_id"].dtype == np.uint8
    assert f.engine["disocclusion"].dtype == np.uint8
    assert set(f.reference) == {"cartoon"} and f.reference["cartoon"].shape == (H, W, 3)
    assert f.reference["cartoon"].dtype == np.float32
    assert 0.0 <= f.reference["cartoon"].min() and f.reference["cartoon"].max() <= 1.0
    assert f.action.shape == (ACTION_DIM,) and f.action.dtype == np.float32
    assert set(f.constants) == set(CONSTANTS_LAYOUT)
    for k, n in CONSTANTS_LAYOUT.items():
        assert f.constants[k].shape == (n,) and f.constants[k].dtype == np.float32
    assert f.constants["dt"][0] == pytest.approx(1 / 30)
    np.testing.assert_array_equal(f.constants["jitter_px"], 0.0)
    np.testing.assert_allclose(fs[0].constants["clip_to_prev_clip"].reshape(4, 4), np.eye(4), atol=1e-5)
    assert (fs[0].engine["disocclusion"] == 1).all()


def test_cuts_reset_and_still_player_sees_no_static_motion(ctx):
    cut = frames(ctx, 9, n=120, styles=(), script="cuts")
    resets = [f.index for f in cut if f.reset]
    assert resets[0] == 0 and len(resets) >= 2
    for i in resets[1:]:
        assert (cut[i].engine["disocclusion"] == 1).all()
        assert not cut[i].action.any()
    still = frames(ctx, 9, n=3, styles=(), script="still")
    static = still[2].engine["material_id"][..., 0] != MATERIAL_ID["painted"]  # dynamic objects may move
    assert np.abs(still[2].engine["motion"][static]).max() < 1e-3
