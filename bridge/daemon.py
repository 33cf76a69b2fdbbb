"""Start a daemon from Python as a subprocess (the demo when none runs, tests, benchmarks), and
check whether a local one is up.

    with spawn_daemon(backend="passthrough", runtime_dir=tmp) as d:
        with Client(d.endpoint) as c: ...
"""
from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bridge import paths


def local_daemon_alive(endpoint: str | None = None, timeout: float = 0.5) -> dict | None:
    """The daemon's `welcome` if one answers at `endpoint` (default: the local ipc socket), else None."""
    import zmq

    from bridge import protocol as P
    endpoint = endpoint or paths.ipc_endpoint()
    if endpoint.startswith("ipc://") and not os.path.exists(endpoint[len("ipc://"):]):
        return None
    ctx = zmq.Context.instance()
    s = ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    try:
        s.connect(endpoint)
        s.send(P.encode("hello", req=0, client="probe"))
        if s.poll(int(timeout * 1000)):
            msg, _ = P.decode_reply(s.recv_multipart())
            return msg if msg.get("type") == "welcome" else None
        return None
    finally:
        s.close(0)


class DaemonHandle:
    """A running `neurender serve` subprocess."""

    def __init__(self, proc: subprocess.Popen, info: dict, runtime_dir: Path, owns_dir: bool):
        self.proc, self.info, self.runtime_dir, self._owns_dir = proc, info, runtime_dir, owns_dir
        self.endpoints: list[str] = info["endpoints"]
        self.endpoint: str = self.endpoints[0]
        self.pid: int = info["pid"]
        self.server_public_key: bytes | None = (info["server_public_key"].encode()
                                                if info.get("server_public_key") else None)

    @property
    def tcp_endpoint(self) -> str | None:
        return next((e for e in self.endpoints if e.startswith("tcp://")), None)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 5.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._owns_dir:
            for p in self.runtime_dir.iterdir():
                p.unlink()
            self.runtime_dir.rmdir()
        return self.proc.returncode

    def __enter__(self) -> "DaemonHandle":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def spawn_daemon(backend: str = "passthrough", runtime_dir: str | os.PathLike | None = None,
                 tcp: str | None = None, insecure: bool = False, *, no_ipc: bool = False,
                 keys_dir: str | os.PathLike | None = None, shm_dir: str | os.PathLike | None = None,
                 steps: int | None = None, device: str | None = None, extra_args: list[str] | tuple = (),
                 env: dict | None = None, timeout: float | None = 60.0, stderr=None, on_wait=None,
                 wait_every: float = 5.0) -> DaemonHandle:
    """Start `neurender serve` and wait until it serves. runtime_dir="private" makes a fresh short
    temporary one (removed by stop()); None uses the default local runtime dir. timeout=None: wait as
    long as the process lives (a cold model load); on_wait(seconds) is called every `wait_every` s."""
    owns = False
    if runtime_dir == "private":
        runtime_dir, owns = tempfile.mkdtemp(prefix="nr-"), True
    cmd = [sys.executable, "-m", "bridge.serve_cmd", "--backend", backend]
    if runtime_dir is not None:
        cmd += ["--runtime-dir", str(runtime_dir)]
    if tcp:
        cmd += ["--tcp", tcp]
    if insecure:
        cmd.append("--insecure")
    if no_ipc:
        cmd.append("--no-ipc")
    if keys_dir is not None:
        cmd += ["--keys-dir", str(keys_dir)]
    if shm_dir is not None:
        cmd += ["--shm-dir", str(shm_dir)]
    if steps is not None:
        cmd += ["--steps", str(steps)]
    if device is not None:
        cmd += ["--device", device]
    cmd += list(extra_args)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=stderr, env=env, text=True)
    t0 = time.monotonic()
    deadline = t0 + (timeout if timeout is not None else float("inf"))
    info = None
    while (left := deadline - time.monotonic()) > 0:
        if not select.select([proc.stdout], [], [], min(left, wait_every))[0]:
            if proc.poll() is not None:
                break
            if on_wait is not None:
                on_wait(time.monotonic() - t0)
            continue
        line = proc.stdout.readline()
        if not line:  # exited before READY
            break
        if line.startswith("READY "):
            info = json.loads(line[len("READY "):])
            break
    proc.stdout.close()  # the daemon writes nothing more to stdout
    if info is None:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        raise RuntimeError(f"neurender serve did not start (exit code {proc.returncode}); command: {' '.join(cmd)}")
    rd = Path(runtime_dir) if runtime_dir is not None else paths.default_runtime_dir()
    return DaemonHandle(proc, info, rd, owns)


def ensure_local_daemon(backend: str = "passthrough", **spawn_options) -> tuple[str, DaemonHandle | None]:
    """The local daemon's endpoint, starting one if none answers (the demo does this). Returns
    (endpoint, handle): handle is None when a daemon was already running (leave it alone), else the one
    started here (stop it when done)."""
    rd = spawn_options.get("runtime_dir")
    endpoint = paths.ipc_endpoint(Path(rd) if rd else None)
    if local_daemon_alive(endpoint):
        return endpoint, None
    handle = spawn_daemon(backend, **spawn_options)
    return handle.endpoint, handle
