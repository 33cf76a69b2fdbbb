"""The decoder alone: every malformed header is a typed ProtocolError, valid ones decode exactly;
a hypothesis fuzz test; the slot layout; the protocol document lists every type and code."""
from __future__ import annotations

import math
import os
from pathlib import Path

import msgpack
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge import protocol as P
from bridge.channels import CHANNELS, CONSTANTS_LAYOUT
from bridge.layout import CHANNEL_ALIGN, SLOT_ALIGN, SlotLayout

LIMITS = P.Limits(max_width=256, max_height=128, max_channels=3, max_prompt_chars=50)
OPEN = {"v": 1, "type": "open", "req": 7, "width": 16, "height": 8, "channels": {"color": "float16"},
        "action_dim": 9, "output_format": "rgb8", "transport": "shm"}
FRAME = {"v": 1, "type": "frame", "session": "abc", "seq": 3, "slot": 1}


def pack(d) -> bytes:
    return msgpack.packb(d, use_bin_type=True)


def code_of(frames, limits=LIMITS) -> str:
    with pytest.raises(P.ProtocolError) as e:
        P.decode_request(frames, limits)
    return e.value.code


def test_valid_open_and_frame_decode_exactly():
    o = P.decode_request([pack({**OPEN, "prompt": "ink", "steps": 4, "slots": 2, "lock": True})], LIMITS)
    assert o == P.Open(7, 16, 8, {"color": "float16"}, 9, "rgb8", "shm", "ink", 4, 2, True)
    f = P.decode_request([pack({**FRAME, "constants": {"dt": [0.5], "jitter_px": [1, -2.5]},
                                "action": [1, 0.25] + [0] * 7, "prompt": "x", "reset": True})], LIMITS)
    assert (f.session, f.seq, f.slot, f.prompt, f.reset) == ("abc", 3, 1, "x", True)
    assert f.constants == {"dt": [0.5], "jitter_px": [1.0, -2.5]} and f.action[:2] == [1.0, 0.25]
    inline = P.decode_request([pack({**FRAME, "slot": None}), b"\0" * 10, b"\1" * 4], LIMITS)
    assert inline.slot is None and [bytes(b) for b in inline.pixels] == [b"\0" * 10, b"\1" * 4]


BAD_HEADERS = {
    # name -> (header frames, expected code)
    "empty message": ([], "bad_msgpack"),
    "empty header": ([b""], "bad_msgpack"),
    "truncated map": ([pack(OPEN)[:-3]], "bad_msgpack"),
    "garbage bytes": ([b"\xc1\xff\x00garbage"], "bad_msgpack"),
    "trailing bytes": ([pack(OPEN) + b"\x00"], "bad_msgpack"),
    "not a map": ([pack([1, 2, 3])], "bad_msgpack"),
    "int map keys": ([pack({1: 1})], "bad_msgpack"),
    "ext type": ([pack({"v": 1, "type": "hello", "client": msgpack.ExtType(1, b"x")})], "too_large"),
    "bin instead of str": ([pack({"v": 1, "type": "hello", "client": b"abc"})], "too_large"),
    "deep nesting": ([b"\x91" * 5000], "bad_msgpack"),
    "oversized header": ([pack({"v": 1, "type": "hello", "client": "x" * 70000})], "too_large"),
    "oversized array": ([pack({"v": 1, "type": "ping", "sessions": ["a"] * 1000})], "too_large"),
    "missing version": ([pack({"type": "hello"})], "bad_version"),
    "unknown version": ([pack({"v": 2, "type": "hello"})], "bad_version"),
    "version as bool": ([pack({"v": True, "type": "hello"})], "bad_version"),
    "unknown type": ([pack({"v": 1, "type": "render_now"})], "unknown_type"),
    "type missing": ([pack({"v": 1})], "unknown_type"),
    "type as a list": ([pack({"v": 1, "type": []})], "unknown_type"),
    "unknown field": ([pack({**OPEN, "colour": 1})], "bad_field"),
    "missing field": ([pack({k: v for k, v in OPEN.items() if k != "width"})], "bad_field"),
    "width as string": ([pack({**OPEN, "width": "16"})], "bad_field"),
    "width as float": ([pack({**OPEN, "width": 16.0})], "bad_field"),
    "seq as bool": ([pack({**FRAME, "seq": True})], "bad_field"),
    "negative seq": ([pack({**FRAME, "seq": -1})], "bad_field"),
    "req beyond int64": ([pack({"v": 1, "type": "hello", "req": 2**64 - 1})], "bad_field"),
    "channels as list": ([pack({**OPEN, "channels": ["color"]})], "bad_field"),
    "unknown channel": ([pack({**OPEN, "channels": {"specular": "float16"}})], "bad_field"),
    "channel dtype not allowed": ([pack({**OPEN, "channels": {"depth": "uint8"}})], "bad_field"),
    "no channels": ([pack({**OPEN, "channels": {}})], "bad_field"),
    "unknown output format": ([pack({**OPEN, "output_format": "bgr10"})], "bad_field"),
    "unknown transport": ([pack({**OPEN, "transport": "carrier-pigeon"})], "bad_field"),
    "resolution beyond limits": ([pack({**OPEN, "width": 257})], "limit_exceeded"),
    "zero height": ([pack({**OPEN, "height": 0})], "limit_exceeded"),
    "channel count beyond limits": ([pack({**OPEN, "channels": {"color": "float16", "depth": "float16",
                                                                "normals": "float16", "motion": "float16"}})],
                                    "limit_exceeded"),
    "too many slots": ([pack({**OPEN, "slots": 99})], "limit_exceeded"),
    "prompt too long": ([pack({**OPEN, "prompt": "p" * 51})], "limit_exceeded"),
    "extra frames on open": ([pack(OPEN), b"pixels"], "bad_field"),
    "NaN in constants": ([pack({**FRAME, "constants": {"dt": [math.nan]}})], "non_finite"),
    "inf in constants": ([pack({**FRAME, "constants": {"near": [math.inf]}})], "non_finite"),
    "-inf in action": ([pack({**FRAME, "action": [-math.inf] * 9})], "non_finite"),
    "constant of wrong length": ([pack({**FRAME, "constants": {"world_to_view": [0.0] * 15}})], "size_mismatch"),
    "unknown constant": ([pack({**FRAME, "constants": {"exposure": [1.0]}})], "bad_field"),
    "string in action": ([pack({**FRAME, "action": ["w"] * 9})], "bad_field"),
    "action as map": ([pack({**FRAME, "action": {"forward": 1}})], "bad_field"),
    "reset as int": ([pack({**FRAME, "reset": 1})], "bad_field"),
    "ping sessions not strings": ([pack({"v": 1, "type": "ping", "sessions": [1, 2]})], "bad_field"),
}


@pytest.mark.parametrize("name", list(BAD_HEADERS))
def test_bad_header_gets_typed_error(name):
    frames, code = BAD_HEADERS[name]
    assert code_of(frames) == code


def test_error_echoes_req_session_and_seq():
    with pytest.raises(P.ProtocolError) as e:
        P.decode_request([pack({**FRAME, "seq": 9, "constants": {"dt": [math.nan]}})], LIMITS)
    assert (e.value.session, e.value.seq) == ("abc", 9)
    reply = msgpack.unpackb(P.encode_error(e.value, dropped=[4]))
    assert reply == {"v": 1, "type": "error", "code": "non_finite", "message": e.value.message,
                     "session": "abc", "seq": 9, "dropped": [4]}


def _json_like(depth=3):
    scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**63, 2**64 - 1), st.floats(allow_nan=True),
                        st.text(max_size=20), st.binary(max_size=20))
    return st.recursive(scalars, lambda c: st.one_of(st.lists(c, max_size=5),
                                                     st.dictionaries(st.text(max_size=12), c, max_size=6)),
                        max_leaves=20)


FIELDS = sorted({k for s in P._SCHEMAS.values() for k in s} | {"v", "type"})


@st.composite
def near_valid_messages(draw):
    """Mostly-valid headers with a few fields replaced by arbitrary values: reaches deep validation."""
    base = dict(draw(st.sampled_from([OPEN, FRAME, {"v": 1, "type": "ping", "sessions": ["a"]},
                                      {"v": 1, "type": "close", "req": 1, "session": "s"}])))
    for key in draw(st.lists(st.sampled_from(FIELDS), max_size=3)):
        base[key] = draw(_json_like())
    return pack(base)


@settings(max_examples=int(os.environ.get("BRIDGE_FUZZ_EXAMPLES", 300)), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.binary(max_size=200), near_valid_messages(),
                 st.builds(lambda d: pack(d), _json_like())),
       st.lists(st.binary(max_size=16), max_size=3))
def test_fuzz_decoder_only_raises_protocol_errors(header, extra):
    """Any bytes: either a request object or a ProtocolError with a known code, nothing else."""
    try:
        req = P.decode_request([header, *extra], LIMITS)
    except P.ProtocolError as e:
        assert e.code in P.ERROR_CODES
        return
    assert isinstance(req, (P.Hello, P.Open, P.FrameRequest, P.Close, P.Ping))
    if isinstance(req, P.FrameRequest):
        for v in req.constants.values():
            assert all(math.isfinite(x) for x in v)
    if isinstance(req, P.Open):
        assert 1 <= req.width <= LIMITS.max_width and set(req.channels) <= set(CHANNELS)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 40), st.integers(1, 40), st.integers(1, 4),
       st.lists(st.sampled_from(list(CHANNELS)), min_size=1, max_size=7, unique=True),
       st.sampled_from(["rgb8", "rgba8", "rgb16f"]))
def test_layout_aligned_disjoint_and_sized(w, h, slots, names, fmt):
    chans = {n: CHANNELS[n].dtypes[-1] for n in names}
    L = SlotLayout.build(w, h, chans, fmt, slots)
    spans = []
    for k in range(slots):
        assert L.input_offsets[k][0] % SLOT_ALIGN == 0 and L.output_offsets[k] % SLOT_ALIGN == 0
        for c, off in zip(L.channels, L.input_offsets[k]):
            assert off % CHANNEL_ALIGN == 0
            assert c.nbytes == w * h * CHANNELS[c.name].components * np.dtype(c.dtype).itemsize
            spans.append((off, off + c.nbytes))
        spans.append((L.output_offsets[k], L.output_offsets[k] + L.output.nbytes))
    spans.sort()
    assert all(a_end <= b_start for (_, a_end), (b_start, _) in zip(spans, spans[1:]))
    assert spans[-1][1] <= L.size
    buf = bytearray(L.size)
    views = L.input_views(buf, slots - 1)
    views[names[0]][...] = 1
    assert sum(buf) > 0


def test_protocol_document_names_every_type_code_field_and_constant():
    doc = (Path(__file__).resolve().parents[1] / "docs" / "protocol.md").read_text()
    for word in [*P.CLIENT_TYPES, *P.SERVER_TYPES, *P.ERROR_CODES, *CHANNELS, *CONSTANTS_LAYOUT, *FIELDS]:
        assert f"`{word}`" in doc or f"{word}" in doc, word
    for code in P.ERROR_CODES:
        assert f"| `{code}` |" in doc, code
        assert code in P.__doc__ or "ERROR_CODES" in P.__doc__
