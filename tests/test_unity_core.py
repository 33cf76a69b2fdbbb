"""The Unity client's plain-C# core, compiled with mcs and run under mono against a real
`neurender serve` (passthrough backend): msgpack, float16 and pixel helpers offline (checked against
Python's msgpack and numpy), then session open, 200 frames with changing actions and exact pixels,
pipelined frames, a prompt change, a reset, malformed requests answered with typed C# exceptions,
heartbeats (Pump's own, and the background thread's across a stalled owner thread), the inline transport, the daemon killed (SIGKILL) and restarted with the client
recovering, and close. The C# side prints one PASS/FAIL line per test; this file asserts on them,
on the exit code, and on the files the program writes.
"""
from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path

import msgpack
import numpy as np
import pytest

from bridge import protocol
from bridge.backends.passthrough import to_output
from bridge.channels import ACTION_LAYOUT, CONSTANTS_LAYOUT
from bridge.daemon import spawn_daemon
from _unity_build import build, parse_lines

OFFLINE_TESTS = ("msgpack_roundtrip", "msgpack_rejects_malformed", "half_vectors_written", "repack_flip",
                 "daemon_notices_decoded")
DAEMON_TESTS = ("connect", "open_session", "frames_200_changing_actions", "pipelined_frames_each_seq_answered_once",
                "prompt_change", "reset", "malformed_requests_typed_errors", "open_refused_typed_errors", "client_side_bad_input",
                "stalled_thread_kept_alive_by_heartbeat_thread", "stalled_thread_without_heartbeat_thread_loses_session",
                "inline_transport", "daemon_restart_recovery", "daemon_down_reconnect",
                "close")
W, H = 64, 48  # CoreTests.cs
# Pinned so the test's duration does not follow the daemon's defaults: the stall tests wait for three
# session timeouts, and the client calls the daemon lost after 3 s of silence.
TIMING = ["--heartbeat-ms", "250", "--session-timeout-ms", "1200"]


@pytest.fixture(scope="module")
def core_exe(tmp_path_factory) -> Path:
    return build(tmp_path_factory.mktemp("unity_core_build"))


def _run_offline(exe: Path, out: Path) -> tuple[int, list[str]]:
    r = subprocess.run(["mono", str(exe), "--offline", "--out", str(out)], capture_output=True, text=True,
                       timeout=60, cwd=exe.parent)
    return r.returncode, r.stdout.splitlines()


def test_unity_core_offline(core_exe, tmp_path):
    rc, lines = _run_offline(core_exe, tmp_path)
    passed, failed, info = parse_lines(lines)
    assert not failed, failed
    assert set(OFFLINE_TESTS) <= set(passed), lines
    assert rc == 0

    # The C# mirrors of the action layout, the camera constants and the error codes (one typed
    # exception each) match the Python definitions.
    assert info["action_layout"].split(",") == list(ACTION_LAYOUT)
    assert info["error_codes"].split(",") == list(protocol.ERROR_CODES)
    assert info["constants_layout"].split(",") == [f"{k}:{n}" for k, n in CONSTANTS_LAYOUT.items()]

    # Our msgpack encoder, read by the reference implementation.
    sample = msgpack.unpackb((tmp_path / "msgpack_sample.bin").read_bytes(), raw=False, strict_map_key=True)
    assert sample["nil"] is None and sample["t"] is True
    assert sample["ints"] == [0, 127, 128, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**63 - 1,
                              -1, -32, -33, -128, -129, -32768, -32769, -2**31, -2**31 - 1, -2**63]
    assert sample["u64"] == 2**64 - 1 and sample["f32"] == 1.5 and sample["f64"] == -2.25e300
    assert sample["str"] == "h\u00e9llo \u6f22\u5b57" and sample["long_str"] == "x" * 300
    assert sample["bin"] == bytes(i % 256 for i in range(70000))
    assert sample["arr16"] == list(range(20)) and sample["map16"] == {f"k{i}": i for i in range(20)}
    assert sample["ext"] == msgpack.ExtType(5, b"\x01\x02\x03")

    # float32 -> float16 conversion, bit-exact against numpy (round to nearest even, subnormals, inf, NaN).
    rec = np.fromfile(tmp_path / "half_vectors.bin", np.dtype([("f", "<f4"), ("h", "<u2")]))
    assert len(rec) > 5000
    with np.errstate(over="ignore"):
        ref = rec["f"].astype(np.float16).view(np.uint16)
    nan = np.isnan(rec["f"])
    np.testing.assert_array_equal(rec["h"][~nan], ref[~nan])
    assert np.isnan(rec["h"][nan].view(np.float16)).all()


def _flock_held(path: str) -> bool:
    """True if another process holds a flock on `path` (an exclusive non-blocking lock fails)."""
    import fcntl
    import os
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # also drops our lock if we got it
    return False


def test_unity_core_against_real_daemon(core_exe, tmp_path):
    runtime, shm_dir, out = tmp_path / "rt", tmp_path / "shm", tmp_path / "out"
    for d in (runtime, shm_dir, out):
        d.mkdir()
    runtime.chmod(0o700)
    daemon = spawn_daemon("passthrough", runtime_dir=runtime, shm_dir=shm_dir, extra_args=TIMING)
    first_pid, restarted = daemon.pid, []
    stderr_path = tmp_path / "mono_stderr.txt"
    lines: list[str] = []
    locked: list[bool] = []
    try:
        with open(stderr_path, "w") as err:
            proc = subprocess.Popen(["mono", str(core_exe), "--endpoint", daemon.endpoint, "--out", str(out)],
                                    stdout=subprocess.PIPE, stderr=err, text=True, cwd=core_exe.parent)
            killer = threading.Timer(120, proc.kill)  # a hung client fails the test instead of CI
            killer.start()
            try:
                for line in proc.stdout:
                    lines.append(line)
                    if line.startswith("PASS open_session "):
                        # The client holds its liveness flock while the session is open (the daemon is
                        # only killed later, when this loop reaches the RESTART line).
                        locked.append(_flock_held(line.split("lock=")[1].split()[0]))
                    if line.startswith("RESTART "):
                        # Kill the daemon the client is talking to, then start a new one on the same
                        # runtime dir; the client must notice and recover by itself.
                        fields = dict(kv.split("=") for kv in line.split()[1:])
                        assert fields["pid"] == str(daemon.pid)
                        daemon.proc.kill()
                        daemon.proc.wait(10)
                        time.sleep(int(fields["down_ms"]) / 1000)
                        daemon = spawn_daemon("passthrough", runtime_dir=runtime, shm_dir=shm_dir, extra_args=TIMING)
                        restarted.append(daemon.pid)
                rc = proc.wait(30)
            finally:
                killer.cancel()
                if proc.poll() is None:  # an assertion above left it running
                    proc.kill()
                    proc.wait()
    finally:
        daemon.stop()
    passed, failed, _ = parse_lines(lines)
    log = "".join(lines) + "\n--- stderr ---\n" + stderr_path.read_text()[-4000:]
    assert not failed, log
    missing = [t for t in DAEMON_TESTS if t not in passed]
    assert not missing, log
    assert rc == 0, log
    assert locked == [True]
    assert len(restarted) == 2 and first_pid not in restarted
    assert "recovered after" in passed["daemon_restart_recovery"]
    assert "silence -> reconnect" in passed["daemon_down_reconnect"]
    assert "pixels exact" in passed["frames_200_changing_actions"]
    assert "typed: bad_msgpack,bad_msgpack,bad_msgpack,bad_version,unknown_type,bad_field,too_large,unknown_session," \
           "size_mismatch,non_finite,size_mismatch,bad_field,bad_seq,bad_slot" in passed["malformed_requests_typed_errors"]

    # The last of the 200 frames: what the client put into shared memory and what it read back,
    # checked against the passthrough backend's own conversion.
    color = np.fromfile(out / "frame_color_f16.bin", "<f2").reshape(H, W, 3)
    got = np.fromfile(out / "frame_output_rgba8.bin", np.uint8).reshape(H, W, 4)
    want = np.zeros((H, W, 4), np.uint8)
    to_output(color, want)
    np.testing.assert_array_equal(got, want)
    assert (color < 0).any() and (color > 1).any()  # the frame exercised clipping on both sides

    # Every session file is gone: closed sessions by the daemon, the killed daemon's by the sweep.
    assert list(shm_dir.iterdir()) == []
    print("".join(lines))  # the C# side's numbers (latency, recovery) for `pytest -s`


def test_unity_core_curve_over_tcp(core_exe, tmp_path):
    """TCP with CURVE: an allow-listed key pair gets served; an unknown client key and a wrong server
    key get no reply at all (the C# side sees DaemonTimeoutException)."""
    import socket

    import zmq.auth

    from bridge import keys

    keys_dir = tmp_path / "keys"
    (tmp_path / "shm").mkdir()
    public_file, secret_file = keys.add_client(keys_dir, "unity")
    client_public, client_secret = zmq.auth.load_certificate(str(secret_file))
    with socket.socket() as s:  # a free loopback port
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with spawn_daemon("passthrough", runtime_dir=tmp_path / "rt", no_ipc=True, tcp=f"127.0.0.1:{port}",
                      keys_dir=keys_dir, shm_dir=tmp_path / "shm") as daemon:
        r = subprocess.run(["mono", str(core_exe), "--endpoint", daemon.tcp_endpoint, "--out", str(tmp_path),
                            "--curve", daemon.server_public_key.decode(), client_public.decode(),
                            client_secret.decode()],
                           capture_output=True, text=True, timeout=90, cwd=core_exe.parent)
    passed, failed, _ = parse_lines(r.stdout.splitlines())
    assert not failed, r.stdout + r.stderr
    assert {"curve_allowed_client", "curve_unknown_client_refused", "curve_wrong_server_key_refused"} <= set(passed)
    assert r.returncode == 0


def test_unity_core_killed_client_is_noticed_through_its_lock(core_exe, tmp_path):
    """The C# client promises `lock` and holds a shared flock on the session's lock file. Killed
    with SIGKILL (no close, no more pings), its session files must be gone long before the
    daemon's session timeout (set to 30 s here), which only the lock can explain."""
    shm_dir = tmp_path / "shm"
    shm_dir.mkdir()
    with spawn_daemon("passthrough", runtime_dir=tmp_path / "rt", shm_dir=shm_dir,
                      extra_args=["--session-timeout-ms", "30000"]) as daemon:
        proc = subprocess.Popen(["mono", str(core_exe), "--hold", "--endpoint", daemon.endpoint, "--out", str(tmp_path)],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=core_exe.parent)
        try:
            line = proc.stdout.readline()
            assert line.startswith("HOLDING shm="), line
            shm_file = Path(line.split("=", 1)[1].strip())
            memory = os.readlink(shm_file)  # /memfd:neurender-<pid>-<session> (deleted)
            assert memory.startswith("/memfd:neurender-")
        finally:
            proc.kill()
            proc.wait()

        def held() -> bool:  # the fd number may be reused: compare what it leads to
            try:
                return os.readlink(shm_file) == memory
            except FileNotFoundError:
                return False
        t0 = time.monotonic()
        while held() and time.monotonic() - t0 < 10:
            time.sleep(0.05)
        gone_after = time.monotonic() - t0
    assert not held()
    assert gone_after < 5.0, f"session files lingered {gone_after:.1f} s: the lock was not noticed"


def test_unity_core_worker_lost_recovery(core_exe, tmp_path):
    """A daemon with a render worker pool (serve --workers 1): the worker hosting the C# client's
    session is SIGKILLed mid-stream; the client must get `worker_lost` (a typed WorkerLostException
    on the frame in flight) or see the session unknown, reopen it on the restarted worker, and
    render exact pixels again."""
    import os
    import signal

    shm_dir = tmp_path / "shm"
    shm_dir.mkdir()
    with spawn_daemon("passthrough", runtime_dir=tmp_path / "rt", shm_dir=shm_dir,
                      extra_args=["--workers", "1", *TIMING]) as daemon:
        worker_pid = daemon.info["workers"][0]["pid"]
        proc = subprocess.Popen(["mono", str(core_exe), "--worker-lost", "--endpoint", daemon.endpoint,
                                 "--out", str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, cwd=core_exe.parent)
        lines = []
        try:
            for line in proc.stdout:
                lines.append(line)
                if line.startswith("KILL_WORKER"):
                    os.kill(worker_pid, signal.SIGKILL)
            rc = proc.wait(60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        err = proc.stderr.read()
    passed, failed, _ = parse_lines(lines)
    assert not failed, "".join(lines) + err
    assert "worker_lost_recovery" in passed and rc == 0, "".join(lines) + err
    print("".join(lines))



def test_unity_core_records_a_session(core_exe, tmp_path):
    """SessionConfig.Record: the daemon records what the C# client sends, pytest reads the dataset back."""
    from demos.record_script import wait_for_sequences
    from neural_renderer.data import SequenceDataset

    rec = tmp_path / "recordings"
    with spawn_daemon("passthrough", runtime_dir="private", extra_args=[*TIMING, "--recordings-dir", str(rec)]) as d:
        r = subprocess.run(["mono", str(core_exe), "--endpoint", d.endpoint, "--record", "unity-look"],
                           capture_output=True, text=True, timeout=60, cwd=core_exe.parent)
    passed, failed, _ = parse_lines(r.stdout.splitlines(keepends=True))
    assert not failed and "record_session" in passed and r.returncode == 0, r.stdout + r.stderr[-2000:]
    assert wait_for_sequences(rec / "unity-look", 1) is not None
    clip = SequenceDataset(rec / "unity-look").clip(0)
    k = np.arange(10, dtype=np.float32)
    np.testing.assert_array_equal(clip.engine["color"][:, 7, 9, 1], (k / 100).astype(np.float16))
    np.testing.assert_array_equal(clip.engine["final"][:, 0, 0, 2], (1 - k / 100).astype(np.float16))
    forward = ACTION_LAYOUT.index("forward")
    assert clip.action[:, forward].tolist() == [float(i % 2) for i in range(10)]
    assert clip.reset.tolist() == [1] + [0] * 9
    assert SequenceDataset(rec / "unity-look").sequences[0].fps == pytest.approx(50.0)
