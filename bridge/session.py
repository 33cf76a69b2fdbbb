"""The daemon's state of one client session: its spec, slot layout, shared-memory files and the
bookkeeping of seqs, slots and drops. Owned by the socket loop only."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import zmq

from bridge import shm
from bridge.backends import SessionSpec
from bridge.layout import SlotLayout


@dataclass
class ServerSession:
    id: str
    sock: zmq.Socket
    peer: bytes  # ROUTER identity of the opening connection
    spec: SessionSpec
    layout: SlotLayout
    transport: str
    lock_enabled: bool
    segment: shm.Segment | None = None
    lock_path: Path | None = None
    lock_fd: int | None = None
    io: shm.SlotIO | None = None  # how the render thread reads input slots (a private copy) and writes output
    owner: tuple = ()  # (socket, routing id, connection fd, authenticated user id): see bridge.server
    identity: str = ""  # whom the session counts against for max_sessions_per_client
    last_seen: float = 0.0
    last_seq: int = -1
    busy: set = field(default_factory=set)  # slots owned by the daemon
    dropped: list = field(default_factory=list)  # seqs replaced, not yet reported
    unanswered: set = field(default_factory=set)  # accepted seqs with no frame_done/error/dropped entry yet
    progress_at: float = 0.0  # monotonic time of the last `progress` message sent about it
    waiting_since: float = 0.0  # monotonic time since which its oldest unanswered frame waits
    opened_at: float = 0.0
    seen_frame: bool = False
    open_req: int = 0
    ready: bool = False  # the renderer session exists
    frames_done: int = 0  # counters for the log line when the session ends
    frames_dropped: int = 0
    frames_failed: int = 0
    recording: object = None  # bridge.recorder.Recording when the client asked for `record`

    def release_files(self) -> None:
        self.io = None  # a frame still rendering keeps the mapping alive through its own reference
        if self.segment is not None:
            self.segment.close()
        if self.lock_fd is not None:
            os.close(self.lock_fd)
            self.lock_fd = None
        if self.lock_path is not None:
            try:
                self.lock_path.unlink()
            except FileNotFoundError:
                pass

    def create_files(self, shm_dir: Path) -> None:
        """The session's sealed memory, its 0600 lock file, and the SlotIO through which frames are read
        and written. On failure nothing is left behind."""
        try:
            self.segment = shm.Segment(shm.segment_name(os.getpid(), self.id), self.layout.size)
            self.io = shm.SlotIO(self.segment.buf, self.layout)
            path = shm.lock_path(shm_dir, os.getpid(), self.id)
            self.lock_path, self.lock_fd = path, shm.create_lock_file(path)
        except OSError:
            self.release_files()
            raise
