"""LiveScene's pipelined mode pairs each neural frame with the engine frame it was rendered from, against
a scripted stand-in session whose results arrive two frames late (the real daemon is covered by
test_demos_demo.py; here the arrival order must be controlled)."""
from __future__ import annotations

from collections import deque
from types import SimpleNamespace

import numpy as np
import pytest

from bridge.channels import ACTION_DIM, CHANNELS
from demos.live import DEMO_CHANNELS, LiveScene

W, H, LATE = 32, 24, 2


class LateSession:
    """Echoes the colour channel (like passthrough) as rgb16f, LATE submits after it was sent."""

    def __init__(self):
        self.slots = [{n: np.zeros((H, W, CHANNELS[n].components), d) for n, d in DEMO_CHANNELS.items()}
                      for _ in range(LATE + 2)]
        self.next_slot, self.seq = 0, 0
        self.queue: deque = deque()
        self.info = {"renderer": {"backend": "late-echo"}}

    def acquire_slot(self):
        k = self.next_slot
        self.next_slot = (k + 1) % len(self.slots)
        return k

    def input_views(self, slot):
        return self.slots[slot]

    def submit(self, slot, **kw):
        self.queue.append((self.seq, self.slots[slot]["color"].copy()))
        self.seq += 1
        return self.seq - 1

    def poll(self, timeout=0.0):
        if self.queue and (timeout is None or self.queue[0][0] <= self.seq - 1 - LATE):
            seq, color = self.queue.popleft()
            return SimpleNamespace(seq=seq, image=color, timings={"roundtrip_ms": 5.0}, dropped=[])
        return None

    def render(self, **kw):
        seq = self.submit(**kw)
        while True:
            r = self.poll(timeout=None)
            if r.seq == seq:
                return r

    def close(self):
        return []


@pytest.fixture(scope="module")
def ctx():
    from demos.gl import create_context

    c = create_context(headless=True)
    yield c
    c.release()


@pytest.mark.parametrize("pipelined", [False, True])
def test_neural_frame_is_paired_with_its_own_engine_frame(ctx, pipelined):
    session = LateSession()
    client = SimpleNamespace(open_session=lambda *a, **k: session)
    scene = LiveScene(ctx, client, seed=3, width=W, height=H, style="sunny", ssaa=1, pipelined=pipelined)
    turn = np.zeros(ACTION_DIM, np.float32)
    turn[-2] = 6.0  # mouse_dx: every engine frame differs from the one before
    frames = [scene.step(turn, 1 / 30, with_reference=True) for _ in range(8)]
    latest = scene.engine.read()["color"]  # the game's newest engine frame
    scene.close()
    for f in frames:
        np.testing.assert_allclose(f.neural, f.engine_color, atol=2e-3)  # float16 echo of the same frame
    lags = [f.lag for f in frames]
    if pipelined:
        assert lags[0] == 0 and lags[-4:] == [LATE] * 4, lags
        assert not np.allclose(frames[-1].neural, latest, atol=1e-2), "the shown frame is an older one"
        fresh = [f for f in frames if np.isfinite(f.roundtrip_ms)]
        assert len(fresh) == len(scene.stats.roundtrip)
    else:
        assert lags == [0] * 8
