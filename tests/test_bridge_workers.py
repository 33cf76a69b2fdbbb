"""One daemon, several render worker processes, on CPU: real worker processes started with
spawn, real ZeroMQ sockets (inproc:// between test and daemon), real shared-memory files mapped by the
workers. Placement on the least-loaded worker, exact pixels through both transports, a worker killed
with SIGKILL (only its sessions get `worker_lost`, the others go on, the worker comes back), typed
errors from inside a worker, and `neurender serve --workers/--gpus` as a subprocess."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager

import numpy as np
import pytest
import zmq

from bridge.backends import FrameInputs, Renderer, RendererSession, SessionSpec, UnsupportedSpec
from bridge.backends.passthrough import PassthroughRenderer
from bridge.client import BridgeError, Client
from bridge.daemon import spawn_daemon
from bridge.server import Daemon, DaemonConfig
from bridge.worker_pool import (MULTI_GPU_ENV, WORKER_LOST, PoolRenderer, WorkerPool, WorkerStartError, parse_gpus,
                            worker_specs)
from _bridge_helpers import Raw, expected_rgb8, serving_on_thread, wait_until

W, H = 16, 8
SLOW_S = 5.0
SLOW_PROMPT = f"slow={SLOW_S}"  # a session opened with prompt "slow=S" takes S seconds per frame in the probe


# -- a renderer for the worker processes (imported there by name: spawn pickles the factory) ---------
class ProbeRenderer(Renderer):
    """Passthrough that tells which process and environment it runs in, fails on request, and renders
    slowly for sessions opened with the prompt SLOW_PROMPT."""

    def __init__(self, device=None, fail_at_start=False, events=None, **_):
        if fail_at_start:
            raise RuntimeError("planned start failure")
        self.inner = PassthroughRenderer(device=device)
        self.events = events  # a file each rendered frame's (seq, prompt, reset) is appended to

    def describe(self) -> dict:
        env = {k: os.environ.get(k) for k in ("CUDA_VISIBLE_DEVICES", *MULTI_GPU_ENV)}
        return {**self.inner.describe(), "backend": "probe", "pid": os.getpid(), "env": env}

    def open_session(self, spec: SessionSpec) -> RendererSession:
        if list(spec.channels) == ["material_id"]:
            raise UnsupportedSpec("probe refuses a material-id-only session")
        inner = self.inner.open_session(spec)
        delay = float(spec.prompt[5:]) if (spec.prompt or "").startswith("slow=") else 0.0
        events = self.events

        class S(RendererSession):
            def render(self, frame: FrameInputs, out: np.ndarray) -> None:
                if frame.prompt == "fail":
                    raise RuntimeError(f"planned failure at seq {frame.seq}")
                time.sleep(delay)
                inner.render(frame, out)
                if events:
                    with open(events, "a") as f:
                        f.write(json.dumps([frame.seq, frame.prompt, frame.reset]) + "\n")

        return S()


def make_probe(backend: str, **options) -> Renderer:
    return ProbeRenderer(**options)


@contextmanager
def pool_daemon(tmp_path, workers: int = 2, gpus=None, options=None, max_restarts: int = 3, render_timeout=None,
                **config):
    """A Daemon with a WorkerPool of probe renderers serving inproc:// on a thread; yields (daemon, ctx)."""
    ctx = zmq.Context()
    specs = worker_specs(options or {}, gpus=gpus, workers=None if gpus else workers)
    renderer = PoolRenderer()

    def factory(wake):
        renderer.pool = WorkerPool("probe", specs, wake, tmp_path, factory=make_probe, max_restarts=max_restarts,
                                   render_timeout=render_timeout)
        return renderer.pool

    cfg = DaemonConfig(ipc_endpoint=f"inproc://multigpu-{id(ctx)}", shm_dir=tmp_path, **config)
    try:
        d = Daemon(renderer, cfg, context=ctx, worker_factory=factory)
    except BaseException:
        ctx.term()
        raise
    pids = [w["pid"] for w in d.worker.info()]
    try:
        with serving_on_thread(d, ctx, join_s=15):
            yield d, ctx
    finally:
        for w in d.worker.workers:  # every worker process, restarted ones included, is gone
            assert w.proc is None or not w.proc.is_alive()
        assert all(_gone(pid) for pid in pids)


def color_frame(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).random((H, W, 3), np.float32).astype(np.float16)


def render_ok(session, seed: int) -> None:
    c = color_frame(seed)
    r = session.render({"color": c})
    np.testing.assert_array_equal(r.image, expected_rgb8(c))


# -- pure pieces ---------------------------------------------------------------------------------------
def test_gpu_selection_and_worker_environment():
    vis = ["0", "1"]
    assert parse_gpus("all", vis) == ["0", "1"]
    assert parse_gpus("1", vis) == ["0"]
    assert parse_gpus("1,0", vis) == ["1", "0"]
    assert parse_gpus(" 1 ", ["3", "0"]) == ["3"]  # N = the first N visible ones
    assert parse_gpus("1,", vis) == ["1"]  # one GPU by id
    # bad inputs tried: no GPU visible, too many, zero, repeats, unknown id, empty items, words
    for bad, visible in [("all", []), ("3", vis), ("0", vis), ("0,0", vis), ("0,2", vis), (",", vis),
                         ("", vis), ("gpu0", vis)]:
        with pytest.raises(ValueError):
            parse_gpus(bad, visible)
    specs = worker_specs({"device": None, "steps": 2}, gpus=["0", "1"])
    assert [s.env["CUDA_VISIBLE_DEVICES"] for s in specs] == ["0", "1"]
    for s in specs:
        assert s.options == {"device": "cuda", "steps": 2}
        assert {k: s.env[k] for k in MULTI_GPU_ENV} == {"NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1",
                                                        "NVSHMEM_DISABLE_NVLS": "1"}
    cpu = worker_specs({"device": "cpu"}, workers=3)
    assert len(cpu) == 3 and all("CUDA_VISIBLE_DEVICES" not in s.env and s.options["device"] == "cpu" for s in cpu)
    with pytest.raises(ValueError):
        worker_specs({"device": "cuda:1"}, gpus=["0"])  # a pinned worker cannot also be told another GPU
    with pytest.raises(ValueError):
        worker_specs({}, workers=0)


# -- the pool behind the daemon -------------------------------------------------------------------
def test_sessions_placed_on_least_loaded_worker_processes_with_exact_pixels(tmp_path):
    with pool_daemon(tmp_path, workers=2) as (d, ctx), Client(d.endpoints[0], context=ctx, timeout=10) as c:
        assert c.welcome["renderer"]["workers"] == 2
        opened = []
        for i, (w, h, transport) in enumerate([(W, H, "shm"), (W, H, "inline"), (2 * W, 2 * H, "shm"),
                                               (W, H, "inline")]):
            s = c.open_session(w, h, {"color": "float16"}, transport=transport)
            opened.append(s)
        where = [s.info["renderer"]["worker"] for s in opened]
        # loads (pixels): 0 -> w0; tie 128/0 -> w1; tie 128/128 -> w0 (index); 640 vs 128 -> w1
        assert where == [0, 1, 0, 1]
        pids = {s.info["renderer"]["pid"] for s in opened}
        assert len(pids) == 2 and os.getpid() not in pids  # rendered in two other processes
        for k, s in enumerate(opened):
            for seed in range(3):
                c_ = np.random.default_rng(10 * k + seed).random((s.height, s.width, 3), np.float32).astype(np.float16)
                r = s.render({"color": c_}, constants={"dt": [1 / 60]}, action=np.ones(9))
                np.testing.assert_array_equal(r.image, expected_rgb8(c_))
                assert r.timings["render_ms"] >= 0 and r.timings["queue_ms"] >= 0
        # a closed session frees its worker: the next one goes where the load is now least
        opened[2].close()  # w0 keeps 128 px, w1 has 256
        s5 = c.open_session(W, H, {"color": "float16"})
        assert s5.info["renderer"]["worker"] == 0
        render_ok(s5, 99)
        assert [w["sessions"] for w in d.worker.info()] == [2, 2]
    # every session file (the clients' and the inline staging ones) is gone with the daemon
    assert not list(tmp_path.glob("neurender-*"))


def test_a_killed_worker_takes_down_only_its_sessions_with_worker_lost(tmp_path):
    # the raw peer sends no pings: a session timeout far above this test's steps
    with pool_daemon(tmp_path, workers=2, session_timeout_ms=30_000) as (d, ctx), Client(d.endpoints[0], context=ctx, timeout=10) as c:
        healthy = c.open_session(W, H, {"color": "float16"})  # worker 0
        raw = Raw(ctx, d.endpoints[0])
        try:
            victim = raw.open(W, H, transport="inline", prompt=SLOW_PROMPT)  # worker 1
            assert victim["type"] == "opened" and victim["renderer"]["worker"] == 1
            sid = victim["session"]
            pixels = [b"\0" * ch["nbytes"] for ch in victim["channels"]]
            w1 = d.worker.workers[1]
            staging = d.worker.workers[1].sessions[sid].staging
            assert staging.name.endswith(f"-{sid}0")  # inline pixels are staged in memory the worker maps
            raw.send_msg(pixels, type="frame", session=sid, seq=0)
            wait_until(lambda: w1.inflight is not None, 10)  # seq 0 renders (SLOW_S)
            raw.send_msg(pixels, type="frame", session=sid, seq=1)
            wait_until(lambda: sid in w1.pending, 10)  # seq 1 waits
            render_ok(healthy, 1)
            old_pid = w1.pid
            os.kill(old_pid, signal.SIGKILL)
            err, _ = raw.recv(timeout=10)
            assert err["type"] == "error" and err["code"] == WORKER_LOST and err["session"] == sid
            assert err["seq"] == 0 and err["dropped"] == [1]  # every accepted frame answered once
            # later messages about the lost session are refused with the same code
            raw.send_msg(pixels, type="frame", session=sid, seq=2)
            err2, _ = raw.recv()
            assert (err2["code"], err2["seq"]) == (WORKER_LOST, 2)
            assert raw.request(type="ping", req=5, sessions=[sid])["unknown"] == [sid]
            err3 = raw.request(type="close", req=6, session=sid)
            assert (err3["code"], err3["req"]) == (WORKER_LOST, 6)
            assert not list(tmp_path.glob(f"neurender-*-{sid}*"))  # its files are unlinked
            assert staging.fd is None and staging.buf is None  # and its staging memory let go
            # the other worker's session never noticed
            for seed in range(2, 5):
                render_ok(healthy, seed)
            # the dead worker is restarted and takes new sessions again (it is the least loaded)
            wait_until(lambda: d.worker.info()[1]["ready"] and d.worker.info()[1]["pid"] != old_pid, 60)
            info = d.worker.info()[1]
            assert (info["deaths"], info["restarts"]) == (1, 1)
            fresh = c.open_session(W, H, {"color": "float16"}, transport="inline")
            assert fresh.info["renderer"]["worker"] == 1 and fresh.info["renderer"]["pid"] == info["pid"]
            render_ok(fresh, 7)
            render_ok(healthy, 8)
        finally:
            raw.close()


def test_newest_frame_wins_in_a_worker_with_prompt_and_reset_carried_over(tmp_path):
    events = tmp_path / "events.jsonl"
    # the raw peer sends no pings: a session timeout longer than the two slow frames
    with pool_daemon(tmp_path, workers=2, options={"events": str(events)}, session_timeout_ms=30_000) as (d, ctx):
        raw = Raw(ctx, d.endpoints[0])
        try:
            o = raw.open(W, H, transport="inline", prompt="slow=1.0")
            sid, w = o["session"], d.worker.workers[o["renderer"]["worker"]]
            color = color_frame(5)
            px = [color.tobytes()]
            raw.send_msg(px, type="frame", session=sid, seq=0)
            wait_until(lambda: w.inflight is not None, 10)  # seq 0 renders for 1 s
            raw.send_msg(px, type="frame", session=sid, seq=1, prompt="night")
            raw.send_msg(px, type="frame", session=sid, seq=2, reset=True)
            raw.send_msg(px, type="frame", session=sid, seq=3)  # replaces 2, which replaced 1
            replies = []
            while len(replies) < 2:  # (seq 0 renders for 1 s: `progress` messages come meanwhile)
                m, extra = raw.recv(timeout=10)
                if m["type"] != "progress":
                    replies.append((m, extra))
            # the replaced seqs are reported with the session's next result (section 5 of docs/protocol.md)
            assert [(m["type"], m["seq"], m["dropped"]) for m, _ in replies] == [
                ("frame_done", 0, [1, 2]), ("frame_done", 3, [])]
            for _, extra in replies:  # the inline image came back through the worker's staging file
                np.testing.assert_array_equal(np.frombuffer(extra[0], np.uint8).reshape(H, W, 3), expected_rgb8(color))
            seen = [json.loads(line) for line in events.read_text().splitlines()]
            assert seen == [[0, None, False], [3, "night", True]]  # events of dropped frames are not lost
        finally:
            raw.close()


def test_worker_side_errors_are_typed_and_the_session_stays(tmp_path):
    with pool_daemon(tmp_path, workers=1) as (d, ctx), Client(d.endpoints[0], context=ctx, timeout=10) as c:
        with pytest.raises(BridgeError) as e:
            c.open_session(W, H, {"material_id": "uint8"})
        assert e.value.code == "unsupported" and "material-id-only" in e.value.message
        s = c.open_session(W, H, {"color": "float16"}, transport="inline")
        with pytest.raises(BridgeError) as e:
            s.render({"color": color_frame(0)}, prompt="fail")
        assert e.value.code == "renderer_error" and "planned failure at seq 0" in e.value.message
        render_ok(s, 1)


def test_no_worker_left_means_open_fails_with_worker_lost(tmp_path):
    with pool_daemon(tmp_path, workers=1, max_restarts=0) as (d, ctx):
        raw = Raw(ctx, d.endpoints[0])
        try:
            os.kill(d.worker.workers[0].pid, signal.SIGKILL)
            wait_until(lambda: d.worker.info()[0]["deaths"] == 1, 10)
            reply = raw.open(W, H)
            assert reply["type"] == "error" and reply["code"] == WORKER_LOST and reply["req"] == 1
            assert raw.request(type="hello", req=2)["type"] == "welcome"  # the daemon itself goes on
        finally:
            raw.close()


def test_a_hung_worker_is_killed_after_the_render_timeout(tmp_path):
    """A frame that takes longer than render_timeout (here SLOW_S > 1 s) is a hung worker: it is killed
    and restarted, the session gets worker_lost rather than silence, the other worker's session goes on."""
    with pool_daemon(tmp_path, workers=2, render_timeout=1.0, session_timeout_ms=30_000) as (d, ctx), \
            Client(d.endpoints[0], context=ctx, timeout=10) as c:
        healthy = c.open_session(W, H, {"color": "float16"})
        raw = Raw(ctx, d.endpoints[0])
        try:
            hung = raw.open(W, H, transport="inline", prompt=SLOW_PROMPT)
            assert hung["renderer"]["worker"] == 1
            t0 = time.monotonic()
            raw.send_msg([b"\0" * ch["nbytes"] for ch in hung["channels"]], type="frame", session=hung["session"], seq=0)
            err, _ = raw.recv(timeout=10)
            assert (err["code"], err["seq"]) == (WORKER_LOST, 0) and "longer than 1 s" in err["message"]
            assert 1.0 <= time.monotonic() - t0 < SLOW_S  # killed at the timeout, not after the frame
            render_ok(healthy, 0)
            wait_until(lambda: d.worker.info()[1]["ready"], 60)
            assert d.worker.info()[1]["deaths"] == 1
        finally:
            raw.close()


def test_gpu_pinning_reaches_each_worker_process(tmp_path):
    """--gpus 0,1 on a CPU machine: the probe ignores the device, so what is checked is the environment
    each worker process really runs with."""
    with pool_daemon(tmp_path, gpus=["0", "1"]) as (d, ctx), Client(d.endpoints[0], context=ctx, timeout=10) as c:
        envs = []
        for _ in range(2):
            s = c.open_session(W, H, {"color": "float16"})
            envs.append(s.info["renderer"]["env"])
            render_ok(s, 3)
        assert [e["CUDA_VISIBLE_DEVICES"] for e in envs] == ["0", "1"]
        assert all(e[k] == v for e in envs for k, v in MULTI_GPU_ENV.items())


def test_a_worker_that_cannot_start_fails_the_daemon_start(tmp_path):
    with pytest.raises(WorkerStartError, match="planned start failure"):
        with pool_daemon(tmp_path, workers=2, options={"fail_at_start": True}):
            pass


# -- the command line ----------------------------------------------------------------------------------
def test_serve_workers_subprocess_survives_a_killed_worker(tmp_path):
    with spawn_daemon("passthrough", runtime_dir="private", shm_dir=tmp_path, extra_args=["--workers", "2"]) as d:
        workers = d.info["workers"]
        assert [w["index"] for w in workers] == [0, 1] and all(w["ready"] for w in workers)
        assert all(w["env"][k] == v for w in workers for k, v in MULTI_GPU_ENV.items())
        with Client(d.endpoint, timeout=10) as a, Client(d.endpoint, timeout=10, heartbeat=False) as b:
            sa = a.open_session(W, H, {"color": "float16"})
            sb = b.open_session(W, H, {"color": "float16"}, transport="inline")
            assert (sa.info["renderer"]["worker"], sb.info["renderer"]["worker"]) == (0, 1)
            render_ok(sa, 0)
            render_ok(sb, 1)
            os.kill(workers[1]["pid"], signal.SIGKILL)
            deadline = time.monotonic() + 10
            code = None
            while code is None and time.monotonic() < deadline:
                try:  # frames sent before the daemon saw the death may still be answered; then worker_lost
                    sb.render({"color": color_frame(2)}, timeout=5)
                    time.sleep(0.05)
                except BridgeError as e:
                    code = e.code
            assert code == WORKER_LOST
            for seed in range(3, 6):
                render_ok(sa, seed)
        assert d.alive()
    assert d.proc.returncode == 0
    assert not list(tmp_path.glob("neurender-*"))
    assert all(_gone(w["pid"]) for w in workers)


@pytest.mark.parametrize("args, message", [
    (["--gpus", "3"], "2 GPU(s) visible"),
    (["--gpus", "0,0"], "listed twice"),
    (["--gpus", "0"], "to pin GPU 0 alone"),
    (["--gpus", "1", "--device", "cpu"], "contradicts"),
    (["--workers", "0"], "at least one worker"),
    (["--render-timeout", "5"], "needs --gpus or --workers"),
])
def test_serve_refuses_bad_worker_options(tmp_path, args, message):
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "0,1"}
    r = subprocess.run([sys.executable, "-m", "bridge.serve_cmd", "--runtime-dir", str(tmp_path / "rt"), *args],
                       capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 2 and message in r.stderr, r.stderr


def test_serve_gpus_pins_one_worker_per_gpu(tmp_path):
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "0,1"}
    with spawn_daemon("passthrough", runtime_dir="private", shm_dir=tmp_path, extra_args=["--gpus", "all"],
                      env=env) as d:
        assert [w["env"]["CUDA_VISIBLE_DEVICES"] for w in d.info["workers"]] == ["0", "1"]
        assert [w["name"] for w in d.info["workers"]] == ["gpu0", "gpu1"]
        assert d.info["renderer"]["workers"] == 2
        with Client(d.endpoint, timeout=10) as c:
            render_ok(c.open_session(W, H, {"color": "float16"}), 0)
    json.dumps(d.info)  # the READY line is plain JSON


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as f:
            return "\nState:\tZ" in f.read()  # a zombie has exited; only its parent's wait is missing
    except FileNotFoundError:
        return True


def test_workers_exit_when_the_daemon_is_killed(tmp_path):
    d = spawn_daemon("passthrough", runtime_dir="private", shm_dir=tmp_path, extra_args=["--workers", "2"])
    try:
        pids = [w["pid"] for w in d.info["workers"]]
        assert not any(_gone(p) for p in pids)
        d.proc.kill()  # SIGKILL: no shutdown code runs; the workers see their pipe close
        d.proc.wait(10)
        wait_until(lambda: all(_gone(p) for p in pids), 10)
    finally:
        d.stop()
