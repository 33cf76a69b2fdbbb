"""Where the local daemon lives and where keys are kept.

runtime dir (0700): $NEURENDER_RUNTIME_DIR, else $XDG_RUNTIME_DIR/neurender, else /tmp/neurender-<uid>.
It holds the ipc socket `daemon.sock` (a client finds the local daemon at ipc://<runtime dir>/daemon.sock)
and `daemon.pid`. keys dir: $NEURENDER_KEYS_DIR, else $XDG_CONFIG_HOME/neurender/keys, else
~/.config/neurender/keys.
"""
from __future__ import annotations

import os
import stat
from pathlib import Path

SOCKET_NAME = "daemon.sock"
PID_NAME = "daemon.pid"
IPC_PATH_MAX = 107  # sun_path limit on Linux


def default_runtime_dir() -> Path:
    if os.environ.get("NEURENDER_RUNTIME_DIR"):
        return Path(os.environ["NEURENDER_RUNTIME_DIR"])
    if os.environ.get("XDG_RUNTIME_DIR"):
        return Path(os.environ["XDG_RUNTIME_DIR"]) / "neurender"
    return Path(f"/tmp/neurender-{os.getuid()}")


def ensure_private_dir(path: Path) -> Path:
    """Create `path` 0700 (or check an existing one is ours and not group/world accessible)."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = path.stat()
    if st.st_uid != os.getuid():
        raise PermissionError(f"{path} belongs to uid {st.st_uid}, not us")
    if stat.S_IMODE(st.st_mode) & 0o077:
        os.chmod(path, 0o700)
    return path


def ipc_endpoint(runtime_dir: Path | None = None) -> str:
    path = (runtime_dir or default_runtime_dir()) / SOCKET_NAME
    if len(str(path)) > IPC_PATH_MAX:
        raise ValueError(f"ipc path {path} is longer than {IPC_PATH_MAX} characters; use a shorter runtime dir")
    return f"ipc://{path}"


def default_keys_dir() -> Path:
    if os.environ.get("NEURENDER_KEYS_DIR"):
        return Path(os.environ["NEURENDER_KEYS_DIR"])
    config = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return config / "neurender" / "keys"
