"""The render thread's batches (bridge.render_thread): frames waiting at one instant whose sessions share a
batch key go to `render_batch` together, a session alone takes the plain `render` path, sessions of another
key never join and still get their fair share of render time."""
import threading
import time

import numpy as np

from bridge.backends import FrameInputs, Renderer, RendererSession, SessionSpec
from bridge.render_thread import FrameJob, RenderWorker

COST_S = 0.02  # every call, one frame or a batch, takes this long: the batch is where the time is saved


class Batching(Renderer):
    def __init__(self):
        self.calls: list[tuple[str, tuple]] = []  # ("render" | "batch", seqs by session name)

    def describe(self):
        return {"backend": "batching-test", "model": None, "steps": 0, "device": "cpu"}

    def open_session(self, spec: SessionSpec) -> RendererSession:
        outer = self

        class S(RendererSession):
            name = spec.prompt

            def batch_key(self):
                return (spec.width, spec.height)

            def render(self, frame, out):
                time.sleep(COST_S)
                outer.calls.append(("render", (self.name,)))
                out[...] = frame.seq

        return S()

    def render_batch(self, items):
        time.sleep(COST_S)
        self.calls.append(("batch", tuple(rs.name for rs, _, _ in items)))
        for _, frame, out in items:
            out[...] = frame.seq
        return [None] * len(items)


def spec(name, w):
    return SessionSpec(w, 4, {"color": "float16"}, 9, "rgb8", name, None)


def job(sid, seq):
    return FrameJob(sid, None, FrameInputs(seq, {}, {}, np.zeros(9, np.float32), None, False),
                    np.zeros((4, 8, 3), np.uint8), time.perf_counter())


def drive(worker, sessions: dict, seconds: float) -> dict:
    """Clients that send their next frame as soon as the last one is answered; -> session -> seqs answered."""
    got = {sid: [] for sid in sessions}
    for sid, w in sessions.items():
        worker.open(sid, spec(sid, w))
    opened = 0
    while opened < len(sessions):
        opened += worker.results.get(timeout=5).kind == "opened"
    for sid in sessions:
        worker.submit(job(sid, 0))
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        r = worker.results.get(timeout=5)
        assert r.error is None and r.value.out[0, 0, 0] == r.value.inputs.seq  # its own frame in its own out
        got[r.session].append(r.value.inputs.seq)
        worker.submit(job(r.session, r.value.inputs.seq + 1))
    return got


def test_same_key_frames_share_calls_and_the_other_key_gets_its_share():
    renderer = Batching()
    worker = RenderWorker(renderer, wake=lambda: None)
    try:
        got = drive(worker, {"a": 8, "b": 8, "c": 8, "other": 16}, seconds=1.5)
    finally:
        worker.stop()
    assert all(seqs == list(range(len(seqs))) for seqs in got.values())  # in order, none lost
    batches = [names for kind, names in renderer.calls if kind == "batch"]
    assert batches and all(set(b) <= {"a", "b", "c"} for b in batches)  # the other size never joins
    assert sum(len(b) == 3 for b in batches) >= 0.8 * len(batches)  # all three waiting: one call
    # fair in render time: each of a, b, c is charged a third of a call, `other` a whole one, so per call of
    # `other` the group gets about three; every session has used about the same render time
    used = {s: len(got[s]) / 3 for s in "abc"} | {"other": len(got["other"])}
    assert max(used.values()) / min(used.values()) < 1.5, got


def test_a_session_alone_renders_at_once_through_render():
    renderer = Batching()
    worker = RenderWorker(renderer, wake=lambda: None)
    try:
        got = drive(worker, {"a": 8}, seconds=0.3)
    finally:
        worker.stop()
    assert {kind for kind, _ in renderer.calls} == {"render"} and len(got["a"]) >= 5
