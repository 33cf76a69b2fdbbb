"""Hostile clients against a real daemon process (`neurender serve` as a subprocess, real ipc/tcp
sockets, real files in shared memory): what an outside client can do from docs/protocol.md alone must
never take the daemon, another client's session or another session's frames with it."""
from __future__ import annotations

import ctypes
import fcntl
import os
import signal
import time
from pathlib import Path

import msgpack
import numpy as np
import pytest
import zmq

from bridge.client import BridgeError, Client
from bridge.daemon import spawn_daemon

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
W, H = 32, 16


def dealer(ctx, endpoint, routing_id: bytes | None = None, curve=None) -> zmq.Socket:
    s = ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    if routing_id is not None:
        s.setsockopt(zmq.ROUTING_ID, routing_id)
    if curve is not None:
        s.curve_serverkey, s.curve_publickey, s.curve_secretkey = curve
    if "://[" in endpoint:
        s.setsockopt(zmq.IPV6, 1)
    s.connect(endpoint)
    return s


def send(sock, **fields) -> None:
    sock.send(msgpack.packb({"v": 1, **fields}))


def recv(sock, timeout=5.0) -> dict:
    assert sock.poll(int(timeout * 1000)), "no reply from the daemon"
    return msgpack.unpackb(sock.recv_multipart()[0])


def open_msg(transport="shm", **more) -> dict:
    return dict(type="open", req=1, width=W, height=H, channels={"color": "float16"}, action_dim=9,
                output_format="rgb8", transport=transport, **more)


@pytest.fixture(scope="module")
def daemon():
    with spawn_daemon("passthrough", runtime_dir="private", env=ENV) as d:
        yield d


def healthy_frame(c: Client, value=0.25) -> None:
    """A second client's session still renders the right pixels."""
    with c.open_session(W, H, {"color": "float16"}) as s:
        r = s.render({"color": np.full((H, W, 3), value, np.float16)})
        assert r.image[0, 0, 0] == int(np.float16(value) * 255 + 0.5)


def _punch_hole(path: str, size: int) -> None:
    """fallocate(PUNCH_HOLE | KEEP_SIZE): frees the pages without changing the size."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long]
    fd = os.open(path, os.O_RDWR)
    try:
        if libc.fallocate(fd, 0x02 | 0x01, 0, size) != 0:
            e = ctypes.get_errno()
            raise OSError(e, os.strerror(e))
    finally:
        os.close(fd)


def _add_write_seal(path: str) -> None:
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_WRITE)
    finally:
        os.close(fd)


# attack -> what the kernel answers the client: the daemon sealed the memory's size (and its seals)
ATTACKS = {
    "truncate": (lambda path, size: os.truncate(path, 0), "refused"),
    "shrink": (lambda path, size: os.truncate(path, size // 2), "refused"),
    "grow": (lambda path, size: os.truncate(path, size * 2), "refused"),
    "unlink": (lambda path, size: os.unlink(path), "refused"),
    "seal_write": (lambda path, size: _add_write_seal(path), "refused"),
    "chmod": (lambda path, size: os.chmod(path, 0), "done"),
    "punch_hole": (_punch_hole, "done"),  # pages freed, size kept: they read as zeros, never SIGBUS
}


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_client_mangling_its_session_memory_never_kills_the_daemon(daemon, attack):
    """The client maps its session memory read-write and the daemon maps it too. Truncating a file
    under a daemon that had it mapped was a SIGBUS that ended every session of every client; the
    memory is now sealed against shrinking and growing, so those are refused by the kernel, and what a
    client may still do to it (chmod, freeing its pages) leaves the daemon rendering its frames."""
    mangle, expected = ATTACKS[attack]
    with Client(daemon.endpoint) as c, Client(daemon.endpoint) as other:
        s = c.open_session(W, H, {"color": "float16"})
        path = s.info["layout"]["shm_path"]
        size = os.path.getsize(path)
        for _ in range(3):
            s.render({"color": np.full((H, W, 3), 0.5, np.float16)})
        try:
            mangle(path, size)
            outcome = "done"
        except PermissionError:
            outcome = "refused"
        assert outcome == expected
        assert os.stat(f"/proc/{daemon.pid}/fd/{path.rsplit('/', 1)[1]}").st_size == size
        if attack == "punch_hole":  # the daemon renders the zeros the client now sees, no fault
            s.submit(slot=s.acquire_slot())
            assert s.poll(timeout=5).image.max() == 0
        for k in range(2 * s.slots):  # every slot, after the attack: the daemon renders exact pixels
            v = (k + 1) / 8
            r = s.render({"color": np.full((H, W, 3), v, np.float16)})
            assert (r.image == int(v * 255 + 0.5)).all()
        assert daemon.alive()
        s.close()
        healthy_frame(other)
        assert daemon.alive()


def test_a_routing_id_cannot_take_over_a_disconnected_clients_session_ipc(daemon):
    ctx = zmq.Context()
    try:
        victim = dealer(ctx, daemon.endpoint, b"victim")
        send(victim, **open_msg("inline"))
        o = recv(victim)
        assert o["type"] == "opened"
        pixels = np.zeros((H, W, 3), np.float16).tobytes()
        victim.send_multipart([msgpack.packb({"v": 1, "type": "frame", "session": o["session"], "seq": 0}), pixels])
        assert recv(victim)["type"] == "frame_done"
        victim.close(0)  # disconnects; its session is still within the 1.2 s timeout
        time.sleep(0.2)
        thief = dealer(ctx, daemon.endpoint, b"victim")
        thief.send_multipart([msgpack.packb({"v": 1, "type": "frame", "session": o["session"], "seq": 1}), pixels])
        m = recv(thief)
        assert (m["type"], m["code"]) == ("error", "unknown_session")
        send(thief, type="close", req=2, session=o["session"])
        assert recv(thief)["code"] == "unknown_session"
        thief.close(0)
    finally:
        ctx.destroy(0)


def test_sessions_are_bound_to_the_curve_key_and_revocation_cuts_them(tmp_path):
    """Over TCP a second allow-listed key reusing the victim's routing id gets nothing; after
    `keys revoke` + SIGHUP a revoked client that is still connected loses its session at once."""
    from bridge import keys
    kdir = tmp_path / "keys"
    a_pub, a_sec = keys.add_client(kdir, "alice")
    b_pub, b_sec = keys.add_client(kdir, "mallory")
    with spawn_daemon("passthrough", runtime_dir="private", tcp="127.0.0.1:0", keys_dir=kdir, env=ENV) as d:
        ctx = zmq.Context()
        try:
            server = d.server_public_key
            alice = dealer(ctx, d.tcp_endpoint, b"victim", (server, *keys.load_pair(a_sec)))
            send(alice, **open_msg("inline"))
            o = recv(alice)
            pixels = np.zeros((H, W, 3), np.float16).tobytes()
            frame = lambda seq: [msgpack.packb({"v": 1, "type": "frame", "session": o["session"], "seq": seq}), pixels]  # noqa: E731
            alice.send_multipart(frame(0))
            assert recv(alice)["type"] == "frame_done"
            mallory = dealer(ctx, d.tcp_endpoint, b"victim", (server, *keys.load_pair(b_sec)))
            mallory.send_multipart(frame(5))  # alice is connected: libzmq refuses the duplicate id, or we do
            assert mallory.poll(1000) == 0 or recv(mallory)["code"] == "unknown_session"
            alice.send_multipart(frame(6))
            assert recv(alice)["type"] == "frame_done"  # alice unaffected
            alice.close(0)
            time.sleep(0.3)
            mallory.close(0)
            mallory = dealer(ctx, d.tcp_endpoint, b"victim", (server, *keys.load_pair(b_sec)))
            mallory.send_multipart(frame(7))
            assert recv(mallory)["code"] == "unknown_session"  # bound to alice's key and connection
            # revocation: a connected client of a revoked key loses its session and is not listened to
            alice = dealer(ctx, d.tcp_endpoint, None, (server, *keys.load_pair(a_sec)))
            send(alice, **open_msg("inline"))
            o = recv(alice)
            alice.send_multipart(frame(0))
            assert recv(alice)["type"] == "frame_done"
            assert keys.revoke(kdir, "alice")
            os.kill(d.pid, signal.SIGHUP)
            m = recv(alice, 3)
            assert m == {"v": 1, "type": "session_closed", "session": o["session"], "reason": "client key revoked",
                         "dropped": []}
            alice.send_multipart(frame(1))
            send(alice, type="hello", req=3)
            assert alice.poll(500) == 0  # nothing more for a revoked key
            mallory.close(0)
            alice.close(0)
        finally:
            ctx.destroy(0)
        assert d.alive()


def test_close_answers_every_frame_exactly_once():
    """Frames in flight when `close` arrives (one rendering, one waiting): each gets exactly one answer,
    a frame_done, an error with its seq, or an entry in a `dropped` list (the one rendering used to get
    none)."""
    with spawn_daemon("tests._bridge_test_backends:slow,step=0.02", runtime_dir="private", env=ENV) as d:
        ctx = zmq.Context()
        try:
            sock = dealer(ctx, d.endpoint)
            pixels = np.zeros((H, W, 3), np.float16).tobytes()
            for trial in range(6):
                send(sock, **open_msg("inline"))
                o = recv(sock)
                n = 10 + trial
                for seq in range(n):
                    sock.send_multipart([msgpack.packb({"v": 1, "type": "frame", "session": o["session"],
                                                        "seq": seq}), pixels])
                    time.sleep(0.007)
                send(sock, type="close", req=2, session=o["session"])
                answers = []
                while True:
                    m = recv(sock)
                    if m["type"] == "frame_done":
                        answers.append(m["seq"])
                    answers += m.get("dropped") or []
                    if m["type"] == "closed":
                        break
                assert sock.poll(300) == 0  # nothing after `closed`
                assert sorted(answers) == list(range(n)), (trial, sorted(answers))
        finally:
            ctx.destroy(0)


def test_nan_pixels_are_repaired_before_the_renderers_context(tmp_path):
    """One NaN in `color` used to poison a context-keeping renderer for every later frame."""
    with spawn_daemon("tests._bridge_test_backends:context", runtime_dir="private", env=ENV) as d, \
            Client(d.endpoint) as c:
        for transport in ("shm", "inline"):
            s = c.open_session(W, H, {"color": "float16"}, output_format="rgb16f", transport=transport)
            color = np.full((H, W, 3), 0.5, np.float16)
            color[3, 4, 1] = np.nan
            color[0, 0, 0] = np.inf
            r = s.render({"color": color})
            assert r.repaired == 2
            assert np.isfinite(r.image).all() and r.image[3, 4, 1] == 0 and r.image[0, 0, 0] == 0
            if transport == "shm":  # repaired in a copy: the daemon never writes into the client's input slot
                assert np.isnan(s.input_views(r.slot)["color"][3, 4, 1])
            for _ in range(3):
                r = s.render({"color": np.full((H, W, 3), 0.5, np.float16)})
                assert r.repaired == 0 and np.isfinite(r.image).all()
            assert abs(float(r.image[3, 4, 1]) - 0.375) < 1e-3  # (0 + 3 x 0.5) / 4: the 0, never NaN
            s.close()


def test_open_refuses_zero_slots_lock_on_inline_duplicate_keys_and_too_many_steps(daemon):
    ctx = zmq.Context()
    try:
        sock = dealer(ctx, daemon.endpoint)
        for fields, code in [({"slots": 0}, "bad_field"), ({"steps": 0}, "bad_field"),
                             ({"steps": 33}, "limit_exceeded"), ({"transport": "inline", "lock": True}, "bad_field")]:
            msg = open_msg()
            msg.update(fields)
            send(sock, **msg)
            m = recv(sock)
            assert (m["type"], m["code"]) == ("error", code), fields
        # {"v":1,"type":"hello","type":"open"}: msgpack allows it, we refuse it
        sock.send(b"\x83\xa1v\x01\xa4type\xa5hello\xa4type\xa4open")
        m = recv(sock)
        assert (m["type"], m["code"]) == ("error", "bad_field") and "twice" in m["message"]
    finally:
        ctx.destroy(0)


def test_ipv6_loopback_and_any_127_address_serve_insecure():
    for tcp, host in (("[::1]:0", "[::1]"), ("127.0.0.2:0", "127.0.0.2")):
        with spawn_daemon("passthrough", runtime_dir="private", tcp=tcp, insecure=True, no_ipc=True, env=ENV) as d:
            assert d.tcp_endpoint.startswith(f"tcp://{host}:")
            with Client(d.tcp_endpoint) as c:
                healthy_frame(c)


def test_a_slow_session_does_not_stall_another_and_one_client_cannot_hold_every_session():
    """Turns by render time, not by frame: next to a session of 8-step frames (0.2 s each) a pipelined
    1-step session (25 ms frames) gets about half the render thread (~20 frames/s). Round-robin gave it
    one frame per heavy frame (~4 frames/s). A frame is never preempted: `--max-steps` bounds how long
    one can hold the thread."""
    import threading
    with spawn_daemon("tests._bridge_test_backends:slow,step=0.025", runtime_dir="private", env=ENV,
                      extra_args=["--max-steps", "8", "--max-sessions-per-client", "2"]) as d:
        with Client(d.endpoint) as heavy_c, Client(d.endpoint) as light_c:
            with pytest.raises(BridgeError) as e:
                heavy_c.open_session(W, H, {"color": "float16"}, steps=9)
            assert e.value.code == "limit_exceeded"
            heavy = heavy_c.open_session(W, H, {"color": "float16"}, steps=8)
            heavy2 = heavy_c.open_session(W, H, {"color": "float16"}, steps=8)
            with pytest.raises(BridgeError) as e:  # a third for the same client
                heavy_c.open_session(W, H, {"color": "float16"})
            assert e.value.code == "too_many_sessions"
            light = light_c.open_session(W, H, {"color": "float16"}, steps=1)  # another client still gets one
            heavy2.close()
            stop = threading.Event()
            color = {"color": np.zeros((H, W, 3), np.float16)}
            heavy_done = []

            def hammer():
                while not stop.is_set():
                    heavy.render(color)
                    heavy_done.append(time.monotonic())
            t = threading.Thread(target=hammer)
            t.start()
            try:
                time.sleep(0.3)
                t0, done = time.monotonic(), 0
                while time.monotonic() - t0 < 2.0:
                    if light.free_slots():
                        light.submit(color)
                    if light.poll(timeout=0.05) is not None:
                        done += 1
                light_fps = done / (time.monotonic() - t0)
                heavy_fps = sum(1 for x in heavy_done if x >= t0) / (time.monotonic() - t0)
            finally:
                stop.set()
                t.join()
            assert light_fps > 8, (light_fps, heavy_fps)  # ~20 with fair turns, <= 4.5 with round-robin
            assert heavy_fps > 1.5, (light_fps, heavy_fps)  # and the heavy one is not starved either


def test_cold_start_open_and_first_frame_slower_than_every_timeout(tmp_path):
    """A session whose open (4 s) and first frame (4 s) take longer than the session timeout (0.5 s)
    and the client's own timeout (1.5 s): progress messages keep both waiting; the frame arrives."""
    with spawn_daemon("tests._bridge_test_backends:slow,open=4,first=4", runtime_dir="private", env=ENV,
                      extra_args=["--session-timeout-ms", "500", "--heartbeat-ms", "100"]) as d:
        seen = []
        with Client(d.endpoint, timeout=1.5, on_progress=seen.append) as c:
            t0 = time.monotonic()
            s = c.open_session(W, H, {"color": "float16"})
            assert time.monotonic() - t0 > 3.5
            r = s.render({"color": np.full((H, W, 3), 0.5, np.float16)})
            assert r.image[0, 0, 0] == 128 and r.timings["render_ms"] > 3500
            stages = [m["stage"] for m in seen]
            assert stages.count("opening") >= 2 and stages.count("first_frame") >= 2
            assert all(m["elapsed_ms"] >= 400 for m in seen)
            s.close()
