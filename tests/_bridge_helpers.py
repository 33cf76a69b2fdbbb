"""Shared pieces of the bridge tests: an in-process daemon on inproc://, a renderer whose frames wait
for the test (deterministic dropping), and raw DEALER requests."""
from __future__ import annotations

import os
import threading
import time
from contextlib import contextmanager

import msgpack
import numpy as np
import zmq

from bridge import protocol as P
from bridge.backends import FrameInputs, Renderer, RendererSession, SessionSpec, UnsupportedSpec
from bridge.backends.passthrough import PassthroughRenderer
from bridge.server import Daemon, DaemonConfig


class GatedRenderer(Renderer):
    """Passthrough whose render() blocks until the test opens the gate; records what it rendered."""

    def __init__(self):
        self.inner = PassthroughRenderer()
        self.gate = threading.Event()
        self.gate.set()
        self.started = threading.Event()  # set when a render begins
        self.rendered: list[tuple[str, int]] = []
        self.events: list[tuple[int, str | None, bool]] = []  # (seq, prompt, reset) of each rendered frame
        self.fail_seqs: set[int] = set()
        self.closed_sessions = 0

    def describe(self) -> dict:
        return {"backend": "gated-test", "model": None, "steps": 0, "device": "cpu"}

    def open_session(self, spec: SessionSpec) -> RendererSession:
        if "material_id" in spec.channels and len(spec.channels) == 1:
            raise UnsupportedSpec("test renderer refuses a material-id-only session")
        outer = self
        inner = self.inner.open_session(spec)

        class S(RendererSession):
            def render(self, frame: FrameInputs, out: np.ndarray) -> None:
                outer.started.set()
                assert outer.gate.wait(10), "test never opened the gate"
                if frame.seq in outer.fail_seqs:
                    raise RuntimeError(f"planned failure at seq {frame.seq}")
                inner.render(frame, out)
                outer.rendered.append((id(self), frame.seq))
                outer.events.append((frame.seq, frame.prompt, frame.reset))

            def close(self) -> None:
                outer.closed_sessions += 1

        return S()


@contextmanager
def inproc_daemon(renderer: Renderer | None = None, **config):
    """A Daemon serving inproc://bridge-test on a thread; yields (daemon, context)."""
    ctx = zmq.Context()
    cfg = DaemonConfig(ipc_endpoint=f"inproc://bridge-test-{id(ctx)}", **config)
    d = Daemon(renderer or PassthroughRenderer(), cfg, context=ctx)
    with serving_on_thread(d, ctx):
        yield d, ctx


@contextmanager
def serving_on_thread(d: Daemon, ctx: zmq.Context, join_s: float = 10):
    """Run d.serve_forever on a thread; on exit stop it, check the loop ended, terminate ctx."""
    t = threading.Thread(target=d.serve_forever, daemon=True)
    t.start()
    try:
        yield
    finally:
        d.stop()
        t.join(join_s)
        assert not t.is_alive(), "daemon loop did not stop"
        ctx.term()


class Raw:
    """A bare DEALER speaking the wire format by hand."""

    def __init__(self, ctx: zmq.Context, endpoint: str):
        self.sock = ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(endpoint)
        self.notices: list[dict] = []  # session_closed / progress messages request() stepped over

    def send(self, *frames) -> None:
        self.sock.send_multipart(list(frames))

    def send_msg(self, extra=(), **fields) -> None:
        self.send(msgpack.packb({"v": 1, **fields}), *extra)

    def recv(self, timeout: float = 5.0, progress: bool = False) -> tuple[dict, list]:
        """The next message; `progress` notices (a slow open or frame) are kept in self.notices unless
        progress=True."""
        deadline = time.monotonic() + timeout
        while True:
            assert self.sock.poll(max(0, int((deadline - time.monotonic()) * 1000))), "no reply from the daemon"
            frames = self.sock.recv_multipart()
            m = msgpack.unpackb(frames[0])
            if progress or m.get("type") != "progress":
                return m, frames[1:]
            self.notices.append(m)

    def silent(self, timeout: float = 0.3) -> bool:
        return not self.sock.poll(int(timeout * 1000))

    def request(self, extra=(), **fields) -> dict:
        """Send and return the reply; notices the daemon sends on its own (session_closed, progress)
        that arrive first are kept in self.notices."""
        self.send_msg(extra, **fields)
        while (m := self.recv()[0])["type"] in ("session_closed", "progress"):
            self.notices.append(m)
        return m

    def open(self, width=8, height=4, channels=None, transport="shm", output_format="rgb8", **more) -> dict:
        return self.request(type="open", req=1, width=width, height=height,
                            channels=channels or {"color": "float16"}, action_dim=9, output_format=output_format,
                            transport=transport, **more)

    def close(self) -> None:
        self.sock.close(0)


def wait_until(cond, timeout: float, step: float = 0.02) -> float:
    """Seconds until cond() held; raises AssertionError after timeout."""
    t0 = time.monotonic()
    while not cond():
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(step)
    return time.monotonic() - t0


def session_memory_exists(opened: dict) -> bool:
    """Whether the daemon still holds the session's memory: its shm_path (/proc/<pid>/fd/<n>) leads to the
    memfd named after the session. Only existence of the path would not do: the fd number is reused."""
    pid = opened["shm_path"].split("/")[2]
    try:
        return os.readlink(opened["shm_path"]) == f"/memfd:neurender-{pid}-{opened['session']} (deleted)"
    except FileNotFoundError:
        return False


def expected_rgb8(color: np.ndarray) -> np.ndarray:
    """What passthrough returns for a float color: clip, scale, round half up (fp32 reference)."""
    return (np.clip(color.astype(np.float32), 0, 1) * 255.0 + 0.5).astype(np.uint8)


P_ERRORS = P.ERROR_CODES
