"""Recording a session to disk in the dataset format (docs/dataset.md, "Recordings"), off the render thread.

A session opened with `record: NAME` gets a `Recording` that writes one sequence into
`<recordings root>/NAME/`: every engine channel the client declared, its `final` frame (the training
target), the action, the camera constants and the reset flag of every frame it sends.

Three parties, so that recording never changes frame latency and never holds unbounded memory:
- the socket loop calls `capture()` (a deque append; never blocks) and, before it hands a slot back
  to the client, `wait_copied(seq)` (the copy runs while the render thread renders, so this rarely
  waits at all);
- the copier thread converts the frame into one of a fixed pool of frame buffers (storage dtypes);
  when every buffer is still waiting for the disk, the frame is skipped (counted) and the next
  recorded frame is marked as a cut, so a slow disk costs frames of the recording, never frames of
  the game;
- the writer thread appends buffers to one .npy file per array, then returns them to the pool.
`finish()` (session end, client death, daemon shutdown) lets the threads drain, writes the final
frame count into every .npy header and adds the sequence to `index.json` (atomically, under a lock
shared with every other recording into the same directory). A write that fails (a full disk) ends
the recording with a `RecordError`; the rows written until then are kept; the session goes on.
"""
from __future__ import annotations

import fcntl
import logging
import os
import re
import threading
import time
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bridge.channels import ACTION_DIM, CHANNELS, CONSTANTS_LAYOUT, FINAL
from bridge.dataset_format import (INDEX_FILE, NPY_HEADER_BYTES, DatasetError, array_specs, commit, make_index,
                                   npy_header, read_index, shard_dir_name)

log = logging.getLogger("neurender.bridge")

# A recording's name is a directory under the recordings root and the name of its look (the prompt that
# selects it once a model is fine-tuned on it): no path separators, no dot files, no "..".
RECORD_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
FRAMES_PER_SHARD = 2048  # as `neurender dataset make`: a longer session continues as a new sequence
BUFFER_BYTES = 64 * 2**20  # frames converted and waiting for the disk, per recording
MIN_BUFFERS, MAX_BUFFERS = 2, 16
LOCK_FILE = ".lock"
WRITER_NICE = 10  # the writer thread's nice value (Linux threads are scheduled one by one)
_dir_locks: dict[str, threading.Lock] = {}
_dir_locks_guard = threading.Lock()


class RecordError(Exception):
    """Recording stopped (the disk is full, or the directory cannot be written); the session goes on.
    Reported to the client as the `record_error` of a frame_done, code `record_failed`."""

    code = "record_failed"


def check_record_name(name: str) -> str:
    if not isinstance(name, str) or not RECORD_NAME.fullmatch(name):  # (match's $ would let "name\n" in)
        raise ValueError(f"record name {name!r} must match {RECORD_NAME.pattern} (it becomes a directory name)")
    return name


def default_recordings_dir() -> Path:
    """$NEURENDER_RECORDINGS_DIR, else $XDG_DATA_HOME/neurender/recordings, else ~/.local/share/neurender/recordings."""
    if os.environ.get("NEURENDER_RECORDINGS_DIR"):
        return Path(os.environ["NEURENDER_RECORDINGS_DIR"])
    data = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return data / "neurender" / "recordings"


@contextmanager
def _locked(root: Path):
    """One writer of a directory's index at a time: a thread lock (sessions of this daemon) plus an
    flock (other daemons)."""
    with _dir_locks_guard:
        lock = _dir_locks.setdefault(str(root.resolve()), threading.Lock())
    with lock:
        fd = os.open(root / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


def recorded_channels(declared: dict[str, str]) -> list[str]:
    """What a recording stores: the declared engine channels in bridge.channels order, then `final`."""
    return [c for c in CHANNELS if c in declared] + [FINAL.name]


def check_compatible(index: dict, width: int, height: int, channels: list[str], look: str, where: Path) -> None:
    if "look" not in index:
        raise ValueError(f"{where} holds a dataset that is not a recording")
    if (index["width"], index["height"]) != (width, height):
        raise ValueError(f"{where} holds {index['width']}x{index['height']} frames, this session is {width}x{height}")
    if list(index["channels"]) != channels:
        raise ValueError(f"{where} holds channels {index['channels']}, this session declares {channels}")
    if index["look"].get("name") != look:
        raise ValueError(f"{where} records the look {index['look'].get('name')!r}, not {look!r}")


@dataclass
class _Capture:
    seq: int
    pixels: dict | int  # name -> (H, W, C) view of an inline frame, or the shm slot to read (`slots`)
    constants: dict
    action: np.ndarray
    reset: bool


class _Shard:
    """One sequence's shard being written: one open .npy file per array."""

    def __init__(self, path: Path, specs: dict):
        self.path, self.specs, self.rows = path, specs, 0
        self.files = {}
        for name, (dtype, shape) in specs.items():
            f = open(path / f"{name}.npy", "wb", buffering=0)
            self.files[name] = f
            _write_all(f, npy_header(dtype, (0, *shape)))

    def append(self, arrays: dict[str, np.ndarray]) -> None:
        for name, f in self.files.items():
            _write_all(f, memoryview(np.ascontiguousarray(arrays[name])).cast("B"))
        self.rows += 1

    def close(self) -> None:
        """Cut every file to the rows complete in all of them and write that count into its header."""
        for name, f in self.files.items():
            dtype, shape = self.specs[name]
            row_bytes = np.dtype(dtype).itemsize * int(np.prod(shape, dtype=np.int64))
            try:
                f.truncate(NPY_HEADER_BYTES + self.rows * row_bytes)
                f.seek(0)
                _write_all(f, npy_header(dtype, (self.rows, *shape)))
            finally:
                f.close()
        self.files = {}


def _write_all(f, data) -> None:
    view = memoryview(data)
    while len(view):
        n = f.write(view)
        if not n:
            raise OSError("short write")
        view = view[n:]


class Recording:
    def __init__(self, root: Path, look: str, prompt: str | None, width: int, height: int,
                 declared: dict[str, str], session: str, *, frames_per_shard: int = FRAMES_PER_SHARD,
                 buffer_bytes: int = BUFFER_BYTES):
        """Checks that `root/look` can take this session (raises ValueError if not: an `open` error)."""
        check_record_name(look)
        if FINAL.name not in declared:
            raise ValueError(f"recording needs the {FINAL.name!r} channel (the game's finished frame, the "
                             "training target)")
        self.look, self.prompt = look, prompt or look
        self.width, self.height, self.session = width, height, session
        self.declared = dict(declared)
        self.slots = None  # shm sessions: the SlotIO the copier reads captured slots through
        self.channels = recorded_channels(declared)
        self.specs = array_specs(width, height, [], self.channels)
        self.dir = Path(root) / look
        self.frames_per_shard = frames_per_shard
        self.dir.mkdir(parents=True, exist_ok=True)
        if (self.dir / INDEX_FILE).exists():
            try:
                check_compatible(read_index(self.dir), width, height, self.channels, look, self.dir)
            except DatasetError as e:
                raise ValueError(str(e)) from None
        frame_bytes = sum(np.dtype(d).itemsize * int(np.prod(s)) for d, s in self.specs.values())
        n_buffers = int(np.clip(buffer_bytes // max(frame_bytes, 1), MIN_BUFFERS, MAX_BUFFERS))
        self._free: deque = deque(self._new_buffer() for _ in range(n_buffers))
        self.n_buffers = n_buffers
        self._cv = threading.Condition()
        self._inbox: deque[_Capture] = deque()
        self._to_disk: deque = deque()
        self._copied_seq = -1
        self._finishing = False
        self._cut_next = True  # frame 0 of a sequence is a reset
        self.error: RecordError | None = None
        self.error_reported = False
        self.frames = 0  # rows on disk
        self.skipped = 0  # frames not recorded because the disk fell behind
        self.sequences: list[dict] = []  # this session's sequences once committed
        self.done = threading.Event()
        self.started = time.time()
        self._dts: list[float] = []
        self._shard: _Shard | None = None
        self._shards_done: list[tuple[str, int, float]] = []  # (dir, rows, fps) closed, not yet committed
        self._copier = threading.Thread(target=self._copy_loop, name=f"record-copy-{session}")
        self._writer = threading.Thread(target=self._write_loop, name=f"record-write-{session}")
        # not daemon threads: a daemon that exits still finishes the shard (headers, index)
        self._copier.start()
        self._writer.start()

    def _new_buffer(self) -> dict[str, np.ndarray]:
        return {name: np.zeros(shape, dtype) for name, (dtype, shape) in self.specs.items()}

    # -- the socket loop -----------------------------------------------------------------------------
    def capture(self, seq: int, pixels: dict, constants: dict, action: np.ndarray, reset: bool) -> None:
        with self._cv:
            if self._finishing or self.error is not None:
                self._copied_seq = seq
                return
            self._inbox.append(_Capture(seq, pixels, constants, action, reset))
            self._cv.notify_all()

    def wait_copied(self, seq: int, timeout: float = 5.0) -> float:
        """Until frame `seq` (and every earlier one) has left the client's slot; returns the ms waited."""
        t0 = time.perf_counter()
        with self._cv:
            self._cv.wait_for(lambda: self._copied_seq >= seq or self.error is not None or self._copier_gone,
                              timeout)
        return (time.perf_counter() - t0) * 1e3

    @property
    def _copier_gone(self) -> bool:
        return not self._copier.is_alive()

    def take_error(self) -> RecordError | None:
        """The error to report, once."""
        if self.error is not None and not self.error_reported:
            self.error_reported = True
            return self.error
        return None

    def finish(self) -> None:
        """Stop taking frames; the threads write what they hold, close the shard and commit the index."""
        with self._cv:
            self._finishing = True
            self._cv.notify_all()

    def join(self, timeout: float | None = None) -> bool:
        self._copier.join(timeout)
        self._writer.join(timeout)
        return self.done.is_set()

    # -- the copier thread -----------------------------------------------------------------------------
    def _copy_loop(self) -> None:
        while True:
            with self._cv:
                self._cv.wait_for(lambda: self._inbox or self._finishing)
                if not self._inbox:  # finishing and nothing left
                    self._to_disk.append(None)
                    self._cv.notify_all()
                    return
                cap = self._inbox.popleft()
                buf = self._free.popleft() if self._free and self.error is None else None
            if buf is not None:
                try:
                    self._convert(cap, buf)
                except Exception as e:  # noqa: BLE001 - a bad frame must not take the daemon down
                    log.exception("recording %s: frame %d could not be converted", self.look, cap.seq)
                    self._fail(RecordError(f"frame {cap.seq} could not be recorded: {type(e).__name__}: {e}"))
                    buf = None
            with self._cv:
                self._copied_seq = cap.seq
                if buf is None:
                    if self.error is None:
                        self.skipped += 1
                    self._cut_next = True  # the frames around a gap are not consecutive
                else:
                    buf["reset"][...] = 1 if (cap.reset or self._cut_next) else 0
                    self._cut_next = False
                    self._to_disk.append(buf)
                self._cv.notify_all()

    def _convert(self, cap: _Capture, buf: dict) -> None:
        # an int is a shared-memory slot: read here, before the socket loop hands it back (wait_copied)
        pixels = self.slots.read(cap.pixels) if isinstance(cap.pixels, int) else cap.pixels
        for name in self.channels:
            src, dst = pixels[name], buf[name]
            if src.dtype == np.uint8 and dst.dtype == np.float16:  # 8-bit colour: [0, 255] -> [0, 1]
                np.multiply(src, np.float16(1 / 255), out=dst, casting="unsafe")
            else:
                np.copyto(dst, src, casting="unsafe")
        a = np.asarray(cap.action, np.float32).reshape(-1)[:ACTION_DIM]
        buf["action"][:] = 0
        buf["action"][: len(a)] = a
        c = buf["constants"]
        i = 0
        for name, n in CONSTANTS_LAYOUT.items():  # constants a client did not send are stored as zeros
            c[i:i + n] = np.asarray(cap.constants[name], np.float32).reshape(-1) if name in cap.constants else 0
            i += n
        dt = cap.constants.get("dt")
        if dt is not None and float(np.asarray(dt).reshape(-1)[0]) > 0 and len(self._dts) < 1000:
            self._dts.append(float(np.asarray(dt).reshape(-1)[0]))

    def _fail(self, err: RecordError) -> None:
        with self._cv:
            if self.error is None:
                self.error = err
                log.warning("recording %s of session %s stopped: %s", self.look, self.session, err)
            self._inbox.clear()
            self._cv.notify_all()

    # -- the writer thread -----------------------------------------------------------------------------
    def _write_loop(self) -> None:
        try:  # the disk can wait; the socket loop, the render thread and the copier cannot
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), WRITER_NICE)
        except (OSError, AttributeError):
            pass
        try:
            while True:
                with self._cv:
                    self._cv.wait_for(lambda: self._to_disk)
                    buf = self._to_disk.popleft()
                if buf is None:
                    break
                try:
                    if self.error is None:
                        self._write(buf)
                except OSError as e:
                    self._fail(RecordError(f"writing {self.dir} failed: {e.strerror or e} "
                                           f"({self.frames} frames kept)"))
                with self._cv:
                    self._free.append(buf)
                    self._cv.notify_all()
            self._close_shard()
            self._commit()
        except Exception as e:  # noqa: BLE001
            log.exception("recording %s: finishing failed", self.look)
            self._fail(RecordError(f"finishing {self.dir} failed: {type(e).__name__}: {e}"))
        finally:
            self.done.set()
            with self._cv:
                self._cv.notify_all()

    def _write(self, buf: dict) -> None:
        if self._shard is not None and self._shard.rows >= self.frames_per_shard:
            self._close_shard()
            buf["reset"][...] = 1  # a new sequence starts
        if self._shard is None:
            self._shard = _Shard(self._reserve_shard_dir(), self.specs)
        self._shard.append(buf)
        self.frames += 1

    def _reserve_shard_dir(self) -> Path:
        with _locked(self.dir):
            taken = [int(p.name.split("_")[1]) for p in self.dir.glob("shard_*") if p.name.split("_")[1].isdigit()]
            d = self.dir / shard_dir_name(max(taken, default=-1) + 1)
            d.mkdir()  # the directory is the reservation
            return d

    def _close_shard(self) -> None:
        shard, self._shard = self._shard, None
        if shard is None:
            return
        try:
            shard.close()
        except OSError as e:
            self._fail(RecordError(f"closing {shard.path} failed: {e.strerror or e}"))
            shard.rows = 0  # a shard whose header could not be written is not committed
        fps = 1.0 / float(np.median(self._dts)) if self._dts else 0.0
        if shard.rows:
            self._shards_done.append((shard.path.name, shard.rows, fps))

    def _commit(self) -> None:
        if not self._shards_done:
            return
        with _locked(self.dir):
            if (self.dir / INDEX_FILE).exists():
                index = read_index(self.dir)
                check_compatible(index, self.width, self.height, self.channels, self.look, self.dir)
            else:
                index = make_index(width=self.width, height=self.height, styles={}, split="train", shards=[],
                                   sequences=[], channels=self.channels, look={"name": self.look, "prompt": self.prompt},
                                   meta={"created_by": "neurender serve --recordings-dir (a recorded session)",
                                         "frames": 0, "per_sequence": []})
            for name, rows, fps in self._shards_done:
                seq = {"seed": len(index["sequences"]), "frames": rows, "shard": len(index["shards"]), "start": 0,
                       "script": "recorded", "fps": fps}
                index["shards"].append({"dir": name, "frames": rows})
                index["sequences"].append(seq)
                index["meta"]["frames"] = int(index["meta"].get("frames", 0)) + rows
                index["meta"].setdefault("per_sequence", []).append(
                    {"seed": seq["seed"], "frames": rows, "session": self.session, "skipped": self.skipped,
                     "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.started)),
                     "declared": self.declared})
                self.sequences.append(seq)
            commit(self.dir, index)
            self._shards_done = []

