"""`neurender serve` as a real subprocess: the Python client over ipc (shm and inline) and TCP (CURVE),
a client killed mid-stream, oversized messages, stale segments, a second daemon, the CLI pieces."""
from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import zmq

from bridge import keys, paths
from bridge.client import BridgeError, Client, DaemonUnavailable
from bridge.daemon import ensure_local_daemon, local_daemon_alive, spawn_daemon
from _bridge_helpers import expected_rgb8, session_memory_exists, wait_until

ROOT = Path(__file__).resolve().parents[1]
W, H = 24, 12


@pytest.fixture(scope="module")
def daemon():
    with spawn_daemon("passthrough", runtime_dir="private", tcp="127.0.0.1:*", insecure=True) as d:
        yield d


def color(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).random((H, W, 3), np.float32).astype(np.float16)


def test_runtime_dir_socket_and_default_endpoint(daemon, monkeypatch):
    rd = daemon.runtime_dir
    assert stat.S_IMODE(rd.stat().st_mode) == 0o700
    assert daemon.endpoint == f"ipc://{rd / 'daemon.sock'}"
    assert (rd / "daemon.pid").read_text().strip() == str(daemon.pid)
    monkeypatch.setenv("NEURENDER_RUNTIME_DIR", str(rd))
    assert paths.ipc_endpoint() == daemon.endpoint
    with Client() as c:  # finds the local daemon without being told
        assert c.welcome["pid"] == daemon.pid and c.welcome["renderer"]["backend"] == "passthrough"
    assert local_daemon_alive()["pid"] == daemon.pid


@pytest.mark.parametrize("transport", ["shm", "inline"])
def test_blocking_and_pipelined_frames_are_exact(daemon, transport):
    with Client(daemon.endpoint) as c:
        s = c.open_session(W, H, {"color": "float16", "motion": "float32"}, transport=transport,
                           output_format="rgba8", prompt="test")
        assert s.info["renderer"]["backend"] == "passthrough" and s.info["layout"]["transport"] == transport
        for seq in range(3):
            r = s.render({"color": color(seq)}, constants={"dt": [1 / 60]}, action=np.eye(9)[seq])
            assert r.seq == seq and r.dropped == [] and r.image.shape == (H, W, 4)
            np.testing.assert_array_equal(r.image[..., :3], expected_rgb8(color(seq)))
            assert (r.image[..., 3] == 255).all()
            assert 0 <= r.timings["render_ms"] <= r.timings["daemon_ms"] <= r.timings["roundtrip_ms"]
        # pipelined: every submitted seq comes back exactly once, as a result or as dropped, in order
        submitted = []
        for k in range(12):
            slot = s.acquire_slot()
            s.input_views(slot)["color"][...] = color(100 + k)  # zero-copy write into the slot
            submitted.append(s.submit(slot=slot))
        answered, results = [], []
        while s.in_flight():
            r = s.poll(timeout=5)
            assert r is not None
            results.append(r.seq)
            answered += [r.seq] + r.dropped
            if transport == "inline" or r.seq == submitted[-1]:  # shm: a slot's image lives until its reuse
                np.testing.assert_array_equal(r.image[..., :3], expected_rgb8(color(100 + r.seq - 3)))
        assert sorted(answered) == submitted and results == sorted(results) and results[-1] == submitted[-1]
        slot = s.acquire_slot()
        with pytest.raises(ValueError, match="pass slot="):  # filled a slot, then forgot to name it
            s.submit()
        assert s.render(slot=slot).seq == submitted[-1] + 1
        with pytest.raises(ValueError, match="dtype"):
            s.submit({"color": color(0).astype(np.float32)})
        with pytest.raises(ValueError, match="shape"):
            s.submit({"color": color(0)[:-1]})
        assert s.close() == []


def test_client_killed_mid_stream_is_detected_and_others_keep_rendering(daemon):
    with Client(daemon.endpoint) as c:
        healthy = c.open_session(W, H, {"color": "float16"})
        for transport, within in (("shm", 2.0), ("inline", 2.0)):
            proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "_bridge_client_proc.py"),
                                     daemon.endpoint, transport], stdout=subprocess.PIPE, text=True,
                                    cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
            try:
                info = json.loads(proc.stdout.readline())
                time.sleep(0.3)  # it streams frames now
                assert c._request("hello")["sessions"] == 2
                np.testing.assert_array_equal(healthy.render({"color": color(1)}).image, expected_rgb8(color(1)))
            finally:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                proc.stdout.close()
            t_kill = time.monotonic()

            def gone():  # (a ping naming sid would keep it alive: count sessions instead)
                healthy.render({"color": color(2)})  # keeps the healthy session busy meanwhile
                return c._request("hello")["sessions"] == 1
            wait_until(gone, within)
            detected = time.monotonic() - t_kill
            assert detected < within, (transport, detected)
            print(f"{transport}: killed client detected after {detected:.2f} s")
            if transport == "shm":  # its files are unlinked (found by the flock probe, typically in 0.1 s)
                assert not session_memory_exists(info) and not os.path.exists(info["lock_path"])
            np.testing.assert_array_equal(healthy.render({"color": color(3)}).image, expected_rgb8(color(3)))


def test_curve_allow_list_refuses_unknown_and_plain_clients(tmp_path):
    kdir = tmp_path / "keys"
    keys.ensure_server_keys(kdir)
    _, alice_secret = keys.add_client(kdir, "alice")
    with spawn_daemon(runtime_dir="private", tcp="127.0.0.1:*", keys_dir=kdir) as d:
        ep = d.tcp_endpoint
        assert d.server_public_key == keys.load_public(kdir / "server.key")
        with Client(ep, server_public_key=kdir / "server.key", client_keys=alice_secret) as c:
            s = c.open_session(W, H, {"color": "float16"})
            assert s.transport == "inline"
            np.testing.assert_array_equal(s.render({"color": color(4)}).image, expected_rgb8(color(4)))
        with pytest.raises(DaemonUnavailable):  # a key pair that is not allow-listed
            Client(ep, server_public_key=d.server_public_key, client_keys=zmq.curve_keypair(), timeout=0.7)
        with pytest.raises(DaemonUnavailable):  # no CURVE at all
            Client(ep, timeout=0.7)
        with pytest.raises(DaemonUnavailable):  # allowed pair, wrong server key
            Client(ep, server_public_key=zmq.curve_keypair()[0], client_keys=alice_secret, timeout=0.7)
        with Client(d.endpoint) as c:  # the local ipc endpoint needs no keys
            assert c.welcome["pid"] == d.pid
        _, bob_secret = keys.add_client(kdir, "bob")  # allowed on disk, not yet known to the daemon
        with pytest.raises(DaemonUnavailable):
            Client(ep, server_public_key=d.server_public_key, client_keys=bob_secret, timeout=0.5)
        os.kill(d.pid, signal.SIGHUP)  # re-read the allow-list (at the daemon's next tick)

        def bob_gets_in() -> bool:
            try:
                with Client(ep, server_public_key=d.server_public_key, client_keys=bob_secret, timeout=0.5) as c:
                    return c.welcome["pid"] == d.pid
            except DaemonUnavailable:
                return False
        wait_until(bob_gets_in, 5.0)


@pytest.mark.parametrize("args, message", [
    (["--no-ipc", "--tcp", "0.0.0.0:0", "--insecure"], "only allowed on loopback"),
    (["--no-ipc", "--tcp", "127.0.0.1:0", "--insecure", "--shm-dir", "/nonexistent/shm"], "does not exist"),
    (["--no-ipc", "--tcp", "127.0.0.1:0", "--insecure", "--backend", "magic"], "unknown backend"),
])
def test_serve_refuses_bad_configuration(args, message):
    proc = subprocess.run([sys.executable, "-m", "neural_renderer.cli", "serve", *args], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2 and message in proc.stderr


def test_oversized_message_drops_only_that_peer(tmp_path):
    with spawn_daemon(runtime_dir="private", extra_args=["--max-width", "64", "--max-height", "64"]) as d:
        with Client(d.endpoint) as c:
            s = c.open_session(W, H, {"color": "float16"})
            assert c.welcome["limits"]["max_frame_bytes"] == 64 * 64 * 16
            ctx = zmq.Context()
            bad = ctx.socket(zmq.DEALER)
            bad.setsockopt(zmq.LINGER, 0)
            bad.connect(d.endpoint)
            bad.send_multipart([b"\x80" * 10, b"\0" * (2 * 1024 * 1024)])  # one frame over ZMQ_MAXMSGSIZE
            assert not bad.poll(500)  # the daemon drops the connection without reading it
            bad.close(0)
            ctx.term()
            assert d.alive()
            np.testing.assert_array_equal(s.render({"color": color(5)}).image, expected_rgb8(color(5)))
            with pytest.raises(BridgeError) as e:
                c.open_session(65, 8, {"color": "float16"})
            assert e.value.code == "limit_exceeded"


def test_stale_segments_swept_and_second_daemon_refused(tmp_path):
    shm_dir = Path(tempfile.mkdtemp(prefix="nr-shm-"))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = [shm_dir / f"neurender-{dead.pid}-00ff.shm", shm_dir / f"neurender-{dead.pid}-00ff.lock"]
    live = shm_dir / f"neurender-{os.getpid()}-abcd.shm"  # a live process's file stays
    other = shm_dir / "something-else.shm"
    for p in stale + [live, other]:
        p.write_bytes(b"x")
    try:
        with spawn_daemon(runtime_dir="private", shm_dir=shm_dir) as d:
            assert sorted(d.info["swept"]) == sorted(str(p) for p in stale)
            assert not any(p.exists() for p in stale) and live.exists() and other.exists()
            second = subprocess.run([sys.executable, "-m", "neural_renderer.cli", "serve", "--runtime-dir",
                                     str(d.runtime_dir)], capture_output=True, text=True, timeout=60)
            assert second.returncode == 1 and "already serves" in second.stderr
            with Client(d.endpoint) as c:  # the first one still owns its socket
                s = c.open_session(W, H, {"color": "float16"})
                assert Path(s.info["layout"]["lock_path"]).parent == shm_dir
                np.testing.assert_array_equal(s.render({"color": color(6)}).image, expected_rgb8(color(6)))
        assert not (d.runtime_dir / "daemon.sock").exists()
        assert [p.name for p in shm_dir.iterdir() if p.name.startswith(f"neurender-{d.pid}")] == []
    finally:
        for p in shm_dir.iterdir():
            p.unlink()
        shm_dir.rmdir()


def test_ensure_local_daemon_starts_one_only_when_none_answers():
    rd = tempfile.mkdtemp(prefix="nr-")
    try:
        endpoint, handle = ensure_local_daemon(runtime_dir=rd)
        assert handle is not None and endpoint == f"ipc://{rd}/daemon.sock"
        try:
            again, none = ensure_local_daemon(runtime_dir=rd)
            assert (again, none) == (endpoint, None)
            with Client(endpoint) as c:
                assert c.welcome["pid"] == handle.pid
        finally:
            handle.stop()
        assert local_daemon_alive(endpoint) is None
    finally:
        for p in Path(rd).iterdir():
            p.unlink()
        os.rmdir(rd)


def test_client_notices_a_daemon_restart_behind_the_same_socket():
    from bridge.client import SessionLost
    rd = tempfile.mkdtemp(prefix="nr-")
    first = spawn_daemon(runtime_dir=rd)
    try:
        with Client(first.endpoint) as c:
            s = c.open_session(W, H, {"color": "float16"})
            np.testing.assert_array_equal(s.render({"color": color(7)}).image, expected_rgb8(color(7)))
            first.stop()
            with spawn_daemon(runtime_dir=rd) as second:  # same ipc path, new pid
                wait_until(lambda: s.id in c.lost, 3.0)  # the heartbeat thread's pong says so
                with pytest.raises(SessionLost):
                    s.poll(0.1)
                with pytest.raises(SessionLost):
                    s.submit({"color": color(8)})
                s2 = c.open_session(W, H, {"color": "float16"})  # the same client reopens on the new daemon
                np.testing.assert_array_equal(s2.render({"color": color(9)}).image, expected_rgb8(color(9)))
                assert c._request("hello")["pid"] == second.pid
                assert s.close() == [] and s2.close() == []
    finally:
        first.stop()
        for p in Path(rd).iterdir():
            p.unlink()
        os.rmdir(rd)


@pytest.mark.parametrize("transport", ["inline", "shm"])
def test_pixels_reused_by_the_caller_right_after_submit_are_the_ones_rendered(daemon, transport):
    """A game reuses its readback array for the next frame as soon as submit() returns. The daemon is
    stopped (SIGSTOP) so the frame cannot leave the client's socket before the array changes: the
    image must still be of the pixels given to submit (the soak's rare wrong last pixels were a
    frame sent zero-copy from the caller's array and overwritten by the next one)."""
    h, w = 512, 512  # 3 MiB: far more than a socket buffer holds while the daemon is stopped
    with Client(daemon.endpoint) as c:
        s = c.open_session(w, h, {"color": "float32"}, transport=transport)
        pixels = np.full((h, w, 3), 0.25, np.float32)
        os.kill(daemon.pid, signal.SIGSTOP)
        try:
            s.submit({"color": pixels})
            pixels[...] = 0.75  # the next frame's pixels, written into the same array
            time.sleep(0.2)
        finally:
            os.kill(daemon.pid, signal.SIGCONT)
        r = s.poll(timeout=10)
        assert (r.image == int(0.25 * 255 + 0.5)).all(), np.unique(r.image)
        s.close()
