"""Session memory shared with a client: an anonymous memfd the daemon creates, sizes and seals against
shrinking and growing (F_SEAL_SHRINK | F_SEAL_GROW, then F_SEAL_SEAL so nobody adds more), handed to the
client as the path /proc/<daemon pid>/fd/<fd>. Sealed, the client cannot change its size: truncating it
fails with EPERM, so the daemon may map it (zero-copy) without a page ever vanishing under the mapping,
which would raise SIGBUS and end the daemon and every session of every client. Unlinking or chmod-ing
the path changes nothing the daemon uses, and no file outlives the daemon (the memory goes with the last
descriptor or mapping). Beside it, a plain empty 0600 lock file in shm_dir (the client's liveness flock),
created and unlinked by the daemon alone."""
from __future__ import annotations

import errno
import fcntl
import mmap
import os
import re
from pathlib import Path

PREFIX = "neurender"
_NAME = re.compile(rf"^{PREFIX}-(\d+)-[0-9a-f]+\.(shm|lock)$")  # .shm: files of daemons before memfds
SEALS = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW  # what makes a mapping of it safe


def default_shm_dir() -> Path:
    return Path(os.environ.get("NEURENDER_SHM_DIR") or ("/dev/shm" if os.path.isdir("/dev/shm") else "/tmp"))


def segment_name(pid: int, session: str) -> str:
    """The memfd's name: a client checks it (readlink) before mapping, see attach."""
    return f"{PREFIX}-{pid}-{session}"


def lock_path(shm_dir: Path, pid: int, session: str) -> Path:
    return shm_dir / f"{segment_name(pid, session)}.lock"


class Segment:
    """The daemon's side of one session's memory: a sealed memfd, mapped once (`buf`), reachable by
    others at `path` while the daemon keeps `fd` open (until close)."""

    def __init__(self, name: str, size: int):
        if not hasattr(os, "memfd_create"):
            raise OSError(errno.ENOSYS, "shared-memory sessions need Linux (memfd_create)")
        fd = os.memfd_create(name, os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        try:
            os.fchmod(fd, 0o600)
            os.ftruncate(fd, size)
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, SEALS | fcntl.F_SEAL_SEAL)
            self.buf = mmap.mmap(fd, size)
        except BaseException:
            os.close(fd)
            raise
        self.fd, self.name, self.size = fd, name, size
        self.path = f"/proc/{os.getpid()}/fd/{fd}"

    def close(self) -> None:
        """Close the descriptor (the path stops leading to it) and drop our reference. Never mmap.close():
        numpy arrays made over the map keep only a reference to it, not a buffer export, so closing it
        under a frame that is still rendering would unmap memory in use (a segfault). The mapping goes
        when its last view is garbage."""
        fd, self.fd = self.fd, None
        if fd is not None:
            os.close(fd)
        self.buf = None


def attach(path: str | os.PathLike, size: int, name: str | None = None, sealed: bool = False) -> mmap.mmap:
    """Map another process's session memory read-write. `name`: the memfd must be this one (a /proc fd
    number can be reused once its session is gone); `sealed`: refuse memory whose size is not sealed
    (the daemon's render workers map nothing a client could shrink)."""
    fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    try:
        if name is not None and os.readlink(f"/proc/self/fd/{fd}") != f"/memfd:{name} (deleted)":
            raise ValueError(f"{path} is not the session memory {name!r} (the session is gone)")
        if sealed and fcntl.fcntl(fd, fcntl.F_GET_SEALS) & SEALS != SEALS:
            raise ValueError(f"{path} is not sealed against shrinking and growing")
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


class SlotIO:
    """The render side's zero-copy access to one session's (sealed) memory: read-only views of an input
    slot, writable views of an output slot. Read-only, so that repairing non-finite pixels (bridge.repair)
    copies the channel instead of writing into the client's slot. No private copy of the inputs: a copy
    of 6 MiB cost more than the rest of a 512x512 passthrough frame; a client that writes into a slot the
    daemon owns (between its `frame` and the answer, which the protocol forbids) can only spoil frames
    of its own session."""

    def __init__(self, buf: mmap.mmap, layout):
        self.buf = buf
        self.layout = layout
        self._in = []
        for k in range(layout.slots):
            views = layout.input_views(buf, k)
            for v in views.values():
                v.flags.writeable = False
            self._in.append(views)
        self._out = [layout.output_view(buf, k) for k in range(layout.slots)]

    def read(self, slot: int) -> dict:
        """{channel name: read-only (H, W, C) view of input slot `slot`}."""
        return self._in[slot]

    def output(self, slot: int):
        """The (H, W, C) array of output slot `slot` in the shared memory: render into it."""
        return self._out[slot]
