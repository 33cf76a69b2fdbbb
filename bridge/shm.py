"""Session files in shared memory: plain files in /dev/shm, created 0600 by the daemon, which alone
creates and unlinks them. Plain files (not multiprocessing.shared_memory) because an attaching Python
process would otherwise register them with its resource tracker and unlink them on exit (gh-82300),
and because C# maps them with MemoryMappedFile.CreateFromFile."""
from __future__ import annotations

import errno
import fcntl
import mmap
import os
import re
from pathlib import Path

PREFIX = "neurender"
_NAME = re.compile(rf"^{PREFIX}-(\d+)-[0-9a-f]+\.(shm|lock)$")


def default_shm_dir() -> Path:
    return Path(os.environ.get("NEURENDER_SHM_DIR") or ("/dev/shm" if os.path.isdir("/dev/shm") else "/tmp"))


def segment_paths(shm_dir: Path, pid: int, session: str) -> tuple[Path, Path]:
    base = f"{PREFIX}-{pid}-{session}"
    return shm_dir / f"{base}.shm", shm_dir / f"{base}.lock"


class Segment:
    """The daemon's side of one session file: created exclusively, sized, mapped."""

    def __init__(self, path: Path, size: int):
        self.path = Path(path)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.ftruncate(fd, size)
            self.buf = mmap.mmap(fd, size)
        finally:
            os.close(fd)
        self.size = size

    def unlink(self) -> None:
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass

    def close(self) -> None:
        """Unlink the name and drop our reference. Never mmap.close(): numpy arrays made over the map keep
        only a reference to it, not a buffer export, so closing it under a frame that is still rendering
        would unmap memory in use (a segfault). The mapping goes when its last view is garbage."""
        self.unlink()
        self.buf = None


def attach(path: str | os.PathLike, size: int) -> mmap.mmap:
    """The client's side: map an existing session file read-write."""
    fd = os.open(path, os.O_RDWR)
    try:
        if os.fstat(fd).st_size < size:
            raise ValueError(f"{path} is smaller than the announced {size} bytes")
        return mmap.mmap(fd, size)
    finally:
        os.close(fd)


def create_lock_file(path: Path) -> int:
    """Create the empty per-session lock file (0600); returns the daemon's fd used for probing."""
    return os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)


def holder_alive(fd: int) -> bool:
    """True while someone else holds a flock on the file behind fd (the client's liveness lock)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return True
        raise
    fcntl.flock(fd, fcntl.LOCK_UN)
    return False


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale(shm_dir: Path) -> list[Path]:
    """Unlink our-prefix files of this user whose daemon pid is dead. Returns what was removed."""
    removed = []
    uid = os.getuid()
    try:
        entries = list(os.scandir(shm_dir))
    except FileNotFoundError:
        return removed
    for e in entries:
        m = _NAME.match(e.name)
        if not m:
            continue
        try:
            if e.stat(follow_symlinks=False).st_uid != uid:
                continue
        except FileNotFoundError:
            continue
        pid = int(m.group(1))
        if pid != os.getpid() and not _pid_alive(pid):
            try:
                os.unlink(e.path)
                removed.append(Path(e.path))
            except FileNotFoundError:
                pass
    return removed
