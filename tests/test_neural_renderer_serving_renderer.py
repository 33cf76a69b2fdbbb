"""The daemon backend through the bridge's Renderer interface: any declared subset of channels, any
frame size, every output format, reset, prompt changes (table text and free text), bad specs."""
import numpy as np
import pytest
import torch

from bridge.backends import FrameInputs, SessionSpec, UnsupportedSpec, create_renderer
from bridge.channels import ACTION_DIM, OUTPUT_FORMATS
from neural_renderer.serving.renderer import GeneratorRenderer
from neural_renderer.model.checkpoint import save_checkpoint
from neural_renderer.model.dit import CausalDiT
from neural_renderer.model.registry import MODELS


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    """A micro checkpoint with non-zero weights (outputs depend on every input)."""
    torch.manual_seed(0)
    m = CausalDiT(MODELS["micro"]())
    with torch.no_grad():
        for p in m.parameters():
            if p.dim() >= 2:
                p.normal_(0, 0.05)
    return save_checkpoint(m.state_dict(), m.cfg, tmp_path_factory.mktemp("ck") / "micro", dtype=torch.float32)


def pixels(h, w, seed=0, names=("color", "depth", "normals", "albedo", "material_id", "motion")):
    rng = np.random.default_rng(seed)
    all_ = {"color": rng.random((h, w, 3)).astype(np.float16), "depth": (rng.random((h, w, 1)) * 50).astype(np.float16),
            "normals": rng.uniform(-1, 1, (h, w, 3)).astype(np.float16), "albedo": (rng.random((h, w, 3)) * 255).astype(np.uint8),
            "material_id": rng.integers(0, 9, (h, w, 1)).astype(np.uint16), "motion": np.zeros((h, w, 2), np.float16)}
    return {k: all_[k] for k in names}


def spec(w=40, h=24, channels=("color", "depth"), fmt="rgb8", prompt=None, steps=None):
    return SessionSpec(w, h, {c: "float16" for c in channels}, ACTION_DIM, fmt, prompt, steps)


def frame(px, seq=0, prompt=None, reset=False, action=None):
    return FrameInputs(seq, px, {}, np.zeros(ACTION_DIM, np.float32) if action is None else action, prompt, reset)


def run(sess, frames, fmt="rgb8", size=(24, 40)):
    dtype, comps = OUTPUT_FORMATS[fmt]
    outs = []
    for f in frames:
        out = np.zeros((*size, comps), dtype)
        sess.render(f, out)
        outs.append(out)
    return outs


def test_create_renderer_spec_and_describe(ckpt):
    r = create_renderer(f"generator:{ckpt}", steps=1, device="cpu")
    d = r.describe()
    assert d["backend"] == "generator" and d["model"] == "micro" and d["steps"] == 1 and d["device"] == "cpu"
    r.close()


@pytest.mark.parametrize("fmt", list(OUTPUT_FORMATS))
@pytest.mark.parametrize("declared", [("color",), ("depth", "normals", "albedo", "material_id"), ("motion",)],
                         ids=["color-only", "gbuffer-only", "none-usable"])
def test_any_subset_any_format(ckpt, fmt, declared):
    r = GeneratorRenderer(str(ckpt), device="cpu")
    s = r.open_session(spec(channels=declared, fmt=fmt))
    outs = run(s, [frame(pixels(24, 40, i, declared)) for i in range(3)], fmt)
    dtype, comps = OUTPUT_FORMATS[fmt]
    for o in outs:
        assert o.shape == (24, 40, comps) and o.dtype == np.dtype(dtype) and np.isfinite(o.astype(np.float32)).all()
    if comps == 4:
        assert (outs[0][..., 3] == (255 if dtype == "uint8" else 1.0)).all()
    assert outs[0][..., :3].astype(np.float32).std() > 0  # a picture, not a constant
    r.close()


def test_deterministic_reset_and_inputs_matter(ckpt):
    r = GeneratorRenderer(str(ckpt), device="cpu", seed=5)
    chans = ("color", "depth", "normals", "albedo", "material_id")
    px = [pixels(24, 40, i, chans) for i in range(4)]
    a = run(r.open_session(spec(channels=chans)), [frame(p) for p in px])
    s = r.open_session(spec(channels=chans))
    b = run(s, [frame(p) for p in px])
    assert all(np.array_equal(x, y) for x, y in zip(a, b))  # same seed, same inputs, same frames
    c = run(s, [frame(px[0], reset=True)] + [frame(p) for p in px[1:]])  # reset replays the stream
    assert all(np.array_equal(x, y) for x, y in zip(a, c))
    other = run(r.open_session(spec(channels=chans)), [frame(pixels(24, 40, 9, chans))] + [frame(p) for p in px[1:]])
    assert not np.array_equal(other[0], a[0])
    r.close()


def test_prompt_change_takes_effect(ckpt):
    from bridge.styles import STYLES

    r = GeneratorRenderer(str(ckpt), device="cpu")
    px = [pixels(24, 40, i) for i in range(4)]
    base = run(r.open_session(spec(prompt=STYLES["sunny"])), [frame(p) for p in px])
    s = r.open_session(spec(prompt=STYLES["sunny"]))
    changed = run(s, [frame(px[0]), frame(px[1], prompt=STYLES["night"]), frame(px[2]), frame(px[3])])
    assert np.array_equal(changed[0], base[0])
    assert not np.array_equal(changed[1], base[1])  # table prompts resolve at once
    # a prompt change never writes into the shared embedding table (a regression: it once did)
    again = run(r.open_session(spec(prompt=STYLES["sunny"])), [frame(p) for p in px])
    assert all(np.array_equal(x, y) for x, y in zip(again, base))
    r.close()


def test_bad_specs_are_refused(ckpt):
    r = GeneratorRenderer(str(ckpt), device="cpu")
    with pytest.raises(UnsupportedSpec):
        r.open_session(spec(fmt="rgb32"))
    with pytest.raises(UnsupportedSpec):
        r.open_session(spec(w=0))
    with pytest.raises(UnsupportedSpec):
        r.open_session(spec(steps=0))
    with pytest.raises(FileNotFoundError):
        GeneratorRenderer("/nonexistent/model.json", device="cpu")
    with pytest.raises(FileNotFoundError):
        GeneratorRenderer("huge", device="cpu")  # not a shipped size
    # a session keeps working after a refused one
    s = r.open_session(spec())
    run(s, [frame(pixels(24, 40))])
    r.close()


def test_bfloat16_option_matches_float32_and_bad_dtype_is_refused(ckpt):
    """--dtype bfloat16 (the default on CUDA) runs the same model in bf16: same frames up to bf16 rounding;
    fp32 stays the CPU default. An unknown precision is refused with UnsupportedSpec."""
    chans = ("color", "depth", "normals", "albedo", "material_id")
    px = [pixels(24, 40, i, chans) for i in range(3)]
    outs = {}
    for dt in ("float32", "bfloat16"):
        r = GeneratorRenderer(str(ckpt), device="cpu", seed=1, dtype=dt)
        assert r.describe()["dtype"] == dt and next(r.model.parameters()).dtype == getattr(torch, dt)
        outs[dt] = run(r.open_session(spec(channels=chans, fmt="rgb16f")), [frame(p) for p in px], "rgb16f")
        r.close()
    assert GeneratorRenderer(str(ckpt), device="cpu").describe()["dtype"] == "float32"
    for a, b in zip(outs["float32"], outs["bfloat16"]):
        err = np.abs(a.astype(np.float32) - b.astype(np.float32))
        assert err.mean() < 0.02 and err.max() < 0.25  # bf16 rounding, not a different picture
    with pytest.raises(UnsupportedSpec):
        GeneratorRenderer(str(ckpt), device="cpu", dtype="float16")
