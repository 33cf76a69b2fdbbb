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
    """The daemon's side of one session file: created exclusively, sized, and mapped only when `mapped`
    (files no client can write, e.g. the worker pool's staging files; a client's session file is read and
    written through SlotIO instead)."""

    def __init__(self, path: Path, size: int, mapped: bool = True):
        self.path = Path(path)
        self.buf = None
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.ftruncate(fd, size)
            if mapped:
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


class ShmTruncated(OSError):
    """The session file is shorter than its layout: the client truncated or shrank it."""


class SlotIO:
    """The daemon's only access to a client-writable session file: pread into private buffers, pwrite
    the output back. Never a mapping: a client holds the file read-write and may truncate it at any
    moment, and touching a mapped page past the new end raises SIGBUS, which would end the daemon and
    every session of every client. pread/pwrite see the truncation as a short read (refused frame) or
    write past the end (the file grows again); unlink and chmod do not matter to an open fd.

    Owns the fd; closed when the last holder (the session, a frame still rendering) lets go of it, so a
    frame that finishes after its session closed never writes into a reused fd number."""

    def __init__(self, path: str | os.PathLike, layout):
        self.fd = os.open(path, os.O_RDWR)
        self.layout = layout
        self._spans = []  # per slot: (file offset of the first input byte, bytes through the last channel)
        for offs in layout.input_offsets:
            end = max(o + c.nbytes for o, c in zip(offs, layout.channels))
            self._spans.append((min(offs), end - min(offs)))
        self._buf = bytearray(max(n for _, n in self._spans))
        self._views = {}  # slot -> (buffer, {name: (H, W, C) view of it}): built once per slot and buffer
        o = layout.output
        import numpy as np
        self.out = np.empty((layout.height, layout.width, o.components), np.dtype(o.dtype).newbyteorder("<"))

    def read(self, slot: int, buffer_for=None) -> dict:
        """Input slot `slot` copied into this session's private buffer, or into `buffer_for(nbytes)` when that
        gives one (a renderer's own, RendererSession.input_buffer); views over that buffer (valid until the
        next read). Raises ShmTruncated on a short read."""
        base, n = self._spans[slot]
        buf = buffer_for(n) if buffer_for is not None else None
        if buf is None or memoryview(buf).nbytes < n:
            buf = self._buf
        got = os.preadv(self.fd, [memoryview(buf).cast("B")[:n]], base)
        if got != n:
            raise ShmTruncated(f"session file ends inside input slot {slot} ({got} of {n} bytes read): the client "
                               "truncated or shrank it")
        held = self._views.get(slot)
        if held is None or held[0] is not buf:
            import numpy as np
            held = (buf, {c.name: np.ndarray((self.layout.height, self.layout.width, c.components),
                                             np.dtype(c.dtype).newbyteorder("<"), buffer=buf, offset=off - base)
                          for c, off in zip(self.layout.channels, self.layout.input_offsets[slot])})
            self._views[slot] = held
        return held[1]

    def write(self, slot: int, image) -> None:
        """`image` (the output format's array) into output slot `slot`."""
        data = memoryview(image).cast("B")
        off = self.layout.output_offsets[slot]
        while data:
            n = os.pwrite(self.fd, data, off)
            data, off = data[n:], off + n

    def __del__(self):
        fd, self.fd = getattr(self, "fd", None), None
        if fd is not None:
            os.close(fd)
