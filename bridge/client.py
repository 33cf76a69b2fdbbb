"""The Python client of the daemon (game loops, the demo, evaluation, benchmarks).

    with Client() as c:                                   # the local daemon (ipc, runtime dir)
        s = c.open_session(640, 360, {"color": "float16", "depth": "float32"})
        r = s.render({"color": rgb, "depth": d}, action=a)  # blocking: FrameResult(seq, image, dropped, timings)

    # pipelined, zero-copy: read the engine's buffers straight into shared memory
        slot = s.acquire_slot()
        fbo_read_into(s.input_views(slot)["color"])
        s.submit(slot=slot, constants={"dt": [1 / 60]})
        r = s.poll(timeout=0.1)                            # None if nothing arrived yet

The client sends a ping for its sessions from a background thread (its own socket), so a game loop
that stalls (loading, breakpoint) does not lose its session; a client process that dies releases its
flock and the daemon closes the session at once. A Client and its sessions belong to one thread.
Wire format: bridge/protocol.py, docs/protocol.md.
"""
from __future__ import annotations

import fcntl
import itertools
import os
import threading
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np
import zmq

from bridge import protocol as P
from bridge import shm
from bridge.channels import ACTION_DIM, CHANNELS, CONSTANTS_LAYOUT
from bridge.layout import ChannelLayout, SlotLayout


class BridgeError(Exception):
    """The daemon refused a request; `code` is one of bridge.protocol.ERROR_CODES."""

    def __init__(self, code: str, message: str, session: str | None = None, seq: int | None = None):
        super().__init__(f"{code}: {message}")
        self.code, self.message, self.session, self.seq = code, message, session, seq


class DaemonUnavailable(ConnectionError):
    """No daemon answered at the endpoint within the timeout."""


class SessionLost(ConnectionError):
    """The daemon no longer knows this session (it restarted, or timed the session out): open a new one."""


@dataclass
class FrameResult:
    seq: int
    image: np.ndarray  # (H, W, C) of the output format. shm: a read-only view of output slot `slot`,
    # valid until that slot is submitted again (acquire_slot hands out the least recently used slot);
    # copy it to keep it longer
    dropped: list[int]
    timings: dict = field(default_factory=dict)  # queue_ms, render_ms, daemon_ms (daemon), roundtrip_ms
    slot: int | None = None
    repaired: int = 0  # NaN/inf input values the daemon replaced by 0 before rendering


def _to_bytes(key) -> bytes:
    return key.encode() if isinstance(key, str) else key


class Client:
    def __init__(self, endpoint: str | None = None, *, server_public_key=None, client_keys=None,
                 timeout: float = 10.0, heartbeat: bool = True, name: str = "python",
                 context: zmq.Context | None = None, on_progress=None):
        """context: share one (inproc:// endpoints in tests); by default the client has its own.
        timeout: how long to wait for an answer while the daemon says nothing; each `progress` message
        (the daemon is still opening a session or rendering a slow first frame) starts it over, so a
        cold first load takes as long as it takes. on_progress(msg): called with each of them."""
        from bridge import paths
        self.endpoint = endpoint or paths.ipc_endpoint()
        self.timeout = timeout
        self._curve = None
        if server_public_key is not None or client_keys is not None:
            from bridge import keys
            if server_public_key is None or client_keys is None:
                raise ValueError("CURVE needs both server_public_key and client_keys")
            self._curve = (keys.load_public(server_public_key), *keys.load_pair(client_keys))
        self._own_ctx = context is None
        self._ctx = context or zmq.Context()
        self._sock = self._socket()
        self._req = itertools.count(1)
        self._replies: deque = deque()  # replies to requests (hello/open/close) waiting to be claimed
        self.sessions: dict[str, Session] = {}
        self._hb_thread = None
        self._hb_stop = threading.Event()
        self.lost: set[str] = set()  # sessions the daemon's pongs call unknown (written by the heartbeat thread)
        self.closed_by_daemon: dict[str, str] = {}  # session -> reason of its `session_closed`
        self.on_progress = on_progress
        self._progress_at = float("-inf")  # monotonic time of the last `progress` message
        self._closed = False
        try:
            self.welcome = self._request("hello", client=name)
        except TimeoutError:
            self._shutdown()
            raise DaemonUnavailable(f"no neurender daemon answered at {self.endpoint} within {timeout} s "
                                    "(start one with `neurender serve`)") from None
        self.heartbeat_s = self.welcome.get("heartbeat_ms", 250) / 1e3
        if heartbeat:
            self._hb_thread = threading.Thread(target=self._heartbeat, name="neurender-heartbeat", daemon=True)
            self._hb_thread.start()

    def _socket(self) -> zmq.Socket:
        s = self._ctx.socket(zmq.DEALER)
        s.setsockopt(zmq.LINGER, 0)
        if "://[" in self.endpoint:  # an IPv6 address (tcp://[::1]:PORT)
            s.setsockopt(zmq.IPV6, 1)
        if self._curve is not None:
            server_pub, pub, sec = self._curve
            s.curve_serverkey, s.curve_publickey, s.curve_secretkey = server_pub, pub, sec
        s.connect(self.endpoint)
        return s

    # -- receiving ---------------------------------------------------------------------------------
    def _recv_one(self, timeout: float) -> bool:
        """Receive one message (waiting up to `timeout` s) and route it; False if none came."""
        if not self._sock.poll(max(0, int(timeout * 1000))):
            return False
        frames = self._sock.recv_multipart(copy=False)
        msg, extra = P.decode_reply(frames)
        sid = msg.get("session")
        if msg["type"] == "progress":
            self._progress_at = time.monotonic()
            if self.on_progress is not None:
                self.on_progress(msg)
            return True
        if msg["type"] == "session_closed":
            s = self.sessions.get(sid)
            if s is not None:
                s._release(msg)
                s._inflight.clear()
            self.closed_by_daemon[sid] = msg.get("reason", "")
            self.lost.add(sid)
            return True
        if msg["type"] == "frame_done" or (msg["type"] == "error" and msg.get("seq") is not None
                                           and msg.get("req") is None):
            s = self.sessions.get(sid)
            if s is not None:
                s._release(msg)
                s._inbox.append((msg, extra))
            return True
        self._replies.append(msg)
        return True

    def _deadline(self, deadline: float, timeout: float) -> float:
        """`deadline`, moved on while the daemon keeps saying it is working on it (`progress`)."""
        return max(deadline, self._progress_at + timeout)

    def _request(self, kind: str, timeout: float | None = None, **fields) -> dict:
        req = next(self._req)
        self._sock.send(P.encode(kind, req=req, **fields))
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while True:
            for msg in list(self._replies):
                if msg.get("req") == req or (msg["type"] == "error" and msg.get("req") is None):
                    self._replies.remove(msg)
                    if msg["type"] == "error":
                        raise BridgeError(msg["code"], msg["message"], msg.get("session"), msg.get("seq"))
                    return msg
            deadline = self._deadline(deadline, timeout)
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no reply to {kind} within {timeout} s")
            self._recv_one(left)

    def _heartbeat(self) -> None:
        """Ping our sessions from a second socket; a pong that calls one unknown (or comes from another
        daemon pid: a restart behind the same endpoint) marks it lost, and its next poll/submit raises."""
        sock = self._socket()
        try:
            while not self._hb_stop.wait(self.heartbeat_s):
                sock.send(P.encode("ping", sessions=list(self.sessions)))
                while sock.poll(0):
                    try:
                        pong, _ = P.decode_reply(sock.recv_multipart())
                    except ValueError:
                        continue
                    if pong.get("type") != "pong":
                        continue
                    if pong.get("pid") not in (None, self.welcome.get("pid")):
                        self.lost.update(self.sessions)
                    else:
                        self.lost.update(sid for sid in pong.get("unknown", []) if sid in self.sessions)
        finally:
            sock.close(0)

    # -- public -------------------------------------------------------------------------------------
    def open_session(self, width: int, height: int, channels: dict[str, str], action_dim: int = ACTION_DIM,
                     output_format: str = "rgb8", prompt: str | None = None, steps: int | None = None, *,
                     transport: str | None = None, slots: int = P.DEFAULT_SLOTS,
                     timeout: float | None = None, record: str | None = None) -> "Session":
        """transport: "shm" (default on ipc://) or "inline" (default on tcp://). record: a look name; the
        daemon records the session (declare the "final" channel: your game's own frame) into
        <recordings root>/<record>/ for `neurender train --data ... --look <record>`."""
        if transport is None:
            transport = "shm" if self.endpoint.startswith("ipc://") else "inline"
        opened = self._request("open", timeout=timeout, width=width, height=height, channels=dict(channels),
                               action_dim=action_dim, output_format=output_format, transport=transport,
                               prompt=prompt, steps=steps, slots=slots, lock=transport == "shm", record=record)
        s = Session(self, opened)
        self.sessions[s.id] = s
        return s

    def close(self) -> None:
        if self._closed:
            return
        for s in list(self.sessions.values()):
            try:
                s.close(timeout=min(self.timeout, 1.0))  # a daemon that is gone must not hold us up long
            except (BridgeError, TimeoutError, zmq.ZMQError):
                pass
        self._shutdown()

    def _shutdown(self) -> None:
        self._closed = True
        self._hb_stop.set()
        if self._hb_thread is not None:
            self._hb_thread.join()
        self._sock.close(0)
        if self._own_ctx:
            self._ctx.term()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Session:
    """One stream of frames; see Client.open_session."""

    def __init__(self, client: Client, opened: dict):
        self._client = client
        self.id: str = opened["session"]
        self.transport: str = opened["transport"]
        self.width, self.height = opened["width"], opened["height"]
        self.action_dim: int = opened["action_dim"]
        self.slots: int = opened["slots"]
        chans = tuple(ChannelLayout(c["name"], c["dtype"], c["components"], c["nbytes"])
                      for c in opened["channels"])
        o = opened["output"]
        out = ChannelLayout(o["format"], o["dtype"], o["components"], o["nbytes"])
        self.record: dict | None = opened.get("record")  # {name, dir} while the daemon records this session
        self.record_error: BridgeError | None = None  # set when the daemon stopped recording (code record_failed)
        self.info = {"renderer": opened["renderer"], "layout": {k: v for k, v in opened.items()
                                                                if k not in ("v", "type", "req", "renderer")}}
        self._lock_fd = None
        if self.transport == "shm":
            self._layout = SlotLayout(self.width, self.height, chans, out, self.slots,
                                      tuple(tuple(x) for x in opened["input_offsets"]),
                                      tuple(opened["output_offsets"]), opened["shm_size"])
            path = opened["shm_path"]  # /proc/<daemon pid>/fd/<n>: the memory must be our session's
            self._buf = shm.attach(path, opened["shm_size"], shm.segment_name(int(path.split("/")[2]), self.id))
            self._lock_fd = os.open(opened["lock_path"], os.O_RDWR)
            fcntl.flock(self._lock_fd, fcntl.LOCK_SH)  # held until close/exit: the daemon's liveness probe
            self._in = [self._layout.input_views(self._buf, k) for k in range(self.slots)]
            self._out = []
            for k in range(self.slots):
                v = self._layout.output_view(self._buf, k)
                v.flags.writeable = False
                self._out.append(v)
        else:
            self._layout = SlotLayout(self.width, self.height, chans, out, self.slots, (), (), 0)
            self._in = [{c.name: np.zeros((self.height, self.width, c.components), c.dtype) for c in chans}
                        for _ in range(self.slots)]
        self.channels = {c.name: c for c in chans}
        self._free: deque[int] = deque(range(self.slots))  # least recently used first
        self._acquired: set[int] = set()
        self._inflight: dict[int, list] = {}  # seq -> [slot, perf_counter at submit, slot released]
        self._inbox: deque = deque()
        self._seq = 0
        self._closed = False

    # -- slots ------------------------------------------------------------------------------------
    def acquire_slot(self, timeout: float | None = None) -> int:
        """A free slot for the next frame, waiting for results if all are in flight (the results that
        arrive meanwhile stay queued for poll())."""
        timeout = self._client.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while not self._free:
            self._check_lost()
            deadline = self._client._deadline(deadline, timeout)
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no slot of session {self.id} came back in time")
            self._client._recv_one(left)
        k = self._free.popleft()
        self._acquired.add(k)
        return k

    def input_views(self, slot: int) -> dict[str, np.ndarray]:
        """Writable (H, W, C) arrays of input slot `slot` (zero-copy into shared memory in shm mode)."""
        return self._in[slot]

    def in_flight(self) -> int:
        """Frames submitted and not yet answered."""
        return len(self._inflight)

    def free_slots(self) -> int:
        """Slots a submit could take right now without waiting."""
        return len(self._free)

    # -- frames -----------------------------------------------------------------------------------
    def submit(self, pixels: dict[str, np.ndarray] | None = None, constants: dict | None = None,
               action=None, prompt: str | None = None, reset: bool = False, slot: int | None = None) -> int:
        """Send one frame without waiting; returns its seq. Pixels given here are copied into the slot,
        so the caller may reuse its arrays as soon as this returns."""
        return self._submit(pixels, constants, action, prompt, reset, slot, copy=True)

    def _submit(self, pixels, constants, action, prompt, reset, slot, copy: bool) -> int:
        """copy=False (inline): send the caller's arrays zero-copy. ZeroMQ sends from them in its I/O
        thread, possibly long after this returns (a busy or stopped daemon leaves most of a big frame
        unsent), so only a caller that waits for this frame's answer (render) may skip the copy; the
        slot's own buffers are touched again only once its answer has come, i.e. after they were sent."""
        if self._closed:
            raise RuntimeError("session is closed")
        self._check_lost()
        t0 = time.perf_counter()
        if slot is None and not pixels and self._acquired:
            raise ValueError(f"you filled slot(s) {sorted(self._acquired)} through input_views: pass slot=")
        if slot is None:
            slot = self.acquire_slot()
        elif slot not in self._acquired:
            if slot not in self._free:
                raise ValueError(f"slot {slot} is not ours right now (in flight)")
            self._free.remove(slot)
            self._acquired.add(slot)
        try:
            sendable = self._fill(slot, pixels or {}, copy)
            header = self._header(slot, constants, action, prompt, reset)
        except Exception:
            self._acquired.discard(slot)
            self._free.appendleft(slot)
            raise
        seq = self._seq
        self._seq += 1
        self._acquired.discard(slot)
        self._inflight[seq] = [slot, t0, False]
        if self.transport == "shm":
            self._client._sock.send(header)
        else:
            frames = [header] + [sendable.get(c, self._in[slot][c]) for c in self.channels]
            self._client._sock.send_multipart(frames, copy=False)
        return seq

    def _fill(self, slot: int, pixels: dict, copy: bool) -> dict:
        direct = {}
        for name, arr in pixels.items():
            if name not in self.channels:
                raise ValueError(f"channel {name!r} was not declared (declared: {', '.join(self.channels)})")
            c = self.channels[name]
            arr = np.asarray(arr)
            if arr.ndim == 2 and c.components == 1:
                arr = arr[..., None]
            if arr.shape != (self.height, self.width, c.components):
                raise ValueError(f"{name}: shape {arr.shape}, declared {(self.height, self.width, c.components)}")
            if arr.dtype != np.dtype(c.dtype):
                raise ValueError(f"{name}: dtype {arr.dtype}, declared {c.dtype}")
            if self.transport == "inline" and not copy and arr.flags.c_contiguous:
                direct[name] = arr
            else:
                self._in[slot][name][...] = arr
        return direct

    def _header(self, slot, constants, action, prompt, reset) -> bytes:
        consts = None
        if constants:
            consts = {}
            for k, v in constants.items():
                if k not in CONSTANTS_LAYOUT:
                    raise ValueError(f"unknown constant {k!r}")
                consts[k] = [float(x) for x in np.asarray(v, np.float64).reshape(-1)]
        act = None
        if action is not None:
            act = [float(x) for x in np.asarray(action, np.float64).reshape(-1)]
        return P.encode("frame", session=self.id, seq=self._seq, slot=slot if self.transport == "shm" else None,
                        constants=consts, action=act, prompt=prompt, reset=reset or None)

    def _check_lost(self) -> None:
        if self.id in self._client.lost:
            why = self._client.closed_by_daemon.get(self.id)
            raise SessionLost(f"the daemon closed session {self.id}: {why}" if why else
                              f"the daemon no longer knows session {self.id} (restarted or timed out); "
                              "open a new session")

    def _release(self, msg: dict) -> None:
        """Called as a reply of this session arrives: the slots of its seq and of the seqs it lists as
        dropped come back to us (the answered seq stays in _inflight until poll() hands it out)."""
        seq = msg.get("seq")
        for q in [seq, *(msg.get("dropped") or [])]:
            entry = self._inflight.get(q)
            if entry is None or entry[2]:
                continue
            entry[2] = True
            if entry[0] is not None:
                self._free.append(entry[0])
            if q != seq:
                del self._inflight[q]  # dropped: no reply of its own will come

    def poll(self, timeout: float | None = 0.0) -> FrameResult | None:
        """The next result of this session, or None if none arrives within `timeout` s.
        Raises BridgeError for a frame the daemon refused or failed to render."""
        timeout = self._client.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        if not self._inbox:
            self._check_lost()
        while not self._inbox:
            if self.id in self._client.lost:
                self._check_lost()
            # At least one look at the socket even when the deadline has already passed
            # (timeout=0 is a non-blocking poll, not "only what was received before").
            left = max(0.0, deadline - time.monotonic())
            if not self._client._recv_one(left) and left <= 0 and not self._inbox:
                return None
        msg, extra = self._inbox.popleft()
        seq = msg["seq"]
        slot, t0, _ = self._inflight.pop(seq, (None, None, True))
        if msg["type"] == "error":
            raise BridgeError(msg["code"], msg["message"], self.id, seq)
        o = self._layout.output
        if self.transport == "shm":
            image = self._out[msg["slot"]]
        else:
            image = np.frombuffer(extra[0].buffer, np.dtype(o.dtype)).reshape(self.height, self.width, o.components)
        if msg.get("record_error"):  # recording stopped; the session goes on
            e = msg["record_error"]
            self.record_error = BridgeError(e.get("code", "record_failed"), e.get("message", ""), self.id, seq)
        timings = dict(msg.get("timings") or {})
        if t0 is not None:
            timings["roundtrip_ms"] = (time.perf_counter() - t0) * 1e3
        return FrameResult(seq, image, list(msg.get("dropped") or []), timings, slot, int(msg.get("repaired") or 0))

    def render(self, pixels: dict[str, np.ndarray] | None = None, constants: dict | None = None, action=None,
               prompt: str | None = None, reset: bool = False, slot: int | None = None,
               timeout: float | None = None) -> FrameResult:
        """submit() and wait for that frame's result; results of earlier pipelined frames are discarded."""
        seq = self._submit(pixels, constants, action, prompt, reset, slot, copy=False)  # we wait for its answer
        timeout = self._client.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while True:
            deadline = self._client._deadline(deadline, timeout)
            try:
                r = self.poll(max(0.0, deadline - time.monotonic()))
            except BridgeError as e:
                if e.seq == seq:
                    raise
                continue
            if r is None:
                if time.monotonic() < self._client._deadline(deadline, timeout):
                    continue  # the daemon said it is still at it (progress)
                raise TimeoutError(f"frame {seq} of session {self.id} not rendered in time")
            if r.seq == seq:
                return r
            if seq in r.dropped:
                raise RuntimeError(f"frame {seq} was dropped")  # cannot happen: it is the newest

    def close(self, timeout: float | None = None) -> list[int]:
        """Close the session; returns seqs that were still waiting and got dropped."""
        if self._closed:
            return []
        self._closed = True
        try:
            if self.id in self._client.lost:
                return []
            reply = self._client._request("close", timeout=timeout, session=self.id)
            return list(reply.get("dropped") or [])
        finally:
            self._client.sessions.pop(self.id, None)
            self._in = self._out = None
            if self._lock_fd is not None:
                os.close(self._lock_fd)  # releases the flock
                self._lock_fd = None
            self._buf = None  # unmapped when the caller's last image view is gone (never mmap.close())

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
