"""The KV cache's sink refresh (`sink_every=N`, inference only): before every N-th frame (once the cache is steady)
the window's oldest frame becomes the sink and the sinks are masked for that one frame, and never otherwise;
`sink_every=0` is the shipped behaviour bit for bit; the renderer spec option `?sink_every=N` (and `?sinks=0`)
reaches the session's cache and bad values are refused with the option's name in the message."""
import numpy as np
import pytest
import torch

from bridge.backends import FrameInputs, SessionSpec, UnsupportedSpec
from bridge.channels import ACTION_DIM
from bridge.styles import STYLES
from neural_renderer.model.checkpoint import save_checkpoint
from neural_renderer.model.kv_cache import KVCache
from neural_renderer.serving.renderer import GeneratorRenderer
from _models import randomised


def fill(cache: KVCache, frame: int) -> None:
    """What a frame's forwards do to the cache: its K/V (here: the frame's index) into the current slot."""
    cache.k[:, :, :, -1] = float(frame)
    cache.v[:, :, :, -1] = -float(frame)


def stream(cache: KVCache, frames: int) -> tuple[list[int], list[list[float]], list[list[bool]]]:
    """Frames as the sampler runs them (refresh check, forwards, advance): the frames whose sinks were refreshed, and
    for every frame the frame index each slot holds and the mask it attended with."""
    refreshed, held, masks = [], [], []
    for m in range(frames):
        if cache.maybe_refresh():
            refreshed.append(m)
        fill(cache, m)
        held.append(cache.k[0, 0, 0, :, 0, 0].tolist())
        assert torch.equal(cache.v[0, 0, 0, :, 0, 0], -cache.k[0, 0, 0, :, 0, 0])
        masks.append(cache.valid.tolist())
        cache.advance()
    return refreshed, held, masks


def test_refresh_writes_the_oldest_window_frame_into_the_sink_every_n_frames():
    S, W, N = 1, 2, 8
    cache = KVCache(2, 1, 1, 3, W, S, head_dim=4, sink_every=N)
    refreshed, held, masks = stream(cache, 40)
    assert refreshed == [8, 16, 24, 32]  # every N-th frame once steady (frames > S + W), never otherwise
    steady, window_only = [True] * (S + W + 1), [False] * S + [True] * (W + 1)
    for m in range(S + W + 1, 40):
        sink, window = held[m][:S], held[m][S:S + W]
        assert window == [m - 2, m - 1]
        last = max([r for r in refreshed if r <= m], default=None)
        if last is None:
            assert sink == [0.0] and masks[m] == steady  # the run's first frame, as shipped
        elif last == m:  # the refreshing frame: the sink holds the frame leaving the window, masked this frame
            assert sink == [m - W] and masks[m] == window_only
        else:  # from the next frame on the new sink counts, at its true age W + 1 at first, never in the window
            assert sink == [last - W] and masks[m] == steady and sink[0] not in window
    cache.reset()
    assert stream(cache, 40)[0] == refreshed  # a reset starts the count over


def test_two_sinks_move_up_and_sink_every_zero_never_refreshes():
    cache = KVCache(1, 1, 1, 2, 1, 2, head_dim=4, sink_every=4)
    refreshed, held, _ = stream(cache, 13)
    assert refreshed == [4, 8, 12]
    assert held[4][:2] == [3.0, 0.0] and held[8][:2] == [7.0, 3.0] and held[12][:2] == [11.0, 7.0]
    plain = KVCache(1, 1, 1, 2, 1, 2, head_dim=4)
    refreshed, held, masks = stream(plain, 40)
    assert refreshed == [] and all(h[:2] == [0.0, 1.0] for h in held[3:]) and all(all(m) for m in masks[3:])
    assert stream(KVCache(1, 1, 1, 2, 1, 2, head_dim=4, sink_every=4, use_sinks=False), 13)[0] == []
    for bad in (-1, 1.5, True, "8"):
        with pytest.raises(ValueError, match="sink_every"):
            KVCache(1, 1, 1, 2, 1, 1, sink_every=bad)


def test_no_sinks_masks_the_sinks_on_every_frame():
    cache = KVCache(1, 1, 1, 2, 2, 1, head_dim=4, use_sinks=False)
    _, _, masks = stream(cache, 10)
    assert all(m[0] is False for m in masks) and masks[-1] == [False, True, True, True]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    m = randomised("hg-micro")  # window 1, sink 1: steady from frame 2
    return save_checkpoint(m.state_dict(), m.cfg, tmp_path_factory.mktemp("ck") / "hg-micro", dtype=torch.float32)


def engine(h, w, t):
    rng = np.random.default_rng(t)
    motion = np.zeros((h, w, 2), np.float16)
    motion[..., 0] = 1.0
    return {"color": rng.random((h, w, 3)).astype(np.float16), "depth": (1 + rng.random((h, w, 1)) * 50).astype(np.float16),
            "motion": motion, "disocclusion": np.zeros((h, w, 1), np.uint8)}


def frames_of(renderer, n, H=16, W=24):
    s = renderer.open_session(SessionSpec(W, H, {"color": "float16", "depth": "float16", "motion": "float16",
                                                 "disocclusion": "uint8"}, ACTION_DIM, "rgb16f", STYLES["winter"], None))
    out = []
    for t in range(n):
        o = np.zeros((H, W, 3), np.float16)
        s.render(FrameInputs(t, engine(H, W, t), {}, np.zeros(ACTION_DIM, np.float32), None, t == 0), o)
        out.append(o.astype(np.float32))
    return s, np.stack(out)


def test_spec_option_reaches_the_cache_and_zero_is_the_shipped_output(ckpt):
    plain, zero = GeneratorRenderer(str(ckpt), device="cpu"), GeneratorRenderer(f"{ckpt}?sink_every=0", device="cpu")
    every4 = GeneratorRenderer(f"{ckpt}?sink_every=4", device="cpu")
    assert plain.describe()["sink_every"] == 0 and every4.describe()["sink_every"] == 4
    assert every4.name.endswith("/sink-every=4") and plain.model.cfg.sink_every == 0
    _, a = frames_of(plain, 12)
    _, b = frames_of(zero, 12)
    s, c = frames_of(every4, 12)
    assert s.gen.cache.sink_every == 4
    np.testing.assert_array_equal(a, b)  # sink_every=0: bit for bit the shipped run
    np.testing.assert_array_equal(a[:4], c[:4])  # nothing changes before the first refresh (frame 4)
    assert np.abs(a[5:] - c[5:]).max() > 1e-3  # after it the sink is another frame
    _, d = frames_of(GeneratorRenderer(f"{ckpt}?sinks=0", device="cpu"), 12)
    np.testing.assert_array_equal(a[:2], d[:2])  # the sink first counts at frame 2 (window 1)
    assert np.abs(a[2:] - d[2:]).max() > 1e-3


@pytest.mark.parametrize("bad", ["?sink_every=-1", "?sink_every=1.5", "?sink_every=x", "?sink_every=", "?sink_every",
                                 "?sink_every=1e2", "?sinks=2"])
def test_bad_sink_options_are_refused_clearly(ckpt, bad):
    with pytest.raises(UnsupportedSpec, match="sink_every=N \\(an integer >= 0"):
        GeneratorRenderer(f"{ckpt}{bad}", device="cpu")
