"""The render worker: one thread that owns the Renderer and runs every call into it, so the socket loop
never blocks on rendering. Sessions hand it frames; per session at most one frame waits while another
renders, and a newer frame replaces the waiting one (newest frame wins).

Turns are fair in render time, not in frames (start-time fair queueing): the waiting session that has
used the least render time goes next, so a session of cheap frames is not made to wait behind every
frame of an expensive one (a 40-step session used to stretch another's 0.2 s frames to 2.5 s). A
session is never more than LAG_S behind the virtual clock (the used time of the frame last started),
so a new or idle one gets no long backlog of turns over the others. And when a session that is behind
has just had a frame rendered, the thread waits up to ANTICIPATE_S for its next one (the client's
round trip) before starting a frame of a session that is ahead.

Shared-memory frames are rendered from the session's sealed memory and into it, zero-copy
(bridge.shm.SlotIO), and non-finite pixels are repaired before the renderer sees them (bridge.repair).

Many sessions, one forward. A backend may offer `render_batch(items)` (bridge.backends) and give its
sessions a `batch_key()`. When the fair choice above picks a session's frame, every other frame waiting at
that instant whose session has the same key (for the generator: the same model, frame size and step count)
goes with it into one `render_batch` call (a batch of one takes the plain `render` path). Each member is
charged its share (batch time / members) of render time, so sessions of another size, which never share a
batch with them, still get their fair turns against the group.

The coalescing window. Games that tick together submit within a millisecond or so of each other: the first
frame to arrive would start alone and the others would go as a second batch, one whole forward later, though
on a GPU a batch costs little more than one frame. So before starting the picked frame the thread may hold it
for its *in-step partners*: sessions of the same key with no frame queued whose next frame is due
(bridge.arrivals: their last arrival plus the median of their recent gaps) within `batch_wait` of now, either
side (a partner a little late is still coming). It waits on its condition (no spinning) and starts the moment every in-step partner's frame is queued,
or when any waiting frame, of this key or another, would be held longer than `batch_wait` in all: no frame is
ever held more than `batch_wait` by these waits (the frame_done timing `batch_wait_ms` says how long it was).
Learned from arrival times alone, so clients need not cooperate. What follows:
- a session with no partner of its key, or whose partners are not due, never waits: it starts its frame
  exactly when it would have without batching;
- a partner that stops sending stops being due `batch_wait` after its next frame was expected: it costs the
  others at most `batch_wait` on a frame or two, then nothing;
- any frame, of the group or of another key, starts at most `batch_wait` later than its turn in the fair
  order would have let it; every look recomputes the fair choice, so a frame of another key that becomes it
  during a wait goes first (and holds for its own partners only within what is left of the bound); opens,
  closes and stop are handled at once;
- `batch_wait` 0 (`neurender serve --batch-wait-ms 0`) never waits: batches are what is queued at the pick.
BATCH_WAIT_S, the default, is 2 ms: frames of clients that tick together on one host reach the render thread
within about a millisecond (the socket loop takes each in ~0.1-0.2 ms, the bridge's overhead in
benchmarks/RESULTS.md, and hands the GIL over within 0.5 ms), so 2 ms catches them with room for jitter; it is
an eighth of a 60 frames/s period, small against the whole forward a second batch would cost (several ms for
the base model on a GPU), and a partner that does not come costs a frame little of a 16 ms latency budget.
Where a batch saves little over its frames one by one (a compute-bound CPU), the wait buys little: serve with 0.

The socket loop only talks to it through `open/close/submit/cancel` and the `results` queue, so a
process-per-GPU worker pool (bridge.worker_pool) can replace this thread behind the same four calls.
"""
from __future__ import annotations

import queue
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from bridge.arrivals import Arrivals
from bridge.backends import FrameInputs, Renderer, RendererSession, SessionSpec
from bridge.channels import FINAL
from bridge.repair import repair_non_finite


LAG_S = 0.25  # render seconds a session may be behind the others (a burst of cheap frames)
ANTICIPATE_S = 0.01  # at most this long (and never longer than its last frame took) for a session's next frame
BATCH_WAIT_S = 0.002  # the coalescing window's default bound (module docstring: why 2 ms)


@dataclass
class FrameJob:
    session: str
    slot: int | None
    inputs: FrameInputs
    out: np.ndarray
    t_recv: float  # perf_counter when the socket loop received it
    keepalive: Any = None  # inline pixel frames: kept referenced until rendered
    io: Any = None  # shm: the session's bridge.shm.SlotIO (pixels are read from it on the render thread)
    repaired: int = 0  # non-finite input values replaced by 0
    held_mark: float = 0.0  # the worker's held-for-partners total when it was queued (its own hold = now - this)


@dataclass
class Result:
    """What the worker hands back: kind is 'opened', 'frame' or 'closed'."""
    kind: str
    session: str
    value: Any = None  # RendererSession for 'opened', FrameJob for 'frame'
    error: BaseException | None = None
    timings: dict = field(default_factory=dict)


class RenderWorker:
    def __init__(self, renderer: Renderer, wake: Callable[[], None], batch_wait: float = BATCH_WAIT_S):
        self.renderer = renderer
        self.batch_wait = max(0.0, batch_wait)  # seconds; 0: never hold a frame for batch partners
        self.results: "queue.SimpleQueue[Result]" = queue.SimpleQueue()
        self._wake = wake  # called after each result so the socket loop polls `results`
        self._cv = threading.Condition()
        self._control: deque = deque()  # ('open', sid, spec) | ('close', sid, RendererSession)
        self._pending: "OrderedDict[str, FrameJob]" = OrderedDict()  # session -> waiting frame
        self._sessions: dict[str, RendererSession] = {}
        self._keys: dict[str, Any] = {}  # session -> its batch key (absent: renders alone)
        self._render_batch = getattr(renderer, "render_batch", None)
        self._used: dict[str, float] = {}  # session -> render seconds (virtual time) while it has frames
        self._vclock = 0.0
        self._last: tuple | None = None  # (session of the frame that just ended, anticipate until)
        self._arrivals = Arrivals()  # when each session's next frame is due
        self._held = 0.0  # seconds the thread has held frames for batch partners, ever
        self._holding_since: float | None = None  # perf_counter the hold in progress began
        self.current: tuple | None = None  # (op, session, seq, perf_counter at start): read by progress
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="render-worker", daemon=True)
        self._thread.start()

    # -- called from the socket loop ----------------------------------------------------------
    def open(self, session: str, spec: SessionSpec) -> None:
        with self._cv:
            self._control.append(("open", session, spec))
            self._cv.notify()

    def close(self, session: str) -> None:
        with self._cv:
            self._pending.pop(session, None)
            self._control.append(("close", session, None))
            self._cv.notify()

    def submit(self, job: FrameJob) -> FrameJob | None:
        """Queue a frame; returns the frame it replaced (now dropped), if any. A dropped frame's prompt
        change and reset flag carry over to the frame replacing it: they are events, not per-frame
        state, and must not vanish with the frame."""
        with self._cv:
            dropped = self._pending.pop(job.session, None)
            if dropped is not None:
                if job.inputs.prompt is None:
                    job.inputs.prompt = dropped.inputs.prompt
                job.inputs.reset = job.inputs.reset or dropped.inputs.reset
            else:  # at most LAG_S behind the clock: a new or idle session gets no long backlog of turns
                self._used[job.session] = max(self._used.get(job.session, self._vclock), self._vclock - LAG_S)
            self._arrivals.arrived(job.session, job.t_recv)
            job.held_mark = self._held_total(time.perf_counter())
            self._pending[job.session] = job
            self._cv.notify()
        return dropped

    def cancel(self, session: str) -> FrameJob | None:
        with self._cv:
            return self._pending.pop(session, None)

    def stop(self, timeout: float = 5.0) -> None:
        with self._cv:
            self._stop = True
            self._cv.notify()
        self._thread.join(timeout)

    # -- the worker thread ----------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._cv:
                while not (self._stop or self._control or self._pending):
                    self._cv.wait()
                if self._stop:
                    break
                if self._control:
                    op, sid, arg = self._control.popleft()
                    job = None
                else:
                    if self._anticipating():
                        continue
                    op = "frame"
                    sid = min(self._pending, key=lambda k: self._used.get(k, 0.0))
                    if self._coalescing(sid):
                        continue
                    job = self._pending.pop(sid)
                    self._vclock = self._used.get(sid, 0.0)
                    jobs = [job, *self._companions(sid)]
            if op == "open":
                self._do_open(sid, arg)
            elif op == "close":
                with self._cv:
                    self._used.pop(sid, None)
                    self._keys.pop(sid, None)
                    self._arrivals.forget(sid)
                rs = self._sessions.pop(sid, None)
                if rs is not None:
                    try:
                        rs.close()
                    except Exception:  # noqa: BLE001 - a failing close must not kill the worker
                        pass
            elif len(jobs) == 1:
                self._do_frame(job)
            else:
                self._do_batch(jobs)
            # drop the frames' views of session memory before waiting: a mapping (and the memfd its mmap holds)
            # lives as long as any view, so a view kept while idle would outlive its session's end
            job = jobs = None
        for rs in self._sessions.values():
            try:
                rs.close()
            except Exception:  # noqa: BLE001
                pass
        self._sessions.clear()

    def _companions(self, sid: str) -> list[FrameJob]:
        """The frames waiting right now whose sessions share `sid`'s batch key, taken off the queue (caller
        holds the lock). Only what is queued at this instant: any wait for more came before (_coalescing)."""
        key = self._keys.get(sid)
        if key is None or self._render_batch is None:
            return []
        mates = [k for k in self._pending if k != sid and self._keys.get(k) == key]
        return [self._pending.pop(k) for k in mates]

    def _coalescing(self, sid: str) -> bool:
        """Hold the picked frame a moment for its in-step partners (module docstring; caller holds the lock;
        True: waited, look again). Every look recomputes who is still due and how much of the bound is left,
        so the wait ends as soon as the last partner's frame is queued and never holds any frame longer
        than `batch_wait` in all."""
        key = self._keys.get(sid)
        if self.batch_wait <= 0 or key is None or self._render_batch is None:
            return False
        now = time.perf_counter()
        left = self.batch_wait - max(self._held - j.held_mark for j in self._pending.values())
        if left <= 0 or not self._due_partners(sid, key, now):
            return False
        self._holding_since = now
        try:
            self._cv.wait(left)
        finally:
            self._held += time.perf_counter() - now
            self._holding_since = None
        return True

    def _due_partners(self, sid: str, key: Any, now: float) -> list[str]:
        """Sessions of `key` other than `sid` with no frame queued whose next frame is due within
        `batch_wait` of now, either side (caller holds the lock)."""
        out = []
        for p, k in self._keys.items():
            if k != key or p == sid or p in self._pending:
                continue
            due = self._arrivals.due(p)
            if due is not None and abs(due - now) <= self.batch_wait:
                out.append(p)
        return out

    def _held_total(self, now: float) -> float:
        """Seconds held for partners so far, counting the hold in progress up to `now` (caller holds the lock)."""
        return self._held + (now - self._holding_since if self._holding_since is not None else 0.0)

    def _wait_timing(self, job: FrameJob) -> dict:
        """`batch_wait_ms`: how long the thread held frames for batch partners while this one was queued;
        absent where it never holds (window off, a backend without render_batch, a process worker)."""
        if self.batch_wait <= 0 or self._render_batch is None:
            return {}
        return {"batch_wait_ms": (self._held - job.held_mark) * 1e3}

    def _anticipating(self) -> bool:
        """Hold the thread a moment for the session whose frame just finished, when it is behind the
        waiting ones in render time (caller holds the lock; True: waited, look again). A client that
        waits for each result has no frame waiting at the instant its last one ends: without this, a
        cheap session would get one frame per frame of an expensive one however fair the choice."""
        last = self._last
        if last is None or last[0] in self._pending or last[0] not in self._used:
            return False
        sid, deadline = last
        if time.perf_counter() >= deadline or self._used[sid] >= min(self._used.get(k, 0.0) for k in self._pending):
            self._last = None
            return False
        self._cv.wait(deadline - time.perf_counter())
        return True

    def _post(self, result: Result) -> None:
        self.results.put(result)
        self._wake()

    def _do_open(self, sid: str, spec: SessionSpec) -> None:
        self.current = ("open", sid, None, time.perf_counter())
        try:
            rs = self.renderer.open_session(spec)
        except Exception as e:  # noqa: BLE001 - reported to the client as a typed error
            self._post(Result("opened", sid, error=e))
            return
        finally:
            self.current = None
        self._sessions[sid] = rs
        try:
            key = rs.batch_key() if self._render_batch is not None else None
        except Exception:  # noqa: BLE001 - a session whose key fails renders alone
            key = None
        if key is not None:
            self._keys[sid] = key
        self._post(Result("opened", sid, value=rs))

    def _inputs(self, job: FrameJob) -> None:
        """The frame's pixels as the renderer sees them: read from the session's slot (shm), repaired."""
        if job.io is not None:
            pixels = job.io.read(job.slot)  # the game's own frame (recordings) is no renderer input
            job.inputs.pixels, job.out = {n: v for n, v in pixels.items() if n != FINAL.name}, job.io.output(job.slot)
        job.inputs.pixels, job.repaired = repair_non_finite(job.inputs.pixels)

    def _do_batch(self, jobs: list[FrameJob]) -> None:
        """Frames of sessions sharing a batch key, in one `render_batch` call; each gets its own result."""
        t0 = time.perf_counter()
        self.current = ("frame", jobs[0].session, jobs[0].inputs.seq, t0)
        errors: dict[int, BaseException] = {}
        items, placed = [], []
        for n, job in enumerate(jobs):
            rs = self._sessions.get(job.session)
            if rs is None:
                errors[n] = RuntimeError("session closed before its frame rendered")
                continue
            try:
                self._inputs(job)
            except Exception as e:  # noqa: BLE001 - that frame's error reply
                errors[n] = e
                continue
            items.append((rs, job.inputs, job.out))
            placed.append(n)
        if items:
            try:
                for n, e in zip(placed, self._render_batch(items)):
                    if e is not None:
                        errors[n] = e
            except Exception as e:  # noqa: BLE001 - the whole call failed: each of its frames did
                for n in placed:
                    errors[n] = e
        t1 = time.perf_counter()
        self.current = None
        share = (t1 - t0) / len(jobs)
        with self._cv:
            for job in jobs:
                if job.session in self._used:
                    self._used[job.session] += share
            self._last = (jobs[0].session, time.perf_counter() + min(ANTICIPATE_S, share))
        for n, job in enumerate(jobs):
            job.keepalive = None
            job.io = None
            self._post(Result("frame", job.session, value=job, error=errors.get(n),
                              timings={"queue_ms": (t0 - job.t_recv) * 1e3, "render_ms": (t1 - t0) * 1e3,
                                       "batch": len(jobs), **self._wait_timing(job)}))

    def _do_frame(self, job: FrameJob) -> None:
        rs = self._sessions.get(job.session)
        t0 = time.perf_counter()
        self.current = ("frame", job.session, job.inputs.seq, t0)
        err = None
        if rs is None:
            err = RuntimeError("session closed before its frame rendered")
        else:
            try:
                self._inputs(job)
                rs.render(job.inputs, job.out)
            except Exception as e:  # noqa: BLE001 - becomes an error reply; session stays open
                err = e
        t1 = time.perf_counter()
        self.current = None
        with self._cv:
            if job.session in self._used:
                self._used[job.session] += t1 - t0
                self._last = (job.session, time.perf_counter() + min(ANTICIPATE_S, t1 - t0))
        job.keepalive = None
        job.io = None
        self._post(Result("frame", job.session, value=job, error=err,
                          timings={"queue_ms": (t0 - job.t_recv) * 1e3, "render_ms": (t1 - t0) * 1e3,
                                   **self._wait_timing(job)}))
