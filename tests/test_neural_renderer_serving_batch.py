"""Frames of several sessions as one batched forward (neural_renderer.serving.batch, the generator backend's
render_batch): every session gets the frames it gets alone, over several frames, with sessions at different
frame counts, caches, histories, prompts and sizes in the same call."""
import numpy as np
import pytest
import torch

from bridge.backends import FrameInputs, SessionSpec
from bridge.styles import STYLES
from neural_renderer.model.checkpoint import save_checkpoint
from neural_renderer.serving.renderer import GeneratorRenderer
from _models import randomised

CHANNELS = {"color": "float16", "depth": "float16", "motion": "float16", "disocclusion": "uint8"}


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    m = randomised("hg-micro")
    return save_checkpoint(m.state_dict(), m.cfg, tmp_path_factory.mktemp("ck") / "hg-micro", dtype=torch.float32)


def frame(h, w, who, t, **events):
    rng = np.random.default_rng(1000 * who + t)
    motion = np.zeros((h, w, 2), np.float16)
    motion[..., 0] = who % 3  # each session pans at its own speed: histories differ
    pixels = {"color": rng.random((h, w, 3)).astype(np.float16),
              "depth": (1 + rng.random((h, w, 1)) * 50).astype(np.float16),
              "motion": motion, "disocclusion": np.zeros((h, w, 1), np.uint8)}
    action = rng.standard_normal(9).astype(np.float32)
    return FrameInputs(t, pixels, {}, action, events.get("prompt"), events.get("reset", False))


# (height, width, prompt, frames rendered alone before the joint frames)
SESSIONS = [(24, 40, STYLES["winter"], 0), (24, 40, STYLES["sunny"], 5), (24, 40, STYLES["winter"], 2),
            (24, 40, STYLES["sunny"], 7), (16, 16, STYLES["winter"], 3)]
JOINT = 6


def run(ckpt, batched: bool, forwards: list | None = None, options: str = ""):
    """Every session's output frames (float32), the warm-up frames alone, then JOINT frames of all sessions
    through render_batch (batched) or one render each (alone). Session 1 changes prompt and session 2 is
    reset mid-way: the batch must follow each one's own events."""
    r = GeneratorRenderer(f"{ckpt}{options}", device="cpu", steps=2)
    if forwards is not None:  # count the batched forwards: the batch must really run as one
        inner = r.batcher.forward
        r.batcher.forward = lambda x, *a: (forwards.append(x.shape[0]), inner(x, *a))[1]
    sess = [r.open_session(SessionSpec(w, h, CHANNELS, 9, "rgb16f", p, None)) for h, w, p, _ in SESSIONS]
    outs = [[] for _ in SESSIONS]
    for who, ((h, w, _, warm), s) in enumerate(zip(SESSIONS, sess)):
        for t in range(warm):
            o = np.empty((h, w, 3), np.float16)
            s.render(frame(h, w, who, t), o)
            outs[who].append(o)
    for j in range(JOINT):
        items = []
        for who, ((h, w, _, warm), s) in enumerate(zip(SESSIONS, sess)):
            ev = {"prompt": STYLES["night"]} if (who, j) == (1, 2) else {"reset": True} if (who, j) == (2, 3) else {}
            items.append((s, frame(h, w, who, warm + j, **ev), np.empty((h, w, 3), np.float16)))
        if batched:
            assert r.render_batch(items) == [None] * len(items)
        else:
            for s, f, o in items:
                s.render(f, o)
        for who, (_, _, o) in enumerate(items):
            outs[who].append(o)
    return [np.stack(o).astype(np.float32) for o in outs]


def test_batched_frames_equal_frames_alone(ckpt):
    forwards = []
    alone = run(ckpt, batched=False)
    together = run(ckpt, batched=True, forwards=forwards)
    for who in range(len(SESSIONS)):
        assert together[who].shape == alone[who].shape == (SESSIONS[who][3] + JOINT, *SESSIONS[who][:2], 3)
        np.testing.assert_allclose(together[who], alone[who], atol=2e-3, rtol=0)  # float16 output: 1 ulp
        assert np.abs(np.diff(alone[who], axis=0)).max() > 1e-2  # frames move: a stale row would show
    # the 24x40 sessions that are steady (hg-micro: from their 3rd frame) share a forward, 2 per frame (2 steps);
    # the others run alone. Joint frame 0: sessions 1, 3; 1: 1, 2, 3; 2: 2, 3 (1 changed prompt, its cache
    # restarts); 3: 0, 3 (2 was reset); 4: 0, 3; 5: 0, 1, 3
    assert forwards == [2, 2, 3, 3, 2, 2, 2, 2, 2, 2, 3, 3]


def test_batched_frames_equal_frames_alone_with_sink_refresh(ckpt):
    """`sink_every=2`: sessions at odd and even frame counts are steady together but only some refresh their sink
    (and mask it) this frame; the batch keeps them apart (batch_key) and every one gets its own frames."""
    alone = run(ckpt, batched=False, options="?sink_every=2")
    together = run(ckpt, batched=True, options="?sink_every=2")
    plain = run(ckpt, batched=False)
    for who in range(len(SESSIONS)):
        np.testing.assert_allclose(together[who], alone[who], atol=2e-3, rtol=0)
    assert max(np.abs(a - p).max() for a, p in zip(alone, plain)) > 1e-2  # the refresh changed the frames


def test_batch_rows_are_independent_at_float_precision(ckpt):
    """Sampler level, no float16 output in between: the rows of one batch equal each sampler alone to
    float32 rounding, frame after frame, with caches at different fill levels."""
    from neural_renderer.model.checkpoint import load_model
    from neural_renderer.model.dit import PROMPT_DIM
    from neural_renderer.model.inputs import COND_CHANNELS
    from neural_renderer.serving.batch import BatchStepper, batch_key
    from neural_renderer.serving.stream import StreamingSampler

    model = load_model(ckpt)
    H, W = 16, 24
    g = torch.Generator().manual_seed(3)
    inputs = [[(torch.rand(1, COND_CHANNELS, H, W, generator=g), torch.randn(1, 9, generator=g),
                torch.randn(1, 2, H, W, generator=g), None) for _ in range(12)] for _ in range(3)]
    prompts = [torch.randn(PROMPT_DIM, generator=g) for _ in range(3)]

    def samplers():
        return [StreamingSampler(model, p, steps=2, seed=7 + i) for i, p in enumerate(prompts)]

    alone, ref = samplers(), []
    for i, s in enumerate(alone):
        ref.append([s.step(*inp) for inp in inputs[i]])
    stepper, together = BatchStepper(model, model.forward_frame, cuda_graph=False), samplers()
    start = [4, 6, 8]  # different cache fill and history: each runs its first frames alone
    for i, s in enumerate(together):
        for inp in inputs[i][:start[i]]:
            s.step(*inp)
    for j in range(4):
        prepared = [s.prepare(*inputs[i][start[i] + j]) for i, s in enumerate(together)]
        assert len({batch_key(s) for s in together}) == 1
        for i, y in enumerate(stepper.run(together, prepared)):
            torch.testing.assert_close(y, ref[i][start[i] + j], atol=1e-5, rtol=1e-5)
