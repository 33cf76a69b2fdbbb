"""Finding the daemon the demo talks to: the one already serving at the endpoint, or a fresh one the
demo starts (and stops) itself with bridge.daemon.spawn_daemon."""
from __future__ import annotations

import argparse
from pathlib import Path


SESSION_TIMEOUT_MS = 15000  # for the daemon the demo starts itself
# How long the demo waits for an answer while the daemon says nothing. A daemon that is still loading
# the model (before it serves), opening the session (prompt encoding) or rendering the first frame
# (compilation) says so every second, and each of those restarts this wait: a cold first run takes as
# long as it takes, with a progress line instead of a traceback.
CLIENT_TIMEOUT_S = 60.0
WAIT_LINE_S = 5.0  # a "still starting" line this often while the daemon loads its model


def serve_default(option: str):
    """The default of a `neurender serve` option, read from its own parser (never restated here)."""
    from bridge import serve_cmd

    p = argparse.ArgumentParser()
    serve_cmd.configure(p)
    return p.get_default(option)


class DaemonLink:
    """Opens a Client on an existing daemon or on one it spawns. `close()` stops what it started."""

    def __init__(self, backend: str | None = None, steps: int | None = None, runtime_dir: str | None = None,
                 endpoint: str | None = None, device: str | None = None, log=print):
        from bridge import paths
        from bridge.client import Client
        from bridge.daemon import local_daemon_alive, spawn_daemon

        self.handle = None
        if endpoint is None:
            rd = Path(runtime_dir) if runtime_dir else paths.default_runtime_dir()
            endpoint = paths.ipc_endpoint(rd)
            welcome = local_daemon_alive(endpoint)
            if welcome is not None:
                log(f"using the daemon already serving {endpoint} (pid {welcome.get('pid')})")
                if backend:
                    log("  (--backend applies only to a daemon the demo starts itself)")
            else:
                backend = backend or serve_default("backend")
                log(f"starting a daemon: --backend {backend}" + (f" --steps {steps}" if steps else ""))
                # A generous heartbeat timeout: on a loaded machine a frame of this process can stall
                # for seconds; a dead demo is still noticed at once through its shm lock.
                self.handle = spawn_daemon(backend=backend, runtime_dir=str(rd) if runtime_dir else None,
                                           steps=steps, device=device, timeout=None,
                                           extra_args=["--session-timeout-ms", str(SESSION_TIMEOUT_MS)],
                                           on_wait=lambda t: log(f"waiting for the daemon to start: loading the "
                                                                 f"model ({t:.0f} s)"), wait_every=WAIT_LINE_S)
                endpoint = self.handle.endpoint
        elif local_daemon_alive(endpoint, timeout=3.0) is None:
            from bridge.client import DaemonUnavailable

            raise DaemonUnavailable(f"no neurender daemon answers at {endpoint}")
        self.endpoint = endpoint
        try:
            self.client = Client(endpoint, name="neurender-demo", timeout=CLIENT_TIMEOUT_S,
                                 on_progress=lambda m: log(f"waiting for the daemon: {m.get('message', m.get('stage'))} "
                                                           f"({m.get('elapsed_ms', 0) / 1e3:.0f} s)"))
        except Exception:
            self.close_daemon()
            raise

    def close_daemon(self) -> None:
        if self.handle is not None:
            self.handle.stop()
            self.handle = None

    def close(self) -> None:
        try:
            self.client.close()
        finally:
            self.close_daemon()
