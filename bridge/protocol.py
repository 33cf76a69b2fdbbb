"""neurender bridge wire format, protocol version 1 (docs/protocol.md is the same contract with examples).

Transport
---------
ZeroMQ. The daemon binds ROUTER sockets; a client connects a DEALER socket (NetMQ/libzmq alike).
Every message is multipart: frame 0 is a msgpack map (the *header*), optional further frames carry
raw pixels (inline mode only). There is NO empty delimiter frame: a DEALER sends [header, *pixels]
and receives [header, *pixels].

* Local:  ``ipc://<runtime_dir>/daemon.sock``; runtime_dir is ``$NEURENDER_RUNTIME_DIR``, else
  ``$XDG_RUNTIME_DIR/neurender``, else ``/tmp/neurender-<uid>``; the directory is mode 0700 and also
  holds ``daemon.pid``. No authentication beyond the directory's permissions.
* Remote: ``tcp://HOST:PORT`` with CURVE. The client must know the server's public key and its own
  key pair must be allow-listed (``neurender keys``). Plain TCP only with ``--insecure`` on loopback.

Header encoding
---------------
msgpack map with UTF-8 string keys; strings are msgpack str, binary is msgpack bin, no ext types.
Integers are msgpack ints, floats may be float32/float64 (or ints where a float is expected),
``nil`` is allowed for an optional field and means "absent". Every header has
``"v": 1`` (int, protocol version) and ``"type"`` (str). Unknown keys, unknown types, wrong value types
and a version other than 1 are answered with an ``error`` (below). A header is at most
``limits.max_header_bytes`` (65536) bytes; a single ZeroMQ frame above ``limits.max_frame_bytes``
makes the daemon drop the connection (ZMQ_MAXMSGSIZE), without a reply.

Client -> daemon
~~~~~~~~~~~~~~~~
hello  {v, type:"hello", req?:int, client?:str}
open   {v, type:"open", req:int, width:int, height:int, channels:{name:dtype,...}, action_dim:int,
        output_format:str, transport:"shm"|"inline", prompt?:str, steps?:int, slots?:int, lock?:bool,
        record?:str}
       channels: names and dtypes from bridge.channels.DECLARABLE_CHANNELS (e.g. {"color":"float16","depth":"float32"}),
       at least one. output_format: "rgb8" | "rgba8" | "rgb16f". slots: ring size, default 3, 1..limits.max_slots.
       lock: the client promises to hold a shared flock on ``lock_path`` from before its first frame until
       it exits, so the daemon notices its death at once (else the heartbeat timeout applies).
       record: record this session into <recordings root>/<record>/ (docs/dataset.md, "Recordings"); the
       name ([A-Za-z0-9][A-Za-z0-9_-]{0,63}) is also the look's prompt; needs the channel "final".
frame  {v, type:"frame", session:str, seq:int, slot?:int, constants?:{name:[float,...]},
        action?:[float,...], prompt?:str, reset?:bool}
       shm:    ``slot`` is required (0..slots-1); the pixels are already in that input slot. No extra frames.
       inline: ``slot`` absent; exactly one extra frame per declared channel, in the order of ``channels``
               in the ``opened`` reply, each exactly that channel's ``nbytes`` (raw little-endian (H,W,C)).
       seq: strictly increasing per session (>= 0). constants: a subset of
       bridge.channels.CONSTANTS_LAYOUT, each exactly that many finite floats. action: exactly
       action_dim finite floats (absent: zeros). prompt: only on the frame where it changes. reset: on a cut.
close  {v, type:"close", req:int, session:str}
ping   {v, type:"ping", req?:int, sessions?:[str,...]}
       Any message naming a session (frame, close, ping) keeps it alive. Send one at least every
       ``heartbeat_ms``; a session not heard of for ``session_timeout_ms`` is closed and its files unlinked.

Daemon -> client
~~~~~~~~~~~~~~~~
welcome    {v, type:"welcome", req, protocol:1, server:"neurender", server_version:str, pid:int,
            renderer:{backend, model, steps, device}, limits:{...}, heartbeat_ms:int, session_timeout_ms:int,
            sessions:int (sessions open now, all clients)}
opened     {v, type:"opened", req, session:str, transport, slots:int, width, height, action_dim,
            output_format, channels:[{name, dtype, components, nbytes}, ...],
            output:{format, dtype, components, nbytes},
            shm_path:str|nil, shm_size:int, lock_path:str|nil,
            input_offsets:[[int per channel] per slot], output_offsets:[int per slot],
            renderer:{...}, heartbeat_ms, session_timeout_ms, record?:{name, dir} (when recording)}
frame_done {v, type:"frame_done", session, seq, slot:int|nil, dropped:[int,...],
            timings:{queue_ms:float, render_ms:float, daemon_ms:float, batch?:int, batch_wait_ms?:float}, record_error?:{code, message}}
           record_error: once, on the first frame_done after a recording stopped (code record_failed).
           inline: one extra frame, the output image (output.nbytes bytes, (H,W,C) of output.dtype).
           shm: the image is in output slot ``slot`` at output_offsets[slot].
closed     {v, type:"closed", req, session, dropped:[int,...]}
pong       {v, type:"pong", req, unknown:[str,...], pid:int}   (unknown: sessions named in the ping that do
            not exist; pid: the daemon's, a different one means it restarted and every session is gone)
error      {v, type:"error", code:str, message:str, req?:int, session?:str, seq?:int, dropped?:[int,...]}
progress   {v, type:"progress", session, stage:"opening"|"first_frame"|"rendering", message:str, elapsed_ms:int,
            req?:int (opening), seq?:int (the oldest unanswered frame)}   every progress_ms while the daemon
            owes the session its `opened` or a frame: restart your reply timeout on each
session_closed {v, type:"session_closed", session, reason:str, dropped:[int,...]}   the daemon ended it on its
            own (timeout, lock released, key revoked, shutdown); dropped = every frame not answered yet
frame_done also carries repaired:int, the non-finite input values replaced by 0 before rendering.
A session belongs to the connection (socket, routing id, CURVE key) that opened it and ends when that
connection closes; sessions the daemon owes an answer never time out.

Frames, slots and dropping
~~~~~~~~~~~~~~~~~~~~~~~~~~
Slot k is a pair (input slot k, output slot k). The client owns slot k until it sends a frame naming it;
the daemon owns it from then until the ``frame_done`` for that seq, or until that seq is listed in some
``dropped``; then the client owns it again (it may read output slot k until it reuses slot k).
The daemon keeps at most one frame per session waiting while one renders: a newer frame replaces the
waiting one, whose seq is reported in the ``dropped`` list of the next ``frame_done`` of that session
(or of the next error/closed about that session); its prompt and reset carry over to the frame that
replaced it. Every frame is answered exactly once: a refused one at once by an error with its seq (seq
and slot stay unused); an accepted one by its frame_done, a renderer_error with its seq, or a
``dropped`` entry. Results come in increasing seq order, nothing is reordered; a refusal may overtake
them.

Shared memory (shm transport)
~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
One memfd per session, sealed against shrinking and growing, reached at ``shm_path`` =
``/proc/<daemon pid>/fd/<n>`` (mode 0600; check that it is ``/memfd:neurender-<pid>-<session>`` before
mapping), plus an empty 0600 ``<shm_dir>/neurender-<pid>-<session>.lock`` to hold a shared flock on.
Map all ``shm_size`` bytes read-write, e.g. C# ``MemoryMappedFile.CreateFromFile``. Layout:
input slot 0..slots-1 then output slot 0..slots-1, each slot starting on a 4096-byte boundary, each
channel inside a slot on a 64-byte boundary; every offset is given explicitly in ``opened``. A channel is
H*W*components values of its dtype, little-endian, row-major (H, W, C), row 0 = top of the screen. The
daemon unlinks both files on close, on timeout and on client death, and at start unlinks stale
``neurender-<pid>-*`` files of dead daemons of the same user.

Errors
~~~~~~
``code`` is one of ERROR_CODES below; ``message`` is for people. An error never closes other sessions;
errors about a frame carry its ``session`` and ``seq`` so the client can reclaim the slot.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import msgpack

from bridge.channels import ACTION_DIM, CONSTANTS_LAYOUT, DECLARABLE_CHANNELS, OUTPUT_FORMATS

PROTOCOL_VERSION = 1
TRANSPORTS = ("shm", "inline")
DEFAULT_SLOTS = 3
HEARTBEAT_MS = 250  # clients ping at least this often
SESSION_TIMEOUT_MS = 1200  # a session silent this long is closed: a dead client is gone within 2 s

# code -> when it is sent
ERROR_CODES: dict[str, str] = {
    "bad_msgpack": "header is not one complete msgpack map (truncated, garbage, trailing bytes, ext types)",
    "too_large": "header above max_header_bytes, or a msgpack string/array/map above the unpack limits",
    "bad_version": "v missing or not 1",
    "unknown_type": "type is not a known client message",
    "bad_field": "a required field missing, an unknown field, or a value of the wrong type or value",
    "limit_exceeded": "resolution, channel count, slots, session bytes or prompt length beyond the daemon's limits",
    "too_many_sessions": "the daemon already serves max_sessions sessions",
    "unknown_session": "no such session on this connection",
    "bad_slot": "slot out of range, missing in shm mode, given in inline mode, or still owned by the daemon",
    "bad_seq": "seq not greater than the session's previous seq",
    "size_mismatch": "inline pixel frames of the wrong count or byte size, extra frames in shm mode, or "
                     "constants/action of the wrong length",
    "non_finite": "NaN or infinity in constants or action",
    "unsupported": "the renderer cannot serve this session (e.g. a channel set it was not built for)",
    "renderer_error": "the renderer failed on this frame; the session stays open",
    "record_failed": "recording stopped (disk full, directory not writable); the session goes on",
    "internal_error": "a bug in the daemon while handling this message (it may be half applied); the daemon goes on",
}


class ProtocolError(Exception):
    """A message the daemon refuses; becomes an ``error`` reply (see ERROR_CODES)."""

    def __init__(self, code: str, message: str, *, req: int | None = None,
                 session: str | None = None, seq: int | None = None):
        assert code in ERROR_CODES, code
        super().__init__(f"{code}: {message}")
        self.code, self.message, self.req, self.session, self.seq = code, message, req, session, seq


@dataclass(frozen=True)
class Limits:
    max_width: int = 4096
    max_height: int = 4096
    max_channels: int = len(DECLARABLE_CHANNELS)
    max_sessions: int = 8
    max_slots: int = 8
    max_steps: int = 32  # a session's `steps`: bounds how long one of its frames holds the render thread
    max_sessions_per_client: int = 4  # per CURVE key (tcp) or per connection (ipc): one client cannot hold every slot
    max_prompt_chars: int = 2000
    max_header_bytes: int = 65536
    max_session_bytes: int = 2**30  # one session's shared-memory file (all slots)

    @property
    def max_frame_bytes(self) -> int:
        """Largest single ZeroMQ frame: one channel (or one output image) at the maximum size."""
        return self.max_width * self.max_height * 4 * 4

    def as_dict(self) -> dict:
        return {
            "max_width": self.max_width, "max_height": self.max_height, "max_channels": self.max_channels,
            "max_sessions": self.max_sessions, "max_slots": self.max_slots, "max_steps": self.max_steps,
            "max_sessions_per_client": self.max_sessions_per_client,
            "max_prompt_chars": self.max_prompt_chars, "max_header_bytes": self.max_header_bytes,
            "max_frame_bytes": self.max_frame_bytes, "max_session_bytes": self.max_session_bytes,
        }


# ---------------------------------------------------------------------------------------------
# Decoded client messages
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Hello:
    req: int | None
    client: str | None


@dataclass(frozen=True)
class Open:
    req: int
    width: int
    height: int
    channels: dict[str, str]
    action_dim: int
    output_format: str
    transport: str
    prompt: str | None
    steps: int | None
    slots: int
    lock: bool
    record: str | None = None


@dataclass(frozen=True)
class FrameRequest:
    session: str
    seq: int
    slot: int | None
    constants: dict[str, list[float]]
    action: list[float] | None
    prompt: str | None
    reset: bool
    pixels: tuple = field(default=(), repr=False)  # inline pixel frames (buffers), in channel order


@dataclass(frozen=True)
class Close:
    req: int
    session: str


@dataclass(frozen=True)
class Ping:
    req: int | None
    sessions: tuple[str, ...]


Request = Hello | Open | FrameRequest | Close | Ping

# field -> (accepted python types, required). bool is checked before int (bool is an int in Python).
_INT, _STR, _BOOL, _MAP, _LIST = (int,), (str,), (bool,), (dict,), (list,)
_SCHEMAS: dict[str, dict[str, tuple[tuple[type, ...], bool]]] = {
    "hello": {"req": (_INT, False), "client": (_STR, False)},
    "open": {"req": (_INT, True), "width": (_INT, True), "height": (_INT, True), "channels": (_MAP, True),
             "action_dim": (_INT, True), "output_format": (_STR, True), "transport": (_STR, True),
             "prompt": (_STR, False), "steps": (_INT, False), "slots": (_INT, False), "lock": (_BOOL, False),
             "record": (_STR, False)},
    "frame": {"session": (_STR, True), "seq": (_INT, True), "slot": (_INT, False), "constants": (_MAP, False),
              "action": (_LIST, False), "prompt": (_STR, False), "reset": (_BOOL, False)},
    "close": {"req": (_INT, True), "session": (_STR, True)},
    "ping": {"req": (_INT, False), "sessions": (_LIST, False)},
}
CLIENT_TYPES = tuple(_SCHEMAS)
SERVER_TYPES = ("welcome", "opened", "frame_done", "closed", "pong", "error", "progress", "session_closed")

_INT64 = 2**63


def _no_duplicate_keys(pairs: list) -> dict:
    """msgpack maps are pairs; a repeated key would otherwise silently keep the last value, so two
    readers of one header (ours, a proxy's) could disagree about what it says."""
    out = dict(pairs)
    if len(out) != len(pairs):
        seen = set()
        dup = next(k for k, _ in pairs if k in seen or seen.add(k))
        raise ProtocolError("bad_field", f"key {dup!r} appears twice in one map")
    return out


def _unpack(header: bytes, limits: Limits) -> Any:
    if len(header) > limits.max_header_bytes:
        raise ProtocolError("too_large", f"header is {len(header)} bytes, limit {limits.max_header_bytes}")
    try:
        return msgpack.unpackb(
            header, raw=False, strict_map_key=True, use_list=True, object_pairs_hook=_no_duplicate_keys,
            max_str_len=limits.max_prompt_chars * 4 + 64,
            max_bin_len=0, max_array_len=256, max_map_len=64, max_ext_len=0,
        )
    except ProtocolError:
        raise
    except msgpack.ExtraData:
        raise ProtocolError("bad_msgpack", "trailing bytes after the header map") from None
    except ValueError as e:  # limits ("... exceeds max_..._len") and malformed data both land here
        if "exceeds" in str(e):
            raise ProtocolError("too_large", f"msgpack unpack limit: {e}") from None
        raise ProtocolError("bad_msgpack", f"invalid msgpack: {str(e) or type(e).__name__}") from None
    except Exception as e:  # noqa: BLE001 - msgpack raises several unrelated types on garbage
        raise ProtocolError("bad_msgpack", f"invalid msgpack: {type(e).__name__}: {e}") from None


def _check_fields(kind: str, msg: dict, ids: dict) -> None:
    schema = _SCHEMAS[kind]
    for key in msg:
        if key in ("v", "type"):
            continue
        if key not in schema:
            raise ProtocolError("bad_field", f"unknown field {key!r} in {kind}", **ids)
    for key, (types, required) in schema.items():
        value = msg.get(key)
        if value is None:
            if required:
                raise ProtocolError("bad_field", f"{kind} needs field {key!r}", **ids)
            continue
        if types is _INT and (isinstance(value, bool) or not isinstance(value, int)):
            raise ProtocolError("bad_field", f"{key!r} must be an integer, got {type(value).__name__}", **ids)
        if not isinstance(value, types):
            raise ProtocolError("bad_field", f"{key!r} must be {types[0].__name__}, got {type(value).__name__}", **ids)
        if types is _INT and not 0 <= value < _INT64:
            raise ProtocolError("bad_field", f"{key!r} must be in [0, 2**63), got {value}", **ids)


def _floats(name: str, values: Any, n: int, ids: dict) -> list[float]:
    if not isinstance(values, list):
        raise ProtocolError("bad_field", f"{name} must be an array of floats", **ids)
    if len(values) != n:
        raise ProtocolError("size_mismatch", f"{name} needs {n} floats, got {len(values)}", **ids)
    out = []
    for x in values:
        if isinstance(x, bool) or not isinstance(x, (int, float)):
            raise ProtocolError("bad_field", f"{name} must contain only numbers", **ids)
        x = float(x)
        if not math.isfinite(x):
            raise ProtocolError("non_finite", f"{name} contains NaN or infinity", **ids)
        out.append(x)
    return out


def decode_request(frames: Sequence[Any], limits: Limits = Limits()) -> Request:
    """Parse and validate one client message (its ZeroMQ frames, identity already removed).

    Checks everything that does not need daemon state; raises ProtocolError (never anything else).
    """
    if not frames:
        raise ProtocolError("bad_msgpack", "empty message")
    msg = _unpack(bytes(frames[0]), limits)
    if not isinstance(msg, dict):
        raise ProtocolError("bad_msgpack", f"header must be a msgpack map, got {type(msg).__name__}")
    ids = {}
    for key in ("req", "seq"):
        if isinstance(msg.get(key), int) and not isinstance(msg.get(key), bool) and 0 <= msg[key] < _INT64:
            ids[key] = msg[key]
    if isinstance(msg.get("session"), str):
        ids["session"] = msg["session"]
    version = msg.get("v")
    if not isinstance(version, int) or isinstance(version, bool) or version != PROTOCOL_VERSION:
        raise ProtocolError("bad_version", f"protocol version {version!r} not supported, this daemon speaks "
                            f"{PROTOCOL_VERSION}", **ids)
    kind = msg.get("type")
    if not isinstance(kind, str) or kind not in _SCHEMAS:  # (a list here is unhashable: found by the fuzz test)
        raise ProtocolError("unknown_type", f"unknown message type {kind!r}; known: {', '.join(CLIENT_TYPES)}",
                            **ids)
    _check_fields(kind, msg, ids)
    extra = list(frames[1:])
    if extra and kind != "frame":
        raise ProtocolError("bad_field", f"{kind} takes no extra frames, got {len(extra)}", **ids)
    if kind == "hello":
        return Hello(msg.get("req"), msg.get("client"))
    if kind == "ping":
        sessions = msg.get("sessions") or []
        if not all(isinstance(s, str) for s in sessions):
            raise ProtocolError("bad_field", "sessions must be an array of strings", **ids)
        return Ping(msg.get("req"), tuple(sessions))
    if kind == "close":
        return Close(msg["req"], msg["session"])
    if kind == "open":
        return _decode_open(msg, limits, ids)
    return _decode_frame(msg, extra, limits, ids)


def _decode_open(msg: dict, limits: Limits, ids: dict) -> Open:
    w, h = msg["width"], msg["height"]
    if not (1 <= w <= limits.max_width and 1 <= h <= limits.max_height):
        raise ProtocolError("limit_exceeded", f"resolution {w}x{h} outside 1x1..{limits.max_width}x"
                            f"{limits.max_height}", **ids)
    channels = msg["channels"]
    if not channels:
        raise ProtocolError("bad_field", "declare at least one input channel", **ids)
    if len(channels) > limits.max_channels:
        raise ProtocolError("limit_exceeded", f"{len(channels)} channels, limit {limits.max_channels}", **ids)
    for name, dtype in channels.items():
        if name not in DECLARABLE_CHANNELS:
            raise ProtocolError("bad_field", f"unknown channel {name!r}; known: {', '.join(DECLARABLE_CHANNELS)}",
                                **ids)
        if dtype not in DECLARABLE_CHANNELS[name].dtypes:
            raise ProtocolError("bad_field", f"channel {name!r} cannot be {dtype!r}; allowed: "
                                f"{', '.join(DECLARABLE_CHANNELS[name].dtypes)}", **ids)
    if msg["output_format"] not in OUTPUT_FORMATS:
        raise ProtocolError("bad_field", f"output_format {msg['output_format']!r} not one of "
                            f"{', '.join(OUTPUT_FORMATS)}", **ids)
    if msg["transport"] not in TRANSPORTS:
        raise ProtocolError("bad_field", f"transport must be one of {TRANSPORTS}", **ids)
    if not 1 <= msg["action_dim"] <= 256:
        raise ProtocolError("bad_field", f"action_dim must be in 1..256 (ours is {ACTION_DIM})", **ids)
    slots = DEFAULT_SLOTS if msg.get("slots") is None else msg["slots"]
    if slots < 1:  # not "absent": 0 is a value, and refused like steps 0
        raise ProtocolError("bad_field", f"slots must be in 1..{limits.max_slots}, got {slots}", **ids)
    if slots > limits.max_slots:
        raise ProtocolError("limit_exceeded", f"slots must be in 1..{limits.max_slots}", **ids)
    prompt = msg.get("prompt")
    if prompt is not None and len(prompt) > limits.max_prompt_chars:
        raise ProtocolError("limit_exceeded", f"prompt longer than {limits.max_prompt_chars} chars", **ids)
    steps = msg.get("steps")
    if steps is not None and steps < 1:
        raise ProtocolError("bad_field", f"steps must be in 1..{limits.max_steps}", **ids)
    if steps is not None and steps > limits.max_steps:
        raise ProtocolError("limit_exceeded", f"steps {steps} above this daemon's max_steps {limits.max_steps} "
                            "(one frame must not hold the render thread for long)", **ids)
    if msg.get("lock") and msg["transport"] != "shm":
        raise ProtocolError("bad_field", "lock needs the shm transport (the lock file lives beside the session "
                            "file); inline sessions rely on heartbeats", **ids)
    return Open(msg["req"], w, h, dict(channels), msg["action_dim"], msg["output_format"], msg["transport"],
                prompt, steps, slots, bool(msg.get("lock", False)), msg.get("record"))


def _decode_frame(msg: dict, extra: list, limits: Limits, ids: dict) -> FrameRequest:
    constants = {}
    for name, values in (msg.get("constants") or {}).items():
        if name not in CONSTANTS_LAYOUT:
            raise ProtocolError("bad_field", f"unknown constant {name!r}", **ids)
        constants[name] = _floats(f"constants[{name!r}]", values, CONSTANTS_LAYOUT[name], ids)
    action = msg.get("action")
    if action is not None:
        if len(action) > 256:
            raise ProtocolError("size_mismatch", "action longer than 256", **ids)
        action = _floats("action", action, len(action), ids)
    prompt = msg.get("prompt")
    if prompt is not None and len(prompt) > limits.max_prompt_chars:
        raise ProtocolError("limit_exceeded", f"prompt longer than {limits.max_prompt_chars} chars", **ids)
    return FrameRequest(msg["session"], msg["seq"], msg.get("slot"), constants, action, prompt,
                 bool(msg.get("reset", False)), tuple(extra))


# ---------------------------------------------------------------------------------------------
# Encoding (daemon replies and client requests)
# ---------------------------------------------------------------------------------------------
def encode(kind: str, **fields: Any) -> bytes:
    """One header: {"v": 1, "type": kind, **fields}, None-valued fields left out."""
    assert kind in SERVER_TYPES or kind in CLIENT_TYPES, kind
    msg = {"v": PROTOCOL_VERSION, "type": kind}
    msg.update({k: v for k, v in fields.items() if v is not None})
    return msgpack.packb(msg, use_bin_type=True)


def encode_error(err: ProtocolError, dropped: list[int] | None = None) -> bytes:
    return encode("error", code=err.code, message=err.message, req=err.req, session=err.session, seq=err.seq,
                  dropped=dropped)


def decode_reply(frames: Sequence[Any]) -> tuple[dict, list]:
    """Client side: the daemon's header as a dict plus any extra frames. Trusts the daemon's framing
    but still refuses what is not a versioned map."""
    msg = msgpack.unpackb(bytes(frames[0]), raw=False, max_ext_len=0)
    if not isinstance(msg, dict) or msg.get("v") != PROTOCOL_VERSION or msg.get("type") not in SERVER_TYPES:
        raise ValueError(f"not a protocol-{PROTOCOL_VERSION} reply: {msg!r:.200}")
    return msg, list(frames[1:])
