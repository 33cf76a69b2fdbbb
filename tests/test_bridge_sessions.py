"""The daemon over inproc:// (real ZeroMQ sockets, real shared-memory files): bad inputs get typed
errors and leave the other sessions undisturbed; newest-frame-wins dropping; slot ownership;
files 0600 and unlinked; liveness by heartbeat timeout and by flock."""
from __future__ import annotations

import fcntl
import math
import os
import stat
import time

import msgpack
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge import protocol as P
from bridge.client import Client
from _bridge_helpers import GatedRenderer, Raw, expected_rgb8, inproc_daemon, session_memory_exists, wait_until

LIMITS = P.Limits(max_width=64, max_height=32, max_channels=4, max_sessions=4, max_session_bytes=200_000)
W, H = 16, 8


@pytest.fixture
def env():
    """A daemon with a gated renderer, a healthy Client session on it, and a raw peer."""
    renderer = GatedRenderer()
    with inproc_daemon(renderer, limits=LIMITS) as (daemon, ctx):
        with Client(daemon.endpoints[0], context=ctx, timeout=5) as client:
            healthy = client.open_session(W, H, {"color": "float16", "depth": "float32"})
            raw = Raw(ctx, daemon.endpoints[0])
            try:
                yield daemon, renderer, healthy, raw
            finally:
                raw.close()


def assert_healthy(session, rng=np.random.default_rng(0)) -> None:
    color = rng.random((H, W, 3), np.float32).astype(np.float16)
    r = session.render({"color": color, "depth": np.ones((H, W, 1), np.float32)})
    np.testing.assert_array_equal(r.image, expected_rgb8(color))


def raw_frame(raw: Raw, opened: dict, seq: int, extra=(), **fields) -> dict:
    msg = {"type": "frame", "session": opened["session"], "seq": seq, **fields}
    return raw.request(extra, **msg)


def inline_pixels(opened):
    return [b"\0" * c["nbytes"] for c in opened["channels"]]


# name -> (function(raw) -> reply, expected error code). Each runs on a fresh daemon, then the healthy
# session must still render exactly and the raw peer's own session (if any) must still work.
def _open(raw, **kw):
    return raw.open(W, H, **kw)


CASES = {
    "garbage msgpack": (lambda raw: (raw.send(b"\xc1garbage"), raw.recv()[0])[1], "bad_msgpack"),
    "truncated msgpack": (lambda raw: (raw.send(msgpack.packb({"v": 1, "type": "hello"})[:-2]),
                                       raw.recv()[0])[1], "bad_msgpack"),
    "wrong type of a field": (lambda raw: raw.request(type="open", req="one"), "bad_field"),
    "unknown message type": (lambda raw: raw.request(type="teleport"), "unknown_type"),
    "unknown version": (lambda raw: raw.send(msgpack.packb({"v": 99, "type": "hello"})) or raw.recv()[0],
                        "bad_version"),
    "oversized header": (lambda raw: raw.request(type="hello", client="x" * (LIMITS.max_header_bytes + 1)),
                         "too_large"),
    "frame for an unknown session": (lambda raw: raw.request(type="frame", session="nope", seq=0, slot=0),
                                     "unknown_session"),
    "close of an unknown session": (lambda raw: raw.request(type="close", req=5, session="nope"),
                                    "unknown_session"),
    "slot out of range": (lambda raw: raw_frame(raw, _open(raw), 0, slot=3), "bad_slot"),
    "missing slot in shm mode": (lambda raw: raw_frame(raw, _open(raw), 0), "bad_slot"),
    "pixel frames in shm mode": (lambda raw: raw_frame(raw, _open(raw), 0, [b"\0" * 16], slot=0),
                                 "size_mismatch"),
    "inline frame with a slot": (lambda raw: raw_frame(raw, o := _open(raw, transport="inline"), 0,
                                                       inline_pixels(o), slot=0), "bad_slot"),
    "inline pixels of the wrong size": (lambda raw: raw_frame(raw, _open(raw, transport="inline"), 0,
                                                              [b"\0" * (W * H * 3 * 2 - 1)]), "size_mismatch"),
    "inline pixels: too few frames": (lambda raw: raw_frame(raw, _open(raw, transport="inline",
                                                                       channels={"color": "uint8",
                                                                                 "depth": "float16"}),
                                                            0, [b"\0" * (W * H * 3)]), "size_mismatch"),
    "NaN in constants": (lambda raw: raw_frame(raw, _open(raw), 0, slot=0, constants={"dt": [math.nan]}),
                         "non_finite"),
    "inf in action": (lambda raw: raw_frame(raw, _open(raw), 0, slot=0, action=[math.inf] + [0] * 8),
                      "non_finite"),
    "constant overflowing float32": (lambda raw: raw_frame(raw, _open(raw), 0, slot=0,
                                                           constants={"far": [1e300]}), "non_finite"),
    "action of the wrong length": (lambda raw: raw_frame(raw, _open(raw), 0, slot=0, action=[0.0] * 4),
                                   "size_mismatch"),
    "resolution beyond limits": (lambda raw: raw.open(LIMITS.max_width + 1, H), "limit_exceeded"),
    "channel count beyond limits": (lambda raw: raw.open(W, H, channels={
        "color": "float16", "depth": "float16", "normals": "float16", "motion": "float16",
        "albedo": "float16"}), "limit_exceeded"),
    "session bytes beyond limits": (lambda raw: raw.open(64, 32, channels={"normals": "float32"}, slots=8),
                                    "limit_exceeded"),
    "renderer refuses the spec": (lambda raw: raw.open(W, H, channels={"material_id": "uint8"}), "unsupported"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_gets_typed_error_and_others_undisturbed(env, case):
    daemon, renderer, healthy, raw = env
    fn, code = CASES[case]
    reply = fn(raw)
    assert reply["type"] == "error" and reply["code"] == code, reply
    assert reply["code"] in P.ERROR_CODES and reply["message"]
    assert_healthy(healthy)
    # the raw peer can still talk to the daemon after its mistake
    assert raw.request(type="hello", req=42)["type"] == "welcome"


def test_frame_error_carries_session_and_seq_and_keeps_the_session(env):
    daemon, renderer, healthy, raw = env
    o = raw.open(W, H)
    bad = raw_frame(raw, o, 4, slot=0, constants={"dt": [math.inf]})
    assert (bad["session"], bad["seq"]) == (o["session"], 4)
    # a refused frame consumes neither the seq nor the slot
    ok = raw_frame(raw, o, 4, slot=0)
    assert ok["type"] == "frame_done" and ok["seq"] == 4 and ok["dropped"] == []
    assert raw_frame(raw, o, 4, slot=1)["code"] == "bad_seq"
    assert raw_frame(raw, o, 3, slot=1)["code"] == "bad_seq"


def test_renderer_error_is_reported_and_the_session_stays_open(env):
    daemon, renderer, healthy, raw = env
    o = raw.open(W, H)
    renderer.fail_seqs = {1}
    assert raw_frame(raw, o, 0, slot=0)["type"] == "frame_done"
    err = raw_frame(raw, o, 1, slot=1)
    assert (err["type"], err["code"], err["seq"]) == ("error", "renderer_error", 1)
    assert "planned failure" in err["message"]
    assert raw_frame(raw, o, 2, slot=1)["type"] == "frame_done"
    assert_healthy(healthy)


def test_too_many_sessions(env):
    daemon, renderer, healthy, raw = env
    opened = [raw.open(W, H) for _ in range(LIMITS.max_sessions - 1)]
    assert all(o["type"] == "opened" for o in opened)
    assert raw.open(W, H)["code"] == "too_many_sessions"
    assert raw.request(type="close", req=1, session=opened[0]["session"])["type"] == "closed"
    assert raw.open(W, H)["type"] == "opened"
    assert_healthy(healthy)


def test_session_belongs_to_its_connection(env):
    daemon, renderer, healthy, raw = env
    reply = raw_frame(raw, {"session": healthy.id}, 10**6, slot=0)
    assert reply["code"] == "unknown_session"
    assert raw.request(type="close", req=1, session=healthy.id)["code"] == "unknown_session"
    assert_healthy(healthy)


def test_newest_frame_wins_with_explicit_drops_and_no_reordering(env):
    daemon, renderer, healthy, raw = env
    o = raw.open(W, H, slots=4)
    renderer.gate.clear()
    renderer.started.clear()
    raw.send_msg(type="frame", session=o["session"], seq=10, slot=0)
    assert renderer.started.wait(5)  # seq 10 is rendering (and stuck at the gate)
    for seq, slot in ((11, 1), (12, 2)):
        raw.send_msg(type="frame", session=o["session"], seq=seq, slot=slot)
    # slot 1 and 2 are the daemon's now: reusing one is refused, without disturbing the queue
    assert raw_frame(raw, o, 13, slot=2)["code"] == "bad_slot"
    raw.send_msg(type="frame", session=o["session"], seq=14, slot=3)  # replaces 12, which replaced 11
    assert raw.request(type="ping", req=1)["type"] == "pong"  # in order per connection: 14 is queued now
    renderer.gate.set()
    replies = [raw.recv()[0] for _ in range(2)]
    assert [(r["type"], r["seq"]) for r in replies] == [("frame_done", 10), ("frame_done", 14)]
    assert replies[0]["dropped"] == [11, 12] and replies[1]["dropped"] == []
    assert raw.silent(0.2)  # every seq answered exactly once: nothing more comes
    answered = [r["seq"] for r in replies] + [d for r in replies for d in r["dropped"]]
    assert sorted(answered) == [10, 11, 12, 14]
    # the dropped frames' slots are the client's again
    assert raw_frame(raw, o, 15, slot=1)["type"] == "frame_done"
    assert raw_frame(raw, o, 16, slot=2)["type"] == "frame_done"


def test_close_reports_the_rendering_and_the_waiting_frame_as_dropped(env):
    daemon, renderer, healthy, raw = env
    o = raw.open(W, H)
    renderer.gate.clear()
    renderer.started.clear()
    raw.send_msg(type="frame", session=o["session"], seq=0, slot=0)
    assert renderer.started.wait(5)
    raw.send_msg(type="frame", session=o["session"], seq=1, slot=1)  # waits behind seq 0
    closed = raw.request(type="close", req=9, session=o["session"])
    # every frame is answered exactly once: the one rendering (0) will never get a frame_done
    assert closed == {"v": 1, "type": "closed", "req": 9, "session": o["session"], "dropped": [0, 1]}
    renderer.gate.set()
    assert raw.silent(0.3)  # ... so its result is discarded, not sent after `closed`
    assert not session_memory_exists(o) and not os.path.exists(o["lock_path"])
    assert_healthy(healthy)


def test_shared_memory_files_are_private_and_unlinked_on_close(env):
    daemon, renderer, healthy, raw = env
    o = raw.open(W, H, channels={"color": "uint8", "normals": "float16"}, output_format="rgba8")
    for path in (o["shm_path"], o["lock_path"]):
        st = os.stat(path)
        assert stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == os.getuid()
    assert o["shm_path"].startswith(f"/proc/{os.getpid()}/fd/") and session_memory_exists(o)
    assert os.path.basename(o["lock_path"]) == f"neurender-{os.getpid()}-{o['session']}.lock"
    assert os.path.getsize(o["shm_path"]) == o["shm_size"]
    # sealed: nobody can change its size (what made mapping it unsafe)
    fd = os.open(o["shm_path"], os.O_RDWR)
    try:
        want = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SEAL
        assert fcntl.fcntl(fd, fcntl.F_GET_SEALS) & want == want
    finally:
        os.close(fd)
    assert o["channels"] == [{"name": "color", "dtype": "uint8", "components": 3, "nbytes": W * H * 3},
                             {"name": "normals", "dtype": "float16", "components": 3, "nbytes": W * H * 6}]
    assert o["output"] == {"format": "rgba8", "dtype": "uint8", "components": 4, "nbytes": W * H * 4}
    raw.request(type="close", req=2, session=o["session"])
    assert not session_memory_exists(o) and not os.path.exists(o["lock_path"])


def test_gbuffer_only_session_gets_deterministic_shading(env):
    daemon, renderer, healthy, raw = env
    with Client(daemon.endpoints[0], context=daemon.ctx, heartbeat=False) as c:
        s = c.open_session(W, H, {"normals": "float32", "albedo": "uint8", "depth": "float16"},
                           output_format="rgb16f")
        rng = np.random.default_rng(3)
        n = rng.normal(size=(H, W, 3)).astype(np.float32)
        n /= np.linalg.norm(n, axis=-1, keepdims=True)
        albedo = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
        depth = rng.random((H, W, 1)).astype(np.float16)
        r1 = s.render({"normals": n, "albedo": albedo, "depth": depth}).image.copy()
        r2 = s.render({"normals": n, "albedo": albedo, "depth": depth}).image.copy()
        np.testing.assert_array_equal(r1, r2)
        light = np.array([0.3, 0.6, 0.74]) / np.linalg.norm([0.3, 0.6, 0.74])
        ref = albedo / 255.0 * (0.15 + 0.85 * np.clip(n.astype(np.float64) @ light, 0, 1))[..., None]
        assert np.abs(r1.astype(np.float64) - ref).max() < 2e-3  # float16 output
        assert r1.dtype == np.float16 and r1.shape == (H, W, 3)


def test_heartbeat_timeout_closes_a_silent_session():
    with inproc_daemon(limits=LIMITS, heartbeat_ms=50, session_timeout_ms=600) as (daemon, ctx):
        raw = Raw(ctx, daemon.endpoints[0])
        try:
            quiet, talking = raw.open(W, H), raw.open(W, H, transport="inline")
            t0 = time.monotonic()
            notices = []
            while time.monotonic() - t0 < 1.2:  # the talking session pings, the quiet one does not
                raw.send_msg(type="ping", req=1, sessions=[talking["session"]])
                while (m := raw.recv()[0])["type"] != "pong":
                    notices.append(m)
                time.sleep(0.05)
            pong = raw.request(type="ping", req=2, sessions=[quiet["session"], talking["session"]])
            assert pong["unknown"] == [quiet["session"]] and pong["pid"] == os.getpid()
            assert not session_memory_exists(quiet)
            # the daemon said so, once, in the message the protocol defines
            assert notices == [{"v": 1, "type": "session_closed", "session": quiet["session"],
                                "reason": "no message for 0.6 s", "dropped": []}]
        finally:
            raw.close()


def test_dead_lock_holder_is_detected_at_once_and_files_unlinked():
    with inproc_daemon(limits=LIMITS, session_timeout_ms=60_000) as (daemon, ctx):
        raw = Raw(ctx, daemon.endpoints[0])
        o = raw.open(W, H, lock=True)
        fd = os.open(o["lock_path"], os.O_RDWR)
        fcntl.flock(fd, fcntl.LOCK_SH)
        assert raw_frame(raw, o, 0, slot=0)["type"] == "frame_done"
        time.sleep(0.3)
        assert session_memory_exists(o)  # holder alive: the session stays
        os.close(fd)  # what the kernel does when the client process dies
        took = wait_until(lambda: not session_memory_exists(o), 2.0)
        assert took < 2.0 and not os.path.exists(o["lock_path"])  # the timeout here is 60 s: the flock did it
        assert raw.request(type="ping", req=3, sessions=[o["session"]])["unknown"] == [o["session"]]
        raw.close()


def test_peer_gone_mid_frame_does_not_hurt_the_daemon(env):
    daemon, renderer, healthy, raw = env
    o = raw.open(W, H, transport="inline")
    renderer.gate.clear()
    renderer.started.clear()
    raw.send_msg(inline_pixels(o), type="frame", session=o["session"], seq=0)
    assert renderer.started.wait(5)
    raw.close()  # the client vanishes while its frame renders: the reply has nowhere to go
    renderer.gate.set()
    assert_healthy(healthy)
    wait_until(lambda: o["session"] not in daemon.sessions, 3.0)  # heartbeat timeout
    assert_healthy(healthy)


def test_a_daemon_bug_is_an_internal_error_not_a_crash(env, monkeypatch):
    daemon, renderer, healthy, raw = env

    def broken(sock, peer, req):
        raise KeyError("planted bug")
    monkeypatch.setattr(daemon, "_on_hello", broken)
    reply = raw.request(type="hello", req=1)
    assert reply["code"] == "internal_error" and "planted bug" in reply["message"]
    assert_healthy(healthy)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(bursts=st.lists(st.tuples(st.integers(1, 3), st.booleans()), min_size=1, max_size=12),
       transport=st.sampled_from(["shm", "inline"]))
def test_every_seq_answered_once_in_order_under_random_pipelining(env, bursts, transport):
    """Random bursts of submits (up to the free slots), with or without the renderer paused (then a
    burst of 3 must drop one): each seq comes back exactly once (result or dropped), results in
    increasing order, each image exact."""
    daemon, renderer, healthy, raw = env
    with Client(daemon.endpoints[0], context=daemon.ctx, heartbeat=False) as c:
        s = c.open_session(W, H, {"color": "uint8"}, transport=transport, output_format="rgb8")
        sent, answered, results, must_drop = [], [], [], []

        def take(r):
            answered.extend([r.seq, *r.dropped])
            results.append(r.seq)
            np.testing.assert_array_equal(r.image, np.full((H, W, 3), r.seq % 251, np.uint8))

        for n, paused in bursts:
            if paused:  # the burst's first frame is rendering while the others arrive: they must drop
                while s.in_flight():  # an empty pipeline first, so "first" is the one rendering
                    take(s.poll(timeout=5))
                renderer.gate.clear()
                renderer.started.clear()
            for k in range(n):
                if not s.free_slots():
                    break
                sent.append(s.submit({"color": np.full((H, W, 3), s._seq % 251, np.uint8)}))
                if paused and k == 0:
                    assert renderer.started.wait(5)
            if paused and k == 2:
                must_drop.append(sent[-2])  # replaced while waiting behind the rendering frame
            if paused:
                c._request("ping")  # the daemon reads a connection in order: all frames are queued now
            renderer.gate.set()
            r = s.poll(timeout=5)
            while r is not None:  # drain what arrived: an shm image is valid until its slot is reused
                take(r)
                r = s.poll(timeout=0)
        while s.in_flight():
            take(s.poll(timeout=5))
        assert sorted(answered) == sent and len(set(answered)) == len(answered)
        assert results == sorted(results) and results[-1] == sent[-1]
        assert not set(must_drop) & set(results)



def test_prompt_and_reset_of_a_dropped_frame_carry_over(env):
    daemon, renderer, healthy, raw = env
    o = raw.open(W, H)
    renderer.gate.clear()
    renderer.started.clear()
    raw.send_msg(type="frame", session=o["session"], seq=0, slot=0)
    assert renderer.started.wait(5)
    raw.send_msg(type="frame", session=o["session"], seq=1, slot=1, prompt="ink wash", reset=True)
    raw.send_msg(type="frame", session=o["session"], seq=2, slot=2)  # replaces 1
    assert raw.request(type="ping", req=1)["type"] == "pong"
    renderer.events.clear()
    renderer.gate.set()
    replies = [raw.recv()[0] for _ in range(2)]
    assert [(r["seq"], r["dropped"]) for r in replies] == [(0, [1]), (2, [])]
    assert renderer.events == [(0, None, False), (2, "ink wash", True)]


def test_sessions_take_turns_on_the_worker(env):
    """A session that keeps replacing its waiting frame goes to the back of the queue: a busy client
    cannot starve another."""
    daemon, renderer, healthy, raw = env
    a, b = raw.open(W, H), raw.open(W, H)
    renderer.gate.clear()
    renderer.started.clear()
    raw.send_msg(type="frame", session=a["session"], seq=0, slot=0)
    assert renderer.started.wait(5)
    raw.send_msg(type="frame", session=a["session"], seq=1, slot=1)
    raw.send_msg(type="frame", session=b["session"], seq=100, slot=0)
    raw.send_msg(type="frame", session=a["session"], seq=2, slot=2)  # replaces 1, queues behind b
    assert raw.request(type="ping", req=1)["type"] == "pong"
    renderer.events.clear()
    renderer.gate.set()
    replies = [raw.recv()[0] for _ in range(3)]
    assert [e[0] for e in renderer.events] == [0, 100, 2]
    assert sorted((r["session"] == a["session"], r["seq"], r["dropped"]) for r in replies) == [
        (False, 100, []), (True, 0, [1]), (True, 2, [])]


def test_poll_with_zero_timeout_reads_a_result_waiting_on_the_socket(env):
    """poll(timeout=0) is a non-blocking look at the socket, not only at results read earlier: a
    pipelined game loop must not lag by its slot count."""
    daemon, renderer, healthy, raw = env
    color = np.random.default_rng(3).random((H, W, 3), np.float32).astype(np.float16)
    seq = healthy.submit({"color": color, "depth": np.ones((H, W, 1), np.float32)})
    assert healthy._client._sock.poll(5000)  # the reply is readable on the socket; nothing has read it
    r = healthy.poll(timeout=0)
    assert r is not None and r.seq == seq
    np.testing.assert_array_equal(r.image, expected_rgb8(color))
    assert healthy.poll(timeout=0) is None  # nothing more is waiting
