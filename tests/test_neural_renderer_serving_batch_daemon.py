"""Batching through a real daemon (ZeroMQ sockets, sealed shared memory, the render thread): three clients
of one frame size and one of another, each on its own connection and thread, all get every frame in order,
each equal to what the generator renders for that session alone; the same-size frames really shared forwards."""
import threading

import numpy as np
import pytest
import torch

from bridge.backends import FrameInputs, SessionSpec
from bridge.client import Client
from bridge.styles import STYLES
from neural_renderer.model.checkpoint import save_checkpoint
from neural_renderer.serving.renderer import GeneratorRenderer
from _bridge_helpers import inproc_daemon
from _models import randomised

CHANNELS = {"color": "float16", "depth": "float16", "motion": "float16", "disocclusion": "uint8"}
CLIENTS = [(24, 40, "winter"), (24, 40, "sunny"), (24, 40, "night"), (16, 32, "winter")]  # (H, W, look)
FRAMES = 10


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    m = randomised("hg-micro")
    return save_checkpoint(m.state_dict(), m.cfg, tmp_path_factory.mktemp("ck") / "hg-micro", dtype=torch.float32)


def engine(h, w, who, t):
    rng = np.random.default_rng(100 * who + t)
    motion = np.zeros((h, w, 2), np.float16)
    motion[..., 1] = who  # each client's camera moves its own way: histories differ
    return ({"color": rng.random((h, w, 3)).astype(np.float16),
             "depth": (1 + rng.random((h, w, 1)) * 50).astype(np.float16),
             "motion": motion, "disocclusion": np.zeros((h, w, 1), np.uint8)},
            rng.standard_normal(9).astype(np.float32))


def alone(ckpt, who):
    """The session's frames rendered by the generator backend on its own, one render() each."""
    h, w, look = CLIENTS[who]
    s = GeneratorRenderer(str(ckpt), device="cpu").open_session(SessionSpec(w, h, CHANNELS, 9, "rgb16f", STYLES[look], None))
    out = []
    for t in range(FRAMES):
        pixels, action = engine(h, w, who, t)
        o = np.empty((h, w, 3), np.float16)
        s.render(FrameInputs(t, pixels, {}, action, None, False), o)
        out.append(o.astype(np.float32))
    return out


def test_sessions_of_one_size_share_forwards_and_get_their_own_frames(ckpt):
    got = [[] for _ in CLIENTS]
    batches = [[] for _ in CLIENTS]
    errors = []
    with inproc_daemon(GeneratorRenderer(str(ckpt), device="cpu")) as (daemon, ctx):
        start = threading.Barrier(len(CLIENTS))

        def play(who):
            h, w, look = CLIENTS[who]
            try:
                with Client(daemon.endpoints[0], context=ctx, timeout=60) as c:
                    s = c.open_session(w, h, CHANNELS, prompt=STYLES[look], output_format="rgb16f")
                    start.wait(60)
                    for t in range(FRAMES):
                        pixels, action = engine(h, w, who, t)
                        r = s.render(pixels, action=action)
                        got[who].append((r.seq, r.dropped, r.image.astype(np.float32)))
                        batches[who].append(r.timings.get("batch", 1))
            except Exception as e:  # noqa: BLE001 - reported below, in the test's thread
                errors.append(e)

        threads = [threading.Thread(target=play, args=(k,)) for k in range(len(CLIENTS))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
    assert not errors, errors
    for who in range(len(CLIENTS)):
        ref = alone(ckpt, who)
        assert [seq for seq, _, _ in got[who]] == list(range(FRAMES))  # every frame, in order, none dropped
        assert all(dropped == [] for _, dropped, _ in got[who])
        for t, (_, _, img) in enumerate(got[who]):
            np.testing.assert_allclose(img, ref[t], atol=2e-3, rtol=0, err_msg=f"client {who} frame {t}")
    assert max(batches[3]) == 1  # the other size never joins a batch
    assert max(max(b) for b in batches[:3]) >= 2  # the same-size clients did share forwards
