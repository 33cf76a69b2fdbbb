"""The daemon: ROUTER sockets, sessions and their shared-memory files, liveness, replies.

One thread (the socket loop) owns every socket and every session; rendering happens on the render
worker (bridge.render_thread), which hands results back through a queue plus an inproc wake-up socket.
Protocol decoding and validation live in bridge.protocol; this module holds the state checks
(sessions, slots, seqs, sizes) and the sockets.

A session belongs to the connection that opened it: its owner is (socket, routing id, the
connection's fd, the connection's authenticated CURVE key). A routing id alone is chosen by the peer
(ZMQ_ROUTING_ID), so a second socket could otherwise claim a disconnected client's live session. A
socket monitor reports each disconnect with its fd, and the sessions of that connection end there.
"""
from __future__ import annotations

import ipaddress
import logging
import os
import queue
import secrets
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import zmq
from zmq.utils.monitor import recv_monitor_message

from bridge import protocol as P
from bridge import shm
from bridge.backends import FrameInputs, Renderer, SessionSpec, UnsupportedSpec
from bridge.channels import FINAL
from bridge.layout import SlotLayout
from bridge.recorder import Recording, default_recordings_dir
from bridge.render_thread import BATCH_WAIT_S, FrameJob, RenderWorker
from bridge.session import ServerSession
from bridge.worker_pool import WorkerLost, WorkerLostError

log = logging.getLogger("neurender.bridge")

HEARTBEAT_MS, SESSION_TIMEOUT_MS = P.HEARTBEAT_MS, P.SESSION_TIMEOUT_MS
LOST_REMEMBERED = 4096  # sessions of dead workers whose later frames still get `worker_lost`
TICK_S = 0.1  # liveness checks: timeout + flock probe (dead client noticed within ~0.1-0.2 s)
ZAP_DOMAIN = "neurender"
PROGRESS_S = 0.5  # a session waiting this long for its open or a frame gets a `progress` message, and again


@dataclass
class DaemonConfig:
    ipc_endpoint: str | None = None  # local endpoint: ipc://... (or inproc://... in tests); None = none
    tcp: str | None = None  # "HOST:PORT"
    insecure: bool = False
    server_keys: tuple[bytes, bytes] | None = None  # (public, secret) z85, needed for CURVE
    allowed_keys_dir: Path | None = None  # directory of allowed client *.key files
    shm_dir: Path = field(default_factory=shm.default_shm_dir)
    limits: P.Limits = P.Limits()
    heartbeat_ms: int = HEARTBEAT_MS
    session_timeout_ms: int = SESSION_TIMEOUT_MS
    recordings_dir: Path | None = field(default_factory=default_recordings_dir)  # None: `record` is refused
    batch_wait_ms: float = BATCH_WAIT_S * 1e3  # render thread: longest hold of a frame for batch partners; 0: none


def _tcp_host(hostport: str) -> str:
    host, sep, port = hostport.rpartition(":")
    if not sep or not (port.isdigit() or port == "*"):
        raise ValueError(f"--tcp wants HOST:PORT or [IPv6]:PORT (PORT may be * for any free port), got {hostport!r}")
    if ":" in host and not (host.startswith("[") and host.endswith("]")):
        raise ValueError(f"--tcp: write an IPv6 address in brackets, e.g. [::1]:5555, got {hostport!r}")
    return host


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 (bracketed or not) and localhost; never a wildcard or an interface name."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _frame_prop(frame, prop, default):
    try:
        return frame.get(prop)
    except zmq.ZMQError:  # SRCFD on inproc, User-Id without ZAP
        return default


class Daemon:
    def __init__(self, renderer: Renderer, config: DaemonConfig, context: zmq.Context | None = None,
                 worker_factory=None):
        """`context`: share one (tests talking over inproc://); by default the daemon makes its own.
        `worker_factory(wake)`: a bridge.worker_pool.WorkerPool in place of the render thread."""
        self.renderer, self.cfg = renderer, config
        self.limits = config.limits
        self._own_ctx = context is None
        self.ctx = context or zmq.Context()
        self.sockets: list[zmq.Socket] = []
        self.sessions: dict[str, ServerSession] = {}
        self.auth = None
        self.allowed_keys: set[str] | None = None  # z85 keys allowed now (CURVE); None: no CURVE socket
        self.curve_socket: zmq.Socket | None = None
        self.monitors: dict[zmq.Socket, zmq.Socket] = {}  # monitor PAIR -> its ROUTER
        self.endpoints: list[str] = []
        self._stop = threading.Event()
        self._reload_keys = False  # set by SIGHUP, applied by the loop
        self._wake_addr = f"inproc://wake-{id(self)}"
        self._wake_pull = self.ctx.socket(zmq.PULL)
        self._wake_pull.bind(self._wake_addr)
        self._wake_push: zmq.Socket | None = None  # created and used by the worker thread only
        self.pooled = worker_factory is not None
        self.lost: dict[str, tuple] = {}  # session of a dead worker -> (sock, peer) that opened it
        self.worker = None
        try:
            self.worker = (worker_factory(self._wake) if self.pooled
                           else RenderWorker(renderer, self._wake, batch_wait=config.batch_wait_ms / 1e3))
        except BaseException:
            self._wake_pull.close(0)
            if self._own_ctx:
                self.ctx.destroy(0)
            raise
        self.swept = shm.sweep_stale(config.shm_dir)
        try:
            self._bind()
        except BaseException:
            self.close()
            raise

    # -- sockets ------------------------------------------------------------------------------------
    def _router(self) -> zmq.Socket:
        s = self.ctx.socket(zmq.ROUTER)
        s.setsockopt(zmq.ROUTER_MANDATORY, 1)  # unknown/gone peers raise instead of silently dropping
        s.setsockopt(zmq.MAXMSGSIZE, self.limits.max_frame_bytes)
        s.setsockopt(zmq.LINGER, 0)
        s.setsockopt(zmq.HEARTBEAT_IVL, 1000)  # ZMTP pings: a vanished TCP peer's pipe goes away
        s.setsockopt(zmq.HEARTBEAT_TIMEOUT, 3000)
        return s

    def _bind(self) -> None:
        cfg = self.cfg
        if cfg.ipc_endpoint:
            s = self._router()
            s.bind(cfg.ipc_endpoint)
            self.sockets.append(s)
            self.endpoints.append(cfg.ipc_endpoint)
        if cfg.tcp:
            host = _tcp_host(cfg.tcp)
            s = self._router()
            if host.startswith("["):
                s.setsockopt(zmq.IPV6, 1)
            if cfg.insecure:
                if not is_loopback(host):
                    s.close()
                    raise ValueError(f"--insecure is only allowed on loopback (127.x.x.x, [::1], localhost), "
                                     f"not {host!r}")
            else:
                if cfg.server_keys is None or cfg.allowed_keys_dir is None:
                    s.close()
                    raise ValueError("TCP needs CURVE server keys and an allow-list (or --insecure on loopback)")
                from zmq.auth.thread import ThreadAuthenticator
                self.auth = ThreadAuthenticator(self.ctx)
                self.auth.start()
                self.auth.configure_curve(domain=ZAP_DOMAIN, location=str(cfg.allowed_keys_dir))
                s.curve_server = True
                s.curve_publickey, s.curve_secretkey = cfg.server_keys
                s.zap_domain = ZAP_DOMAIN.encode()
                self.curve_socket = s
                self.allowed_keys = self._read_allowed()
            try:
                s.bind(f"tcp://{cfg.tcp}")
            except zmq.ZMQError as e:
                s.close()
                raise ValueError(f"cannot serve tcp://{cfg.tcp}: {e}") from None
            self.sockets.append(s)
            self.endpoints.append(s.getsockopt_string(zmq.LAST_ENDPOINT))
        if not self.sockets:
            raise ValueError("no endpoint to serve")
        for s in self.sockets:
            self.monitors[s.get_monitor_socket(zmq.EVENT_DISCONNECTED)] = s

    def _read_allowed(self) -> set[str]:
        d = self.cfg.allowed_keys_dir
        if d is None or not Path(d).is_dir():
            return set()
        from zmq.auth import load_certificate
        keys = set()
        for p in sorted(Path(d).glob("*.key")):
            try:
                keys.add(load_certificate(str(p))[0].decode())
            except (OSError, ValueError):
                log.warning("unreadable key file %s ignored", p)
        return keys

    def reload_allowed_keys(self) -> None:
        """Re-read the allow-list (SIGHUP). New connections of a revoked key fail the handshake; a revoked
        key's connections that are already up lose their sessions (`session_closed`) and every later
        message from them is ignored (a ROUTER cannot hang up on one peer; it can stop listening)."""
        if self.auth is not None:
            log.info("reloading allowed client keys from %s", self.cfg.allowed_keys_dir)
            self.auth.configure_curve(domain=ZAP_DOMAIN, location=str(self.cfg.allowed_keys_dir))
            self.allowed_keys = self._read_allowed()
            for sid, s in list(self.sessions.items()):
                if s.owner[0] is self.curve_socket and s.owner[3] not in self.allowed_keys:
                    self._end_session(sid, "client key revoked")

    def _wake(self) -> None:
        # called from the worker thread: its own PUSH socket (sockets are not thread-safe)
        if self._wake_push is None:
            self._wake_push = self.ctx.socket(zmq.PUSH)
            self._wake_push.setsockopt(zmq.LINGER, 0)
            self._wake_push.connect(self._wake_addr)
        try:
            self._wake_push.send(b"", zmq.NOBLOCK)
        except zmq.Again:  # the loop has wake-ups queued already
            pass

    def _send(self, sock: zmq.Socket, peer: bytes, header: bytes, *extra) -> bool:
        try:
            sock.send_multipart([peer, header, *extra], flags=zmq.NOBLOCK, copy=False)
            return True
        except zmq.ZMQError as e:  # EHOSTUNREACH: peer gone; EAGAIN: peer not reading
            log.warning("reply to a peer lost (%s)", e)
            return False

    def _error(self, sock, peer, err: P.ProtocolError, dropped=None) -> None:
        self._send(sock, peer, P.encode_error(err, dropped))

    def _on_disconnect(self, monitor: zmq.Socket) -> None:
        """A connection went away: its sessions end (nobody can reach them any more, and its routing id
        may be reused by anyone)."""
        router = self.monitors[monitor]
        while True:
            try:
                ev = recv_monitor_message(monitor, zmq.NOBLOCK)
            except zmq.Again:
                return
            if ev["event"] != zmq.EVENT_DISCONNECTED:
                continue
            fd = int(ev["value"])
            for sid, s in list(self.sessions.items()):
                if s.owner[0] is router and s.owner[2] == fd:
                    self._end_session(sid, "the client's connection closed", notify=False)

    # -- main loop ----------------------------------------------------------------------------------
    def stop(self) -> None:
        self._stop.set()

    def serve_forever(self) -> None:
        poller = zmq.Poller()
        for s in self.sockets:
            poller.register(s, zmq.POLLIN)
        poller.register(self._wake_pull, zmq.POLLIN)
        for m in self.monitors:
            poller.register(m, zmq.POLLIN)
        next_tick = time.monotonic() + TICK_S
        try:
            while not self._stop.is_set():
                timeout = max(0.0, next_tick - time.monotonic())
                events = dict(poller.poll(timeout * 1000))
                if self._wake_pull in events:
                    while True:
                        try:
                            self._wake_pull.recv(zmq.NOBLOCK)
                        except zmq.Again:
                            break
                self._drain_results()
                for m in self.monitors:  # before the sockets: a reused fd must not meet its old sessions
                    if m in events:
                        self._on_disconnect(m)
                for s in self.sockets:
                    if s in events:
                        for _ in range(64):  # bounded burst, then results and liveness get a turn
                            try:
                                frames = s.recv_multipart(zmq.NOBLOCK, copy=False)
                            except zmq.Again:
                                break
                            self._handle(s, frames)
                if time.monotonic() >= next_tick:
                    if self._reload_keys:
                        self._reload_keys = False
                        self.reload_allowed_keys()
                    self._check_liveness()
                    next_tick = time.monotonic() + TICK_S
        finally:
            self.close()

    def close(self) -> None:
        for sid in list(self.sessions):
            self._end_session(sid, "daemon shutting down")
        if self.worker is not None:
            self.worker.stop()
        try:
            self.renderer.close()
        except Exception:  # noqa: BLE001
            pass
        if self.auth is not None:
            self.auth.stop()
            self.auth = None
        for m, s in self.monitors.items():
            s.disable_monitor()
            m.close(0)
        self.monitors = {}
        for s in self.sockets:
            s.close(0)
        self.sockets = []
        self._wake_pull.close(0)
        if self._wake_push is not None:
            self._wake_push.close(0)  # the worker's; its thread has ended
        if self._own_ctx:
            self.ctx.destroy(0)
        if self.cfg.ipc_endpoint and self.cfg.ipc_endpoint.startswith("ipc://"):
            try:
                os.unlink(self.cfg.ipc_endpoint[len("ipc://"):])
            except FileNotFoundError:
                pass

    # -- requests ------------------------------------------------------------------------------------
    def _handle(self, sock: zmq.Socket, frames: list) -> None:
        peer = frames[0].bytes
        user = _frame_prop(frames[-1], "User-Id", "") or ""
        if sock is self.curve_socket and user not in self.allowed_keys:
            return  # a revoked key's connection that is still up: not listened to
        owner = (sock, peer, _frame_prop(frames[-1], zmq.SRCFD, -1), user)
        body = [f.buffer for f in frames[1:]]
        try:
            req = P.decode_request(body, self.limits)
            if isinstance(req, P.FrameRequest):
                self._on_frame(sock, peer, req, frames[2:], owner)
            elif isinstance(req, P.Ping):
                self._on_ping(sock, peer, req, owner)
            elif isinstance(req, P.Open):
                self._on_open(sock, peer, req, owner)
            elif isinstance(req, P.Close):
                self._on_close(sock, peer, req, owner)
            else:
                self._on_hello(sock, peer, req)
        except P.ProtocolError as e:
            self._error(sock, peer, e)
        except Exception as e:  # noqa: BLE001 - a daemon bug must not take every session down with it
            log.exception("internal error while handling a message")
            self._error(sock, peer, P.ProtocolError("internal_error", f"{type(e).__name__}: {e}"))

    def _on_hello(self, sock, peer, req: P.Hello) -> None:
        self._send(sock, peer, P.encode(
            "welcome", req=req.req, protocol=P.PROTOCOL_VERSION, server="neurender",
            server_version=_version(), pid=os.getpid(), renderer=self.renderer.describe(),
            limits=self.limits.as_dict(), heartbeat_ms=self.cfg.heartbeat_ms,
            session_timeout_ms=self.cfg.session_timeout_ms, sessions=len(self.sessions),
            progress_ms=int(PROGRESS_S * 1000)))

    def _on_ping(self, sock, peer, req: P.Ping, owner) -> None:
        """Pings may come from a second connection of the same client (the Python client pings from a
        thread), so they need the same socket and authenticated key, not the same connection."""
        now = time.monotonic()
        unknown = []
        for sid in req.sessions:
            s = self.sessions.get(sid)
            if s is None or s.owner[0] is not sock or s.owner[3] != owner[3]:
                unknown.append(sid)
            else:
                s.last_seen = now
        self._send(sock, peer, P.encode("pong", req=req.req, unknown=unknown, pid=os.getpid()))

    def _on_open(self, sock, peer, req: P.Open, owner) -> None:
        if len(self.sessions) >= self.limits.max_sessions:
            raise P.ProtocolError("too_many_sessions", f"this daemon serves at most {self.limits.max_sessions} "
                                  "sessions", req=req.req)
        # whom the session counts against: the CURVE key, else the connection
        identity = f"key:{owner[3]}" if owner[3] else f"conn:{id(sock)}:{owner[1].hex()}:{owner[2]}"
        mine = sum(1 for x in self.sessions.values() if x.identity == identity)
        if mine >= self.limits.max_sessions_per_client:
            raise P.ProtocolError("too_many_sessions", f"one client may hold at most "
                                  f"{self.limits.max_sessions_per_client} sessions", req=req.req)
        sid = secrets.token_hex(8)
        # the renderer never sees the game's own frame: it is what a recording trains towards
        spec = SessionSpec(req.width, req.height, {k: v for k, v in req.channels.items() if k != FINAL.name},
                           req.action_dim, req.output_format, req.prompt, req.steps)
        layout = SlotLayout.build(req.width, req.height, req.channels, req.output_format, req.slots)
        if layout.size > self.limits.max_session_bytes:
            raise P.ProtocolError("limit_exceeded", f"this session needs {layout.size} bytes of slots, limit "
                                  f"{self.limits.max_session_bytes}", req=req.req)
        now = time.monotonic()
        s = ServerSession(sid, sock, peer, spec, layout, req.transport, req.lock, last_seen=now,
                          open_req=req.req, owner=owner, identity=identity, opened_at=now, progress_at=now)
        if req.transport == "shm":
            try:
                s.create_files(self.cfg.shm_dir)
            except OSError as e:
                raise P.ProtocolError("limit_exceeded", f"cannot allocate shared memory: {e}", req=req.req) from None
        if req.record is not None:
            s.recording = self._open_recording(req, sid)
            if s.segment is not None:  # the recorder's copier reads shm slots through a SlotIO of its own
                s.recording.slots = shm.SlotIO(s.segment.buf, layout)
        self.sessions[sid] = s
        if self.pooled:  # the worker process maps the session's file itself (inline: the pool stages)
            self.worker.open(sid, spec, s.segment if s.segment is not None else None, layout)
        else:
            self.worker.open(sid, spec)

    def _open_recording(self, req: P.Open, sid: str) -> Recording:
        if self.cfg.recordings_dir is None:
            raise P.ProtocolError("bad_field", "this daemon does not record (started with --no-record)", req=req.req)
        try:
            return Recording(self.cfg.recordings_dir, req.record, None, req.width, req.height, req.channels, sid)
        except ValueError as e:
            raise P.ProtocolError("bad_field", f"record: {e}", req=req.req) from None
        except OSError as e:
            raise P.ProtocolError("record_failed", f"cannot record into {req.record!r}: {e}", req=req.req) from None

    def _opened(self, s: ServerSession) -> None:
        L = s.layout
        shm_mode = s.segment is not None
        self._send(s.sock, s.peer, P.encode(
            "opened", req=s.open_req, session=s.id, transport=s.transport, slots=L.slots, width=L.width,
            height=L.height, action_dim=s.spec.action_dim, output_format=s.spec.output_format,
            channels=[c.as_dict() for c in L.channels],
            output={"format": s.spec.output_format, "dtype": L.output.dtype, "components": L.output.components,
                    "nbytes": L.output.nbytes},
            shm_path=str(s.segment.path) if shm_mode else None, shm_size=L.size if shm_mode else 0,
            lock_path=str(s.lock_path) if shm_mode else None,
            input_offsets=[list(o) for o in L.input_offsets] if shm_mode else [],
            output_offsets=list(L.output_offsets) if shm_mode else [],
            renderer=self.worker.describe_session(s.id) if self.pooled else self.renderer.describe(),
            heartbeat_ms=self.cfg.heartbeat_ms, session_timeout_ms=self.cfg.session_timeout_ms,
            record={"name": s.recording.look, "dir": str(s.recording.dir)} if s.recording else None))

    def _session_of(self, owner, sid: str, **ids) -> ServerSession:
        s = self.sessions.get(sid)
        if s is None and self.lost.get(sid) == owner:
            raise WorkerLostError(f"session {sid} was lost with its render worker", session=sid, **ids)
        if s is None or s.owner != owner or not s.ready:
            raise P.ProtocolError("unknown_session", f"no session {sid!r} on this connection", session=sid, **ids)
        return s

    def _on_close(self, sock, peer, req: P.Close, owner) -> None:
        s = self._session_of(owner, req.session, req=req.req)
        dropped = self._end_session(s.id, None)
        self._send(sock, peer, P.encode("closed", req=req.req, session=s.id, dropped=dropped))

    def _on_frame(self, sock, peer, req: P.FrameRequest, raw_frames: list, owner) -> None:
        t_recv = time.perf_counter()
        ids = {"session": req.session, "seq": req.seq}
        s = self._session_of(owner, req.session, seq=req.seq)
        s.last_seen = time.monotonic()
        L, spec = s.layout, s.spec
        if req.seq <= s.last_seq:
            raise P.ProtocolError("bad_seq", f"seq {req.seq} not after {s.last_seq}", **ids)
        action = np.zeros(spec.action_dim, np.float32)
        if req.action is not None:
            if len(req.action) != spec.action_dim:
                raise P.ProtocolError("size_mismatch", f"action has {len(req.action)} floats, session declared "
                                      f"{spec.action_dim}", **ids)
            action[:] = req.action
        keepalive = None
        if s.transport == "shm":
            if req.slot is None or not 0 <= req.slot < L.slots:
                raise P.ProtocolError("bad_slot", f"shm frames need slot in 0..{L.slots - 1}, got {req.slot}", **ids)
            if req.slot in s.busy:
                raise P.ProtocolError("bad_slot", f"slot {req.slot} is still owned by the daemon", **ids)
            if req.pixels:
                raise P.ProtocolError("size_mismatch", f"shm frames carry no pixel frames, got {len(req.pixels)}",
                                      **ids)
            pixels, out = {}, None  # read from the file on the render thread (SlotIO)
        else:
            if req.slot is not None:
                raise P.ProtocolError("bad_slot", "inline frames carry no slot", **ids)
            if len(req.pixels) != len(L.channels):
                raise P.ProtocolError("size_mismatch", f"{len(req.pixels)} pixel frames for {len(L.channels)} "
                                      "declared channels", **ids)
            pixels = {}
            for c, buf in zip(L.channels, req.pixels):
                if len(buf) != c.nbytes:
                    raise P.ProtocolError("size_mismatch", f"channel {c.name!r}: {len(buf)} bytes, expected "
                                          f"{c.nbytes} ({L.height}x{L.width}x{c.components} {c.dtype})", **ids)
                view = np.frombuffer(buf, np.dtype(c.dtype).newbyteorder("<")).reshape(
                    L.height, L.width, c.components)
                view.flags.writeable = False
                pixels[c.name] = view
            out = np.empty((L.height, L.width, L.output.components), np.dtype(L.output.dtype))
            keepalive = raw_frames
        with np.errstate(over="ignore"):  # overflow becomes inf, refused just below
            constants = {k: np.asarray(v, np.float32) for k, v in req.constants.items()}
        if any(not np.isfinite(v).all() for v in constants.values()):  # finite float64 can overflow float32
            raise P.ProtocolError("non_finite", "constants overflow float32", **ids)
        if not np.isfinite(action).all():
            raise P.ProtocolError("non_finite", "action overflows float32", **ids)
        if s.recording is not None:  # shm: the copier reads the slot itself (pixels are read on the render thread)
            s.recording.capture(req.seq, req.slot if s.transport == "shm" else pixels, constants, action, req.reset)
            pixels = {k: v for k, v in pixels.items() if k != FINAL.name}
        s.last_seq = req.seq
        s.seen_frame = True
        if req.slot is not None:
            s.busy.add(req.slot)
        if not s.unanswered:
            s.progress_at = s.waiting_since = time.monotonic()  # waiting starts now
        s.unanswered.add(req.seq)
        job = FrameJob(s.id, req.slot, FrameInputs(req.seq, pixels, constants, action, req.prompt, req.reset),
                       out, t_recv, keepalive, io=s.io if not self.pooled else None)
        replaced = self.worker.submit(job)
        if replaced is not None:
            s.dropped.append(replaced.inputs.seq)
            s.unanswered.discard(replaced.inputs.seq)
            s.frames_dropped += 1
            s.busy.discard(replaced.slot)

    # -- results and liveness ---------------------------------------------------------------------
    def _drain_results(self) -> None:
        while True:
            try:
                r = self.worker.results.get_nowait()
            except queue.Empty:
                return
            s = self.sessions.get(r.session)
            try:
                if r.kind == "opened":
                    self._finish_open(r, s)
                elif r.kind == "frame" and s is not None:
                    self._finish_frame(r, s)
                elif r.kind == "lost" and s is not None:
                    self._lose_session(r, s)
            except Exception:  # noqa: BLE001 - see _handle
                log.exception("internal error while answering session %s", r.session)

    def _finish_open(self, r, s: ServerServerSession | None) -> None:
        if s is None:  # gone while opening
            if r.error is None:
                self.worker.close(r.session)
            return
        if r.error is not None:
            del self.sessions[s.id]
            if s.recording is not None:
                s.recording.finish()
            s.release_files()
            if isinstance(r.error, WorkerLost):
                self._error(s.sock, s.peer, WorkerLostError(str(r.error), req=s.open_req))
                return
            code = "unsupported" if isinstance(r.error, UnsupportedSpec) else "renderer_error"
            self._error(s.sock, s.peer, P.ProtocolError(code, f"{type(r.error).__name__}: {r.error}",
                                                        req=s.open_req))
            return
        s.ready = True
        s.last_seen = time.monotonic()
        self._opened(s)

    def _finish_frame(self, r, s: ServerSession) -> None:
        job: FrameJob = r.value
        if job.inputs.seq not in s.unanswered:  # answered already (cannot happen): never twice
            log.error("session %s: result for seq %d that is not outstanding", s.id, job.inputs.seq)
            return
        s.unanswered.discard(job.inputs.seq)
        s.progress_at = s.waiting_since = time.monotonic()
        if job.slot is not None:
            s.busy.discard(job.slot)
        dropped, s.dropped = s.dropped, []
        record_wait = {}
        if s.recording is not None:  # the slots this reply hands back must be copied out first
            record_wait = {"record_wait_ms": s.recording.wait_copied(max([job.inputs.seq, *dropped]))}
        if r.error is not None:
            s.frames_failed += 1
            err = P.ProtocolError("renderer_error", f"{type(r.error).__name__}: {r.error}", session=s.id,
                                  seq=job.inputs.seq)
            self._error(s.sock, s.peer, err, dropped)
            return
        s.frames_done += 1
        e = s.recording.take_error() if s.recording is not None else None
        record_error = {"code": e.code, "message": str(e)} if e else None
        timings = dict(r.timings, **record_wait, daemon_ms=(time.perf_counter() - job.t_recv) * 1e3)
        header = P.encode("frame_done", session=s.id, seq=job.inputs.seq, slot=job.slot, dropped=dropped,
                          timings=timings, record_error=record_error, repaired=job.repaired)
        if s.transport == "inline":
            self._send(s.sock, s.peer, header, job.out)
        else:
            self._send(s.sock, s.peer, header)

    def _lose_session(self, r, s: ServerSession) -> None:
        """The session's worker process died: its oldest unanswered frame gets `worker_lost` (a waiting
        one is listed as dropped), the session ends, its later frames get `worker_lost` too."""
        self.worker.cancel(s.id)
        seqs = sorted(s.unanswered)  # the frame it was rendering and the waiting one
        s.unanswered.clear()
        dropped, s.dropped = s.dropped + seqs[1:], []
        if seqs:
            self._error(s.sock, s.peer, WorkerLostError(str(r.error), session=s.id, seq=seqs[0]), dropped)
        s.frames_failed += len(seqs)
        self._end_session(s.id, str(r.error), notify=False)  # the worker_lost error above says it
        self.lost[s.id] = s.owner
        while len(self.lost) > LOST_REMEMBERED:
            self.lost.pop(next(iter(self.lost)))

    def _check_liveness(self) -> None:
        """Time out silent sessions, except one the daemon owes something (its open, a frame): a cold
        first model load, prompt encoding or compile may take minutes, and the client is waiting for us,
        not gone. Those get a `progress` message every PROGRESS_S instead. A dead client of such a
        session is still noticed at once through its lock or its connection."""
        now = time.monotonic()
        timeout = self.cfg.session_timeout_ms / 1e3
        for sid, s in list(self.sessions.items()):
            if not s.ready or s.unanswered:
                if s.lock_enabled and s.seen_frame and s.lock_fd is not None and not shm.holder_alive(s.lock_fd):
                    self._end_session(sid, "client released its lock (process gone)")
                elif now - s.progress_at >= PROGRESS_S:
                    self._progress(s, now)
                continue
            if now - s.last_seen > timeout:
                self._end_session(sid, f"no message for {timeout:.1f} s")
            elif s.lock_enabled and s.seen_frame and s.lock_fd is not None and not shm.holder_alive(s.lock_fd):
                self._end_session(sid, "client released its lock (process gone)")

    def _progress(self, s: ServerSession, now: float) -> None:
        s.progress_at = now
        if not s.ready:
            stage, text, since = "opening", ("the renderer is preparing the session (prompt encoding, first "
                                             "allocation)"), s.opened_at
            ids = {"req": s.open_req}
        else:
            stage = "first_frame" if s.frames_done == 0 else "rendering"
            text = ("the first frame is rendering (warm-up, compilation)" if stage == "first_frame"
                    else "a frame is taking long")
            since, ids = s.waiting_since, {"seq": min(s.unanswered)}
        self._send(s.sock, s.peer, P.encode("progress", session=s.id, stage=stage, message=text,
                                            elapsed_ms=round((now - since) * 1e3), **ids))

    def _end_session(self, sid: str, why: str | None, notify: bool = True) -> list[int]:
        """Forget a session: every accepted frame not answered yet (the waiting one, the one rendering)
        is dropped, its files unlinked, its renderer session closed on the worker (after any frame it
        is rendering, whose result is then discarded). Returns the dropped seqs not reported yet; when
        the daemon ends it on its own (`why`), the client gets them in a `session_closed`."""
        s = self.sessions.pop(sid, None)
        if s is None:
            return []
        self.worker.cancel(sid)
        dropped = s.dropped + sorted(s.unanswered)
        log.info("session %s ended (%s): %d frames rendered, %d dropped, %d failed", sid, why or "closed",
                 s.frames_done, s.frames_dropped + len(s.unanswered), s.frames_failed)
        s.dropped, s.unanswered = [], set()
        self.worker.close(sid)
        if s.recording is not None:
            s.recording.finish()  # its threads close the shard and commit the index
        s.release_files()
        if why is not None and notify:
            self._send(s.sock, s.peer, P.encode("session_closed", session=sid, reason=why, dropped=dropped))
        return dropped


def _version() -> str:
    try:
        from importlib.metadata import version
        return version("neurender")
    except Exception:  # noqa: BLE001
        return "0+unknown"


def install_signal_handlers(daemon: Daemon) -> None:
    def handler(signum, frame):
        daemon.stop()

    def reload(signum, frame):
        daemon._reload_keys = True
    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGHUP, reload)
