"""The generator backend with the hourglass model, through a real daemon (`neurender serve`) and its
Python client: a client's own frame size is served at that size (no square resampling), motion vectors
turn the reprojected history on, the ablation options reach the sampler, and bad options are refused."""
import numpy as np
import pytest
import torch

from bridge.backends import UnsupportedSpec
from bridge.client import Client
from bridge.styles import STYLES
from bridge.daemon import spawn_daemon
from neural_renderer.model.checkpoint import save_checkpoint
from neural_renderer.serving.renderer import GeneratorRenderer
from _models import randomised


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    """An hg-micro checkpoint with non-zero weights (outputs depend on every input)."""
    m = randomised("hg-micro")
    return save_checkpoint(m.state_dict(), m.cfg, tmp_path_factory.mktemp("ck") / "hg-micro", dtype=torch.float32)


def engine(h, w, t):
    rng = np.random.default_rng(t)
    motion = np.zeros((h, w, 2), np.float16)
    motion[..., 0] = 1.0  # the camera pans: every point was one pixel to the right
    return {"color": rng.random((h, w, 3)).astype(np.float16), "depth": (1 + rng.random((h, w, 1)) * 50).astype(np.float16),
            "motion": motion, "disocclusion": np.zeros((h, w, 1), np.uint8)}


def test_daemon_serves_the_clients_own_size_with_history(ckpt):
    H, W = 24, 40  # not square, not a multiple of the trunk's factor on one side
    chans = {"color": "float16", "depth": "float16", "motion": "float16", "disocclusion": "uint8"}
    with spawn_daemon(f"generator:{ckpt}", runtime_dir="private", device="cpu", timeout=120) as d:
        with Client(d.endpoint) as c:
            s = c.open_session(W, H, chans, prompt=STYLES["winter"], output_format="rgb16f")
            assert s.info["renderer"]["arch"] == "hourglass" and s.info["renderer"]["history"]
            moving = [s.render(engine(H, W, t)).image.astype(np.float32) for t in range(4)]
            s.close()
            s = c.open_session(W, H, {"color": "float16", "depth": "float16"}, prompt=STYLES["winter"],
                               output_format="rgb16f")
            no_mv = [s.render({k: v for k, v in engine(H, W, t).items() if k in ("color", "depth")}).image.astype(np.float32)
                     for t in range(4)]
    assert all(o.shape == (H, W, 3) and np.isfinite(o).all() for o in moving)
    np.testing.assert_allclose(moving[0], no_mv[0], atol=2e-3)  # frame 0: no previous output yet
    assert np.abs(moving[3] - no_mv[3]).max() > 1e-2  # later frames use the reprojected history


def test_ablation_options_and_bad_options(ckpt):
    r = GeneratorRenderer(f"{ckpt}?context=0&history=0&noise=fixed", device="cpu")
    d = r.describe()
    assert (d["context"], d["history"], d["noise"]) == (False, False, "fixed") and r.name.endswith("/fixed-noise")
    for bad in ("?history=2", "?color=1", "?noise=blue", "?context", "?steps=4", "?history_noise=1.5",
                "?history_noise=-0.1", "?history_noise=x", "?history_noise"):
        with pytest.raises(UnsupportedSpec):
            GeneratorRenderer(f"{ckpt}{bad}", device="cpu")


def test_history_noise_option_reaches_the_sampler_and_leaves_the_checkpoint_alone(ckpt):
    """`?history_noise=L` (the tuning sweeps' knob): the renderer's model copy gets L, the session's sampler tells
    the model L and noises the history at it, and a renderer without the option keeps the checkpoint's level."""
    from bridge.backends import FrameInputs, SessionSpec
    from bridge.channels import ACTION_DIM

    plain, noised = GeneratorRenderer(str(ckpt), device="cpu"), GeneratorRenderer(f"{ckpt}?history_noise=0.2", device="cpu")
    assert plain.describe()["history_noise"] == 0.0 and noised.describe()["history_noise"] == 0.2
    assert noised.name.endswith("/history-noise=0.2") and plain.model.cfg.history_noise == 0.0
    H, W = 16, 24
    outs = []
    for r in (plain, noised):
        s = r.open_session(SessionSpec(W, H, {"color": "float16", "depth": "float16", "motion": "float16",
                                              "disocclusion": "uint8"}, ACTION_DIM, "rgb16f", STYLES["winter"], None))
        assert s.gen.h[0].item() == pytest.approx(r.model.cfg.history_noise)
        frames = []
        for t in range(3):
            out = np.zeros((H, W, 3), np.float16)
            s.render(FrameInputs(t, engine(H, W, t), {}, np.zeros(ACTION_DIM, np.float32), None, t == 0), out)
            frames.append(out.astype(np.float32))
        outs.append(frames)
    # the level is a conditioning input of every frame (training tells it with or without a history), so the runs differ
    assert all(np.isfinite(f).all() for f in outs[1]) and np.abs(outs[0][2] - outs[1][2]).max() > 1e-2
