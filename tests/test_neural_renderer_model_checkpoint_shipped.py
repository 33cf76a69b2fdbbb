"""The SHIPPED tiny checkpoint (the hourglass generator, loaded from the repository, no download), streamed
as the daemon streams it (motion vectors, disocclusion, actions) over held-out eval frames of the world
renderer: at least 1.5 dB closer to every requested look than the engine pass, 6 dB closer on average (measured
2026-12-07: +2.4 dB on the closest look, +7.2 mean, 6 of 7 looks nearest the requested one); its output is
closest to the look it was asked for; deterministic by seed; the action vector reaches the output; it
recovers after a reset. Also: every shipped file is under 16 MiB and names its model."""
import numpy as np
import pytest
import torch

from bridge.styles import STYLES
from neural_renderer.eval.metrics import psnr
from neural_renderer.model.checkpoint import SHIPPED_DIR, load_model, load_state
from neural_renderer.model.inputs import INPUT_CHANNELS, engine_to_cond, model_to_image
from neural_renderer.serving.prompts import lookup
from neural_renderer.serving.stream import StreamingSampler

LOOKS = tuple(STYLES)
EVAL_SEED = 1_000_002  # an evaluation seed: never in training (demos.seeds)


@pytest.fixture(scope="module")
def frames():
    from neural_renderer.data.world import render_sequence

    return list(render_sequence(EVAL_SEED, 6, 128, 128, styles=LOOKS, script="walk"))


@pytest.fixture(scope="module")
def tiny():
    m = load_model("tiny")
    assert m.cfg.arch == "hourglass"
    return m


def stream(model, look, frames, seed=0, action_scale=1.0, reset_at=None):
    s = StreamingSampler(model, lookup(STYLES[look]), seed=seed)
    out = []
    for t, f in enumerate(frames):
        if t == reset_at:
            s.reset()
        # with the camera constants, as the daemon passes them: the world group is in the loop
        cond = engine_to_cond({c: torch.from_numpy(np.asarray(f.engine[c])) for c in INPUT_CHANNELS},
                              constants=f.constants)[None]
        mv = torch.from_numpy(f.engine["motion"]).float().permute(2, 0, 1)[None]
        dis = torch.from_numpy(np.asarray(f.engine["disocclusion"], np.float32)).reshape(1, 1, *mv.shape[-2:])
        action = torch.from_numpy(f.action)[None] * action_scale
        out.append(model_to_image(s.step(cond, action, mv, dis))[0].numpy())
    return out


@pytest.fixture(scope="module")
def streamed(tiny, frames):
    return {look: stream(tiny, look, frames) for look in LOOKS}


def test_every_look_beats_the_engine_pass(streamed, frames):
    ours = {look: np.mean([psnr(o, f.reference[look]) for o, f in zip(out, frames)]) for look, out in streamed.items()}
    engine = {look: np.mean([psnr(f.engine["color"], f.reference[look]) for f in frames]) for look in LOOKS}
    assert all(ours[k] > engine[k] + 1.5 for k in LOOKS), (ours, engine)
    assert np.mean(list(ours.values())) > np.mean(list(engine.values())) + 6.0, (ours, engine)


def test_output_is_closest_to_the_requested_look(streamed, frames):
    """Prompt following: for most looks the output is nearer the requested reference than any other look's."""
    hits = 0
    for look, out in streamed.items():
        dist = {k: np.mean([np.mean((o - f.reference[k]) ** 2) for o, f in zip(out, frames)]) for k in LOOKS}
        hits += min(dist, key=dist.get) == look
    assert hits >= 5, hits


def test_deterministic_by_seed(tiny, frames, streamed):
    a, c = stream(tiny, "sunny", frames), stream(tiny, "sunny", frames, seed=1)
    assert all(np.array_equal(x, y) for x, y in zip(a, streamed["sunny"]))
    assert not np.array_equal(a[-1], c[-1])


def test_the_action_vector_reaches_the_output(tiny, frames, streamed):
    still = stream(tiny, "night", frames, action_scale=0.0)
    assert np.abs(still[-1] - streamed["night"][-1]).max() > 1e-3


def test_recovers_after_a_reset(tiny, frames):
    """A cut drops context and history; the frames after it are still closer to the look than the engine pass."""
    out = stream(tiny, "winter", frames, reset_at=3)
    after = np.mean([psnr(o, f.reference["winter"]) for o, f in zip(out[3:], frames[3:])])
    engine = np.mean([psnr(f.engine["color"], f.reference["winter"]) for f in frames[3:]])
    assert after > engine + 4.0, (after, engine)


def test_shipped_files_are_small_and_complete():
    for name in ("tiny", "dit-tiny", "base"):
        cfg, state, meta = load_state(name)
        assert cfg.name == name and state and meta.get("step", 0) > 0
    for f in SHIPPED_DIR.glob("*.safetensors"):
        assert f.stat().st_size < 16 * 1024 * 1024, f
