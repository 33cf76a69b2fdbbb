"""Checkpoints and the world group: the shipped tiny reads it, the shipped ones from before it load and ignore
it; widening one for
a model that reads the group changes nothing until training moves the new weights; `neurender train`
from such a checkpoint runs end to end and trains the group's weights; the backend fills the group in."""
import dataclasses
import json

import numpy as np
import pytest
import torch

from _models import randomised
from demos.camera import Camera, frame_constants
from neural_renderer.model.checkpoint import (differs_only_by_world, init_state, load_model, load_state,
                                              save_checkpoint, widen_for_world)
from neural_renderer.model.history import HISTORY_PLANES
from neural_renderer.model.inputs import BASE_COND_CHANNELS, COND_CHANNELS, GROUP_FLAG, MATERIAL_CHANNEL
from neural_renderer.model.registry import MODELS, build


def clip_inputs(R=32, L=2, seed=1):
    g = torch.Generator().manual_seed(seed)
    cond = torch.randn(1, L, COND_CHANNELS, R, R, generator=g)  # world planes non-zero: must not matter
    cond[:, :, MATERIAL_CHANNEL] = torch.randint(0, 32, (1, L, R, R), generator=g).float()
    return (torch.randn(1, L, 3, R, R, generator=g), cond, torch.randn(1, L, HISTORY_PLANES, R, R, generator=g),
            torch.rand(1, L, generator=g), torch.zeros(1, L), torch.rand(1, L, generator=g),
            torch.randn(1, L, 9, generator=g), torch.randn(1, 384, generator=g))


@pytest.mark.parametrize("name", ["tiny", "base"])
def test_the_shipped_hourglasses_read_the_group(name):
    cfg, _, _ = load_state(name)
    assert cfg.arch == "hourglass"
    assert cfg.world_freqs == MODELS[name]().world_freqs > 0
    assert load_model(name).cond_planes == COND_CHANNELS


@pytest.mark.parametrize("name", ["tiny-shortcut", "dit-tiny"])
def test_shipped_checkpoints_predate_the_group_and_ignore_it(name):
    cfg, _, _ = load_state(name)
    assert cfg.world_freqs == 0
    m = load_model(name)
    assert m.cond_planes == BASE_COND_CHANNELS


def test_widened_model_computes_what_the_old_one_did():
    new_cfg = MODELS["hg-micro"]()
    assert new_cfg.world_freqs
    old = randomised(dataclasses.replace(new_cfg, world_freqs=0))
    new = build(new_cfg).eval()
    new.load_state_dict(widen_for_world(old.state_dict(), old.cfg, new_cfg))
    assert new.stem.weight.shape[1] == old.stem.weight.shape[1] + COND_CHANNELS - BASE_COND_CHANNELS
    x = clip_inputs()
    with torch.no_grad():
        torch.testing.assert_close(new.forward_clip(*x), old.forward_clip(*x), atol=1e-6, rtol=1e-5)
        # and the widened model does read the group once its weights move
        new.stem.weight[:, -1].normal_(0, 0.1)
        assert not torch.allclose(new.forward_clip(*x), old.forward_clip(*x), atol=1e-4)


def test_init_from_an_older_tiny_widens_it_for_the_registry_tiny(tmp_path):
    """How the shipped tiny got its group: a world-less tiny checkpoint as the init of a registry tiny."""
    cfg = MODELS["tiny"]()
    old = randomised(dataclasses.replace(cfg, world_freqs=0))
    path = save_checkpoint(old.state_dict(), old.cfg, tmp_path / "tiny", dtype=torch.float32)
    older, _, _ = load_state(path)
    assert differs_only_by_world(older, cfg)
    assert not differs_only_by_world(older, dataclasses.replace(cfg, depth=cfg.depth + 1))
    m = build(cfg).eval()
    m.load_state_dict({k: v.float() for k, v in init_state(path, cfg).items()})
    x = clip_inputs(R=32)
    with torch.no_grad():
        torch.testing.assert_close(m.forward_clip(*x), old.eval().forward_clip(*x), atol=1e-6, rtol=1e-5)
    with pytest.raises(ValueError):
        widen_for_world(load_state(path)[1], older, older)


def test_training_with_the_group_from_an_older_checkpoint(tmp_path):
    from neural_renderer.training.config import TrainConfig
    from neural_renderer.training.train import train

    old = randomised(dataclasses.replace(MODELS["hg-micro"](), world_freqs=0))
    init = save_checkpoint(old.state_dict(), old.cfg, tmp_path / "old" / "hg-micro", dtype=torch.float32)
    cfg = TrainConfig(model="hg-micro", init=str(init), out=str(tmp_path / "run"), data="synthetic", steps=4, batch=2,
                      clip_len=3, pool=2, refresh_every=0, lr=1e-3, warmup=1, log_every=1, ckpt_every=0,
                      styles=["sunny"], crop=24, drop_group_p=0.0)
    res = train(cfg, progress=False)
    assert res["steps"] == 4 and np.isfinite(res["final_loss"])
    doc = json.loads((tmp_path / "run" / "hg-micro.json").read_text())
    assert doc["config"]["world_freqs"] == MODELS["hg-micro"]().world_freqs
    state = torch.load(tmp_path / "run" / "train_state.pt", weights_only=True)["model"]
    n_world = COND_CHANNELS - BASE_COND_CHANNELS
    # the group reached the batches: its stem columns, zero at the start, were trained
    assert state["stem.weight"][:, -n_world:].abs().max() > 0


def test_pool_batches_carry_the_group_with_correct_crops():
    from neural_renderer.serving.prompts import style_embeddings
    from neural_renderer.training.clip_sources import ClipPool, synthetic_clip
    from neural_renderer.model.inputs import PLANES, engine_to_cond

    clip = synthetic_clip(0, 3, 32, ["sunny"])
    pool = ClipPool(1, 3, 32, ["sunny"], style_embeddings(), device="cpu", world=True)
    pool.add(clip)
    batch = pool.sample(1, torch.Generator().manual_seed(0), crop=16)
    full = engine_to_cond(clip.engine, constants=clip.constants)  # (3, C, 32, 32): the whole frames
    first, n = PLANES["world"]
    assert (batch.cond[0, :, GROUP_FLAG["world"]] == 1).all()
    # the crop's planes are the full frame's at the crop's place (footprints differ only on the crop border)
    hits = [(y, x) for y in range(17) for x in range(17)
            if torch.allclose(batch.cond[0, :, first:first + n, 1:-1, 1:-1], full[:, first:first + n, y + 1:y + 15, x + 1:x + 15],
                              atol=1e-4)]
    assert len(hits) == 1
    without = ClipPool(1, 3, 32, ["sunny"], style_embeddings(), device="cpu")
    without.add(clip)
    b2 = without.sample(1, torch.Generator().manual_seed(0), crop=16)
    assert b2.cond.shape == batch.cond.shape and torch.count_nonzero(b2.cond[:, :, first:]) == 0
    torch.testing.assert_close(b2.cond[:, :, :GROUP_FLAG["world"]], batch.cond[:, :, :GROUP_FLAG["world"]])


def test_backend_fills_the_group_from_the_frames_constants(tmp_path):
    from bridge.backends import FrameInputs, SessionSpec
    from neural_renderer.serving.renderer import GeneratorRenderer

    m = randomised("hg-micro")
    ck = save_checkpoint(m.state_dict(), m.cfg, tmp_path / "hg-micro", dtype=torch.float32)
    r = GeneratorRenderer(str(ck), device="cpu")
    cam = Camera((0.0, 2.0, 0.0), yaw_deg=0.0, pitch_deg=-20.0)
    depth = np.full((16, 16, 1), 6.0, np.float32)
    s = r.open_session(SessionSpec(16, 16, {"depth": "float32"}, 9, "rgb16f", None, None))
    with_cam = s._cond({"depth": depth}, frame_constants(cam, cam, 1 / 30))
    assert with_cam.shape == (1, COND_CHANNELS, 16, 16) and (with_cam[:, GROUP_FLAG["world"]] == 1).all()
    assert (s._cond({"depth": depth}, {"dt": np.array([0.03], np.float32)})[:, GROUP_FLAG["world"]] == 0).all()
    outs = []
    for consts in (frame_constants(cam, cam, 1 / 30), {}):
        s = r.open_session(SessionSpec(16, 16, {"depth": "float32"}, 9, "rgb16f", None, None))
        out = np.zeros((16, 16, 3), np.float16)
        s.render(FrameInputs(0, {"depth": depth}, consts, np.zeros(9, np.float32), None, True), out)
        outs.append(out.astype(np.float32))
    assert np.abs(outs[0] - outs[1]).max() > 1e-3  # the camera reaches the picture
    r.close()
