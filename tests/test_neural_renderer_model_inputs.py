"""Engine channels -> conditioning planes: layout, normalisation, missing groups, bad inputs."""
import numpy as np
import pytest
import torch

from neural_renderer.model.inputs import (COND_CHANNELS, GROUP_FLAG, MATERIAL_CHANNEL, PLANES, blank_cond,
                                           drop_groups, engine_to_cond, image_to_model, model_to_image)


def frame(h=8, w=6, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "color": rng.random((h, w, 3), dtype=np.float32),
        "depth": (rng.random((h, w, 1), dtype=np.float32) * 100).astype(np.float32),
        "normals": rng.uniform(-1, 1, (h, w, 3)).astype(np.float32),
        "albedo": rng.random((h, w, 3), dtype=np.float32),
        "material_id": rng.integers(0, 70, (h, w, 1)).astype(np.uint8),
        "motion": rng.normal(size=(h, w, 2)).astype(np.float32),
    }


def test_layout_and_values():
    f = frame()
    c = engine_to_cond(f)
    assert c.shape == (COND_CHANNELS, 8, 6)
    torch.testing.assert_close(c[0:3], torch.from_numpy(f["color"]).permute(2, 0, 1) * 2 - 1)
    want_depth = np.log1p(f["depth"][..., 0]) / np.log1p(1000.0) * 2 - 1
    torch.testing.assert_close(c[3], torch.from_numpy(want_depth.astype(np.float32)))
    torch.testing.assert_close(c[4:7], torch.from_numpy(f["normals"]).permute(2, 0, 1))
    torch.testing.assert_close(c[MATERIAL_CHANNEL], torch.from_numpy((f["material_id"][..., 0] % 32).astype(np.float32)))
    assert (c[GROUP_FLAG["color"]] == 1).all() and (c[GROUP_FLAG["gbuffer"]] == 1).all()


def test_uint8_color_matches_float_and_depth_2d_accepted():
    f = frame()
    u8 = (f["color"] * 255).round().astype(np.uint8)
    c8 = engine_to_cond({"color": u8})
    torch.testing.assert_close(c8[0:3], torch.from_numpy(u8).permute(2, 0, 1).float() / 255 * 2 - 1)
    c2 = engine_to_cond({"depth": f["depth"][..., 0]})  # (H, W) without the channel axis
    torch.testing.assert_close(c2[3], engine_to_cond({"depth": f["depth"]})[3])


@pytest.mark.parametrize("declared", [("color",), ("depth", "normals", "albedo", "material_id"), ("normals",)])
def test_missing_groups_are_zero_with_flag_zero(declared):
    f = frame()
    c = engine_to_cond({k: f[k] for k in declared})
    has_color = "color" in declared
    assert (c[GROUP_FLAG["color"]] == float(has_color)).all()
    assert (c[GROUP_FLAG["gbuffer"]] == float(not has_color)).all()
    for name, (first, n) in PLANES.items():
        if name not in declared:
            assert torch.count_nonzero(c[first:first + n]) == 0, name


def test_batched_and_resized():
    f = {k: np.stack([frame(seed=s)[k] for s in range(3)]) for k in ("color", "material_id")}
    c = engine_to_cond(f, resolution=4)
    assert c.shape == (3, COND_CHANNELS, 4, 4)
    ids = c[:, MATERIAL_CHANNEL]
    assert torch.equal(ids, ids.round())  # nearest: ids stay integers, never averaged


def test_drop_groups_per_sample():
    c = engine_to_cond({k: np.stack([v, v]) for k, v in frame().items()})
    d = drop_groups(c, {"color": torch.tensor([True, False]), "gbuffer": torch.tensor([False, True])})
    assert torch.equal(d[0, :3], c[0, :3]) and torch.count_nonzero(d[1, :3]) == 0
    assert d[0, GROUP_FLAG["gbuffer"]].max() == 0 and d[1, GROUP_FLAG["gbuffer"]].min() == 1
    assert torch.count_nonzero(d[0, 3:11]) == 0 and torch.equal(d[1, 3:11], c[1, 3:11])


def test_bad_inputs_raise_clear_errors():
    f = frame()
    with pytest.raises(ValueError, match="at least one"):
        engine_to_cond({"motion": f["motion"]})  # nothing the generator uses
    with pytest.raises(ValueError, match="color"):
        engine_to_cond({"color": f["color"][..., :2]})  # wrong component count
    with pytest.raises(ValueError, match="shape"):
        engine_to_cond({"color": f["color"], "depth": np.zeros((4, 4, 1), np.float32)})  # sizes disagree
    c = engine_to_cond({"depth": np.array([[[np.nan], [np.inf]]], np.float32)})  # non-finite depth is clamped
    assert torch.isfinite(c).all()


def test_blank_and_image_round_trip():
    assert torch.count_nonzero(blank_cond(2, resolution=4)) == 0
    img = np.random.default_rng(0).random((5, 7, 3), dtype=np.float32)
    torch.testing.assert_close(model_to_image(image_to_model(img)), torch.from_numpy(img), atol=1e-6, rtol=0)
