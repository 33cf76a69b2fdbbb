"""The SHIPPED tiny checkpoint (loaded from the repository, no download): on held-out eval frames of
the world renderer it is closer to the requested reference look than the engine pass is, for three
looks, and its stream is deterministic by seed. Also checks every shipped file is under 16 MiB."""
import numpy as np
import pytest
import torch

from bridge.styles import STYLES
from neural_renderer.model.checkpoint import SHIPPED_DIR, load_model, load_state
from neural_renderer.model.inputs import engine_to_cond, model_to_image
from neural_renderer.serving.generator import Generator
from neural_renderer.eval.metrics import psnr
from neural_renderer.serving.prompts import lookup

LOOKS = ("sunny", "night", "foggy")
EVAL_SEED = 1_000_002  # an evaluation seed: never in training (demos.seeds)


@pytest.fixture(scope="module")
def frames():
    from demos.sequence import render_sequence

    return list(render_sequence(EVAL_SEED, 6, 128, 128, styles=LOOKS, script="walk"))


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return load_model("tiny")


def stream(model, look, frames, seed=0):
    g = Generator(model, lookup(STYLES[look]), seed=seed)
    return [model_to_image(g.step(engine_to_cond(f.engine)[None]))[0].numpy() for f in frames]


@pytest.mark.parametrize("look", LOOKS)
def test_beats_engine_pass_on_eval_frames(tiny, frames, look):
    out = stream(tiny, look, frames)
    ours = np.mean([psnr(o, f.reference[look]) for o, f in zip(out, frames)])
    engine = np.mean([psnr(f.engine["color"], f.reference[look]) for f in frames])
    assert ours > engine + 1.0, (look, ours, engine)


def test_deterministic_by_seed(tiny, frames):
    a, b, c = stream(tiny, "sunny", frames[:4]), stream(tiny, "sunny", frames[:4]), stream(tiny, "sunny", frames[:4], seed=1)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[-1], c[-1])


def test_shipped_files_are_small_and_complete():
    for name in ("tiny", "base"):
        cfg, state, meta = load_state(name)
        assert cfg.name == name and state and meta.get("step", 0) > 0
    for f in SHIPPED_DIR.glob("*.safetensors"):
        assert f.stat().st_size < 16 * 1024 * 1024, f
