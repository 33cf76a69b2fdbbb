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
    in_views: list = field(default_factory=list)  # [slot] -> {name: read-only view}
    out_views: list = field(default_factory=list)  # [slot] -> writable view
    last_seen: float = 0.0
    last_seq: int = -1
    busy: set = field(default_factory=set)  # slots owned by the daemon
    dropped: list = field(default_factory=list)  # seqs replaced, not yet reported
    seen_frame: bool = False
    open_req: int = 0
    ready: bool = False  # the renderer session exists
    frames_done: int = 0  # counters for the log line when the session ends
    frames_dropped: int = 0
    frames_failed: int = 0

    def release_files(self) -> None:
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
        """The session's 0600 data and lock files, and the slot views the renderer gets (inputs
        read-only). On failure nothing is left behind."""
        data_path, lock_path = shm.segment_paths(shm_dir, os.getpid(), self.id)
        try:
            self.segment = shm.Segment(data_path, self.layout.size)
            self.lock_path, self.lock_fd = lock_path, shm.create_lock_file(lock_path)
        except OSError:
            self.release_files()
            raise
        for k in range(self.layout.slots):
            views = self.layout.input_views(self.segment.buf, k)
            for v in views.values():
                v.flags.writeable = False
            self.in_views.append(views)
            self.out_views.append(self.layout.output_view(self.segment.buf, k))
