"""Process-per-GPU render workers behind the one daemon (`neurender serve --gpus all|N|0,1`, or
`--workers N` for N processes on the backend's default device, e.g. CPU in tests).

The socket loop (bridge.server) talks to a WorkerPool through the same calls as the thread worker
(bridge.render_thread.RenderWorker: open/close/submit/cancel/stop and the `results` queue), so every state
check, reply and drop rule of the daemon stays where it is. What changes is where rendering happens:

* Processes. One worker process per device, started with the spawn method (never fork: the daemon has
  ZeroMQ threads, and CUDA cannot be forked). A GPU worker runs with CUDA_VISIBLE_DEVICES=<its GPU>
  (so its torch device is plain "cuda"), and every worker keeps NCCL's NVLink multicast off
  (MULTI_GPU_ENV). Each process builds its own Renderer from the backend spec and hosts the
  RendererSessions of the sessions placed on it.
* Placement. A new session goes to the ready worker with the least load: the sum of width*height of
  its open sessions, then its session count, then its index. A session never moves.
* Pixels never cross a pipe. A worker maps the session's sealed memory (bridge.shm.Segment) by its
  /proc path, after checking its name and seals (shm transport). For an inline session the pool makes a
  one-slot memory of its own: the waiting frame stays in its ZeroMQ frames, is copied into the slot when
  it is handed to the worker, and the image is copied out of the slot into the reply.
* Control is one multiprocessing Pipe per worker (both ends are our own processes, so pickle is fine).
  The daemon side keeps each session's waiting frame (newest frame wins, exactly as the thread worker)
  and hands a worker its next frame only when it answered the previous one: at most one frame in
  flight per worker, sessions on one worker take turns.
* Death. A reader thread per worker sees its pipe close (EOF) when the process dies. Each session on it
  gets Result("lost", value=the frame it was rendering or None); the daemon answers it with error
  `worker_lost` (the oldest unanswered frame carries its seq, a waiting one is listed in `dropped`),
  ends the session, and refuses its later frames with `worker_lost`. Sessions on other workers do not
  notice. The worker is restarted (at most `max_restarts` times per device) and takes new sessions once
  it is ready; until then new sessions go to the others. With no ready worker, `open` fails with
  `worker_lost`.

Pipe messages (tuples):
  daemon -> worker  ("open", sid, SessionSpec, shm_path, shm_name, SlotLayout)
                    ("frame", sid, slot, seq, constants, action, prompt, reset)
                    ("close", sid)   ("stop",)
  worker -> daemon  ("ready", renderer.describe(), pid) | ("failed", message)   (once, at start)
                    ("opened", sid, error)
                    ("frame", sid, seq, error, t_start, t_end, repaired)   (perf_counter: CLOCK_MONOTONIC
                                                  on Linux, the same clock in every process; repaired: how
                                                  many non-finite input values became 0)
  error: None or (kind, "Type: message") with kind "unsupported" | "error".
A worker maps only memory sealed against shrinking (shm.attach(sealed=True)): a client cannot make a
page vanish under it (SIGBUS).
"""
from __future__ import annotations

import logging
import multiprocessing as mp
import os
import queue
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from bridge import protocol as P
from bridge import shm
from bridge.backends import Renderer, RendererSession, SessionSpec, UnsupportedSpec
from bridge.gpu_env import MULTI_GPU_ENV
from bridge.channels import FINAL
from bridge.layout import SlotLayout
from bridge.render_thread import FrameJob, Result

log = logging.getLogger("neurender.bridge")

START_TIMEOUT_S = 300.0  # a model backend may load weights and compile at start
STOP_TIMEOUT_S = 5.0
MAX_RESTARTS = 3


# The error code of a session whose worker died. Not in bridge.protocol.ERROR_CODES: that table is
# protocol v1's frozen list, mirrored one-to-one by the Unity client's typed exceptions (a client given
# an unknown code raises its base error type). docs/protocol.md section 7 documents it.
WORKER_LOST = "worker_lost"
WORKER_LOST_WHEN = ("the render worker process hosting this session died; the session is gone (its files "
                    "unlinked, later frames get the same error): open a new one")


class WorkerLost(RuntimeError):
    """The render worker process that hosted a session died."""


class WorkerLostError(P.ProtocolError):
    """The `worker_lost` error reply (a ProtocolError with the pool's own code)."""

    def __init__(self, message: str, *, req: int | None = None, session: str | None = None,
                 seq: int | None = None):
        Exception.__init__(self, f"{WORKER_LOST}: {message}")
        self.code, self.message, self.req, self.session, self.seq = WORKER_LOST, message, req, session, seq


class WorkerStartError(RuntimeError):
    """A worker process could not create its renderer at daemon start."""


class WorkerRenderError(RuntimeError):
    """A renderer call failed inside a worker process; the message keeps the original type name."""


def parse_gpus(spec: str, visible: list[str]) -> list[str]:
    """`--gpus` -> GPU ids (CUDA_VISIBLE_DEVICES values). `visible`: the ids this machine shows.
    'all' = every visible one; 'N' = the first N; '0,1' (or '1,' for one) = exactly those ids (each
    visible, no repeats)."""
    spec = spec.strip()
    if spec == "all":
        if not visible:
            raise ValueError("--gpus all: no GPU is visible")
        return list(visible)
    if spec.isdigit():
        n = int(spec)
        if n == 0:
            raise ValueError("--gpus 0: N counts GPUs; to pin GPU 0 alone write --gpus 0,")
        if n > len(visible):
            raise ValueError(f"--gpus {n}: {len(visible)} GPU(s) visible")
        return list(visible[:n])
    ids = [p.strip() for p in spec.split(",") if p.strip()]
    if "," not in spec or not ids or not all(p.isdigit() for p in ids):
        raise ValueError(f"--gpus wants all, N (a count) or a comma list of GPU ids such as 0,1 or 1, ; got {spec!r}")
    if len(set(ids)) != len(ids):
        raise ValueError(f"--gpus {spec}: a GPU is listed twice")
    missing = [p for p in ids if p not in visible]
    if missing:
        raise ValueError(f"--gpus {spec}: GPU(s) {', '.join(missing)} not visible (visible: {', '.join(visible) or 'none'})")
    return ids


def visible_gpus() -> list[str]:
    """GPU ids a worker can be pinned to: CUDA_VISIBLE_DEVICES if set, else 0..count-1."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [p.strip() for p in env.split(",") if p.strip() and p.strip() != "-1"]
    try:
        import torch
        return [str(i) for i in range(torch.cuda.device_count())]
    except Exception:  # noqa: BLE001 - no torch or no driver: no GPU
        return []


@dataclass
class WorkerSpec:
    """How to start one worker: its environment on top of the daemon's, and its renderer options."""
    name: str  # "gpu0", "cpu1": for logs and describe()
    env: dict[str, str]
    options: dict


def worker_specs(options: dict, gpus: list[str] | None = None, workers: int | None = None) -> list[WorkerSpec]:
    """One spec per GPU id (CUDA_VISIBLE_DEVICES pinned, device 'cuda'), or `workers` on the given device."""
    if gpus:
        device = options.get("device")
        if device not in (None, "cuda"):
            raise ValueError(f"--gpus pins each worker to one GPU (its device is 'cuda'); --device {device} "
                             "contradicts it")
        return [WorkerSpec(f"gpu{g}", {**MULTI_GPU_ENV, "CUDA_VISIBLE_DEVICES": g}, {**options, "device": "cuda"})
                for g in gpus]
    if not workers or workers < 1:
        raise ValueError("a worker pool needs at least one worker")
    return [WorkerSpec(f"worker{i}", dict(MULTI_GPU_ENV), dict(options)) for i in range(workers)]


# ------------------------------------------------------------------------------------------------
# The worker process
# ------------------------------------------------------------------------------------------------
def _error_tuple(e: BaseException) -> tuple[str, str]:
    if isinstance(e, UnsupportedSpec):
        return ("unsupported", str(e))
    return ("error", f"{type(e).__name__}: {e}")


def worker_main(conn, backend: str, env: dict, options: dict, factory: Callable[..., Renderer]) -> None:
    """Entry point of a worker process: serve pipe messages until 'stop' or the daemon's end of the pipe
    closes (the daemon died: exit too, no orphans)."""
    os.environ.update(env)  # before the backend imports torch: CUDA_VISIBLE_DEVICES must be in place
    # Our own session: Ctrl-C, `timeout` or a group SIGTERM aimed at the daemon must not kill a worker
    # under it (that would read as a crash); the daemon stops us over the pipe, and its death closes it.
    os.setsid()
    from bridge.backends import FrameInputs
    try:
        renderer = factory(backend, **{k: v for k, v in options.items() if v is not None})
    except Exception as e:  # noqa: BLE001 - reported once, then the process ends
        conn.send(("failed", f"{type(e).__name__}: {e}"))
        return
    conn.send(("ready", renderer.describe(), os.getpid()))
    from bridge.repair import repair_non_finite
    sessions: dict[str, tuple[RendererSession, shm.SlotIO]] = {}  # sid -> (session, its mapped memory)
    try:
        while True:
            try:
                msg = conn.recv()
            except (EOFError, OSError):
                break
            op = msg[0]
            if op == "frame":
                _, sid, slot, seq, constants, action, prompt, reset = msg
                t0 = time.perf_counter()
                err, repaired = None, 0
                entry = sessions.get(sid)
                if entry is None:
                    err = ("error", "RuntimeError: session closed before its frame rendered")
                else:
                    rs, io = entry
                    try:  # zero-copy from and into the sealed memory (bridge.shm.SlotIO)
                        # the game's own frame (recordings) is no renderer input
                        pixels, repaired = repair_non_finite({n: v for n, v in io.read(slot).items() if n != FINAL.name})
                        rs.render(FrameInputs(seq, pixels, constants, action, prompt, reset), io.output(slot))
                    except Exception as e:  # noqa: BLE001 - a renderer_error reply; the session stays open
                        err = _error_tuple(e)
                conn.send(("frame", sid, seq, err, t0, time.perf_counter(), repaired))
            elif op == "open":
                _, sid, spec, path, name, layout = msg
                try:
                    io = shm.SlotIO(shm.attach(path, layout.size, name, sealed=True), layout)
                    sessions[sid] = (renderer.open_session(spec), io)
                    conn.send(("opened", sid, None))
                except Exception as e:  # noqa: BLE001
                    conn.send(("opened", sid, _error_tuple(e)))
            elif op == "close":
                entry = sessions.pop(msg[1], None)
                if entry is not None:
                    try:
                        entry[0].close()
                    except Exception:  # noqa: BLE001 - a failing close must not end the worker
                        pass
                # the views (and with them the mapping) go with the entry: never mmap.close() (shm.Segment)
            elif op == "stop":
                break
    finally:
        for rs, _ in sessions.values():
            try:
                rs.close()
            except Exception:  # noqa: BLE001
                pass
        try:
            renderer.close()
        except Exception:  # noqa: BLE001
            pass


# ------------------------------------------------------------------------------------------------
# The daemon's side
# ------------------------------------------------------------------------------------------------
@dataclass
class _Placed:
    spec: SessionSpec
    staging: shm.Segment | None  # inline sessions: the pool's one-slot memory
    layout: SlotLayout
    in_views: dict | None = None  # staging input views (inline)
    out_view: np.ndarray | None = None  # staging output view (inline)
    opened: bool = False


@dataclass
class _Worker:
    index: int
    spec: WorkerSpec
    proc: Any = None
    conn: Any = None
    pid: int | None = None
    describe: dict = field(default_factory=dict)
    ready: bool = False
    alive: bool = True
    inflight: FrameJob | None = None
    inflight_since: float = 0.0  # monotonic time the in-flight frame was handed over
    killed_why: str | None = None  # set when the pool killed it (render timeout)
    pending: "OrderedDict[str, FrameJob]" = field(default_factory=OrderedDict)
    sessions: dict = field(default_factory=dict)  # sid -> _Placed
    reader: threading.Thread | None = None

    def load(self) -> tuple[int, int, int]:
        return (sum(p.spec.width * p.spec.height for p in self.sessions.values()), len(self.sessions), self.index)


class PoolRenderer(Renderer):
    """What the daemon process holds in place of a model when workers render: only describe()."""

    def __init__(self, pool: "WorkerPool | None" = None):
        self.pool = pool

    def describe(self) -> dict:
        return self.pool.describe() if self.pool is not None else {"backend": "pool", "model": None, "steps": 0,
                                                                   "device": None}

    def open_session(self, spec: SessionSpec) -> RendererSession:
        raise RuntimeError("sessions of a worker pool are opened in the worker processes")


class WorkerPool:
    """N worker processes behind the RenderWorker interface (see the module docstring)."""

    def __init__(self, backend: str, specs: list[WorkerSpec], wake: Callable[[], None], shm_dir: Path,
                 factory: Callable[..., Renderer] | None = None, max_restarts: int = MAX_RESTARTS,
                 start_timeout: float = START_TIMEOUT_S, render_timeout: float | None = None):
        """render_timeout: kill (then restart) a worker whose frame takes longer than this many seconds
        (a hung GPU or renderer), so its sessions get `worker_lost` instead of silence. None: never.
        Leave room for a first frame that compiles or captures graphs."""
        from bridge.backends import create_renderer
        self.backend, self.specs, self.shm_dir = backend, specs, Path(shm_dir)
        self.factory = factory or create_renderer
        self.max_restarts, self.start_timeout, self.render_timeout = max_restarts, start_timeout, render_timeout
        self.results: "queue.SimpleQueue[Result]" = queue.SimpleQueue()
        self._wake_fn = wake
        self._wake_lock = threading.Lock()  # the daemon's wake socket is used by every reader thread
        self._lock = threading.RLock()
        self._ctx = mp.get_context("spawn")
        self._where: dict[str, _Worker] = {}  # sid -> the worker (object) hosting it, dead ones included
        self._stopping = False
        self.restarts = [0] * len(specs)
        self.deaths = [0] * len(specs)
        self.workers: list[_Worker] = [_Worker(i, s) for i, s in enumerate(specs)]
        try:
            for w in self.workers:
                self._spawn(w)
            for w in self.workers:
                self._await_ready(w)
        except BaseException:
            self.stop()
            raise
        for w in self.workers:
            self._start_reader(w)

    # -- processes --------------------------------------------------------------------------------
    def _spawn(self, w: _Worker) -> None:
        parent, child = self._ctx.Pipe(duplex=True)
        w.proc = self._ctx.Process(target=worker_main, name=f"neurender-worker-{w.spec.name}",
                                   args=(child, self.backend, w.spec.env, w.spec.options, self.factory),
                                   daemon=True)
        w.proc.start()
        child.close()
        w.conn = parent

    def _await_ready(self, w: _Worker) -> None:
        if not w.conn.poll(self.start_timeout):
            raise WorkerStartError(f"render worker {w.spec.name} did not start within {self.start_timeout:.0f} s")
        try:
            msg = w.conn.recv()
        except (EOFError, OSError):
            w.proc.join(2)
            raise WorkerStartError(f"render worker {w.spec.name} exited at start (exit code "
                                   f"{w.proc.exitcode})") from None
        if msg[0] == "failed":
            raise WorkerStartError(f"render worker {w.spec.name}: {msg[1]}")
        _, w.describe, w.pid = msg
        w.ready = True

    def _start_reader(self, w: _Worker) -> None:
        w.reader = threading.Thread(target=self._read, args=(w,), name=f"pool-reader-{w.spec.name}", daemon=True)
        w.reader.start()

    def _restart(self, index: int) -> None:
        """Called on the dead worker's reader thread: a fresh process in its place (new sessions avoid it
        until it is ready)."""
        if self.restarts[index] >= self.max_restarts:
            log.error("render worker %s died %d times: not restarted again", self.specs[index].name,
                      self.deaths[index])
            return
        self.restarts[index] += 1
        w = _Worker(index, self.specs[index])
        with self._lock:
            if self._stopping:
                return
            self.workers[index] = w
            self._spawn(w)
        try:
            self._await_ready(w)
        except (WorkerStartError, OSError, EOFError) as e:  # OSError: the daemon stopped meanwhile
            log.error("restart of render worker %s failed: %s", w.spec.name, e)
            with self._lock:
                w.alive = False
            return
        with self._lock:
            if self._stopping:
                return
            log.info("render worker %s restarted (pid %s)", w.spec.name, w.pid)
        self._start_reader(w)

    # -- results ------------------------------------------------------------------------------------
    def _post(self, result: Result) -> None:
        self.results.put(result)
        with self._wake_lock:
            self._wake_fn()

    def _read(self, w: _Worker) -> None:
        while True:
            if self.render_timeout and not self._wait_or_kill(w):
                continue
            try:
                msg = w.conn.recv()
            except (EOFError, OSError):
                break
            if msg[0] == "frame":
                self._on_frame(w, msg)
            elif msg[0] == "opened":
                self._on_opened(w, msg)
        if not self._stopping:
            self._on_death(w)

    def _wait_or_kill(self, w: _Worker) -> bool:
        """True when a message is ready; else kills the worker if its frame overran render_timeout
        (its death then reaches this reader as EOF)."""
        try:
            if w.conn.poll(min(0.5, self.render_timeout / 4)):
                return True
        except (EOFError, OSError):
            return True  # recv() reports it
        with self._lock:
            overrun = (w.inflight is not None and not self._stopping and w.killed_why is None
                       and time.monotonic() - w.inflight_since > self.render_timeout)
            if overrun:
                w.killed_why = f"killed: a frame took longer than {self.render_timeout:g} s"
                log.error("render worker %s (pid %s) %s", w.spec.name, w.pid, w.killed_why)
                w.proc.kill()
        return False

    def _on_frame(self, w: _Worker, msg) -> None:
        _, sid, seq, err, t_start, t_end, repaired = msg
        with self._lock:
            job, w.inflight = w.inflight, None
            placed = w.sessions.get(sid)
            if job is not None and placed is not None and placed.out_view is not None and err is None:
                job.out[...] = placed.out_view  # the reply's own array: the slot is reused at once
            self._dispatch(w)
        if job is None or job.session != sid or job.inputs.seq != seq:
            log.error("worker %s answered %s/%s, expected %s", w.spec.name, sid, seq,
                      None if job is None else (job.session, job.inputs.seq))
            return
        job.keepalive = None
        job.repaired = repaired
        error = None
        if err is not None:
            error = {"unsupported": UnsupportedSpec}.get(err[0], WorkerRenderError)(err[1])
        self._post(Result("frame", sid, value=job, error=error,
                          timings={"queue_ms": (t_start - job.t_recv) * 1e3, "render_ms": (t_end - t_start) * 1e3}))

    def _on_opened(self, w: _Worker, msg) -> None:
        _, sid, err = msg
        with self._lock:
            placed = w.sessions.get(sid)
            if placed is not None:
                if err is None:
                    placed.opened = True
                else:
                    self._forget(sid)
        error = None
        if err is not None:
            error = (UnsupportedSpec if err[0] == "unsupported" else WorkerRenderError)(err[1])
        self._post(Result("opened", sid, error=error))

    def _on_death(self, w: _Worker) -> None:
        w.proc.join(1)  # EOF on the pipe: the process is gone or going
        with self._lock:
            w.alive = w.ready = False
            self.deaths[w.index] += 1
            code = w.proc.exitcode
            why = WorkerLost(f"render worker {w.spec.name} (pid {w.pid}) died (exit code {code})"
                             + (f", {w.killed_why}" if w.killed_why else ""))
            log.error("%s; its %d session(s) are lost", why, len(w.sessions))
            lost = []
            for sid, placed in list(w.sessions.items()):
                if not placed.opened:
                    self._forget(sid)
                    lost.append(Result("opened", sid, error=why))
                else:
                    job = w.inflight if w.inflight is not None and w.inflight.session == sid else None
                    lost.append(Result("lost", sid, value=job, error=why))
            w.inflight = None
        try:
            w.conn.close()
        except OSError:
            pass
        for r in lost:
            self._post(r)
        self._restart(w.index)

    # -- called from the socket loop ---------------------------------------------------------------
    def open(self, session: str, spec: SessionSpec, segment: shm.Segment | None = None,
             layout: SlotLayout | None = None) -> None:
        """Place a new session; `segment`/`layout`: its shared memory (None: inline session)."""
        with self._lock:
            ready = [w for w in self.workers if w.ready]
            if not ready:
                self._post(Result("opened", session, error=WorkerLost("no render worker is running")))
                return
            w = min(ready, key=_Worker.load)
            placed = _Placed(spec, None, layout)
            if segment is None:
                try:
                    placed = self._staging(session, spec)
                except OSError as e:
                    self._post(Result("opened", session, error=e))
                    return
                segment, layout = placed.staging, placed.layout
            w.sessions[session] = placed
            self._where[session] = w
            self._send(w, ("open", session, spec, segment.path, segment.name, layout))

    def _staging(self, session: str, spec: SessionSpec) -> _Placed:
        layout = SlotLayout.build(spec.width, spec.height, spec.channels, spec.output_format, 1)
        # "<sid>0": 17 hex digits, never another session's 16
        seg = shm.Segment(shm.segment_name(os.getpid(), session + "0"), layout.size)
        return _Placed(spec, seg, layout, layout.input_views(seg.buf, 0), layout.output_view(seg.buf, 0))

    def close(self, session: str) -> None:
        with self._lock:
            w = self._where.get(session)
            if w is None:
                return
            w.pending.pop(session, None)
            self._forget(session)
            if w.alive:
                self._send(w, ("close", session))

    def _forget(self, session: str) -> None:
        w = self._where.pop(session, None)
        if w is None:
            return
        placed = w.sessions.pop(session, None)
        if placed is not None and placed.staging is not None:
            placed.in_views = placed.out_view = None
            placed.staging.close()

    def submit(self, job: FrameJob) -> FrameJob | None:
        """Queue a frame; returns the frame it replaced (now dropped). Same carry-over rule as
        RenderWorker.submit: a dropped frame's prompt change and reset pass to the frame replacing it."""
        with self._lock:
            w = self._where.get(job.session)
            if w is None:  # closed meanwhile: answered like the thread worker does
                self._post(Result("frame", job.session, value=job,
                                  error=RuntimeError("session closed before its frame rendered")))
                return None
            dropped = w.pending.pop(job.session, None)
            if dropped is not None:
                if job.inputs.prompt is None:
                    job.inputs.prompt = dropped.inputs.prompt
                job.inputs.reset = job.inputs.reset or dropped.inputs.reset
            w.pending[job.session] = job  # to the back: sessions on one worker take turns
            self._dispatch(w)
        return dropped

    def cancel(self, session: str) -> FrameJob | None:
        with self._lock:
            w = self._where.get(session)
            return None if w is None else w.pending.pop(session, None)

    def _dispatch(self, w: _Worker) -> None:
        """Hand the worker its next waiting frame if it has none in flight (caller holds the lock)."""
        if w.inflight is not None or not w.ready or not w.pending:
            return
        sid, job = w.pending.popitem(last=False)
        placed = w.sessions.get(sid)
        if placed is None:  # cannot happen (close() drops the waiting frame first); never hand it out
            log.error("waiting frame of unknown session %s dropped", sid)
            return
        slot = job.slot if job.slot is not None else 0
        if placed.in_views is not None:  # inline: stage the pixels, the waiting frame's ZeroMQ frames go
            for name, px in job.inputs.pixels.items():
                placed.in_views[name][...] = px
            job.keepalive = None
        w.inflight, w.inflight_since = job, time.monotonic()
        i = job.inputs
        self._send(w, ("frame", sid, slot, i.seq, i.constants, i.action, i.prompt, i.reset))

    def _send(self, w: _Worker, msg: tuple) -> None:
        try:
            w.conn.send(msg)
        except (OSError, ValueError):  # the process is gone: its reader thread reports the death
            pass

    # -- info and shutdown ---------------------------------------------------------------------------
    def describe(self) -> dict:
        with self._lock:
            first = next((w.describe for w in self.workers if w.describe), {})
            return {**first, "device": ",".join(f"{w.spec.name}:{w.describe.get('device')}" for w in self.workers),
                    "workers": len(self.workers)}

    def describe_session(self, session: str) -> dict:
        """The renderer block of one session's `opened`: its worker's describe() plus the worker index."""
        with self._lock:
            w = self._where.get(session)
            if w is None:
                return self.describe()
            return {**w.describe, "worker": w.index, "worker_name": w.spec.name}

    def info(self) -> list[dict]:
        with self._lock:
            return [{"index": w.index, "name": w.spec.name, "pid": w.pid, "ready": w.ready,
                     "sessions": len(w.sessions), "restarts": self.restarts[w.index], "deaths": self.deaths[w.index],
                     "device": w.describe.get("device"), "env": {k: w.spec.env[k] for k in sorted(w.spec.env)}}
                    for w in self.workers]

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        with self._lock:
            self._stopping = True
            workers = list(self.workers)
            for w in workers:
                if w.conn is not None and w.alive:
                    self._send(w, ("stop",))
        deadline = time.monotonic() + timeout
        for w in workers:
            if w.proc is None:
                continue
            w.proc.join(max(0.1, deadline - time.monotonic()))
            if w.proc.is_alive():
                w.proc.kill()
                w.proc.join(2)
            if w.conn is not None:
                try:
                    w.conn.close()
                except OSError:
                    pass
        for w in workers:
            if w.reader is not None and w.reader is not threading.current_thread():
                w.reader.join(2)
        with self._lock:
            for sid in list(self._where):
                self._forget(sid)
