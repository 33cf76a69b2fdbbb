"""One client process of `neurender bench soak` (bridge/soak_cmd.py starts K of them and kills some).

It streams paced frames through the Python client, reopening its session every few hundred frames at a
random size and transport, and between good frames sends bad messages from a second raw socket
(garbage, wrong versions and fields, frames naming its own session from another connection). It checks
every answer: each seq answered exactly once (frame_done, error with its seq, or a `dropped` entry), in
increasing order, with the right pixels; NaN pixels it sends now and then must come back repaired.
Its counters go to a JSON file, rewritten atomically every second, so a SIGKILL loses at most a second.
Each frame with wrong pixels is also appended at once to <stats>.wrong.jsonl: which pixels differ and
how, and what this client did just before (bad messages, NaN frames, session opens, a lost daemon), for
soak_cmd to put beside its own events (kills, the restart).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import signal
import time
from collections import Counter

import msgpack
import numpy as np
import zmq

SIZES = ((32, 16), (64, 64), (160, 90), (256, 144))
FLUSH_S = 1.0


class Stats:
    def __init__(self, path: str):
        self.path = path
        self.c = Counter()
        self.errors = Counter()  # error code -> count (replies to bad messages and refused frames)
        self.last = 0.0

    def wrong(self, **record) -> None:
        """One wrong frame, on disk at once (a SIGKILL may follow)."""
        with open(self.path + ".wrong.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")

    def flush(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last < FLUSH_S:
            return
        self.last = now
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"counters": dict(self.c), "errors": dict(self.errors), "pid": os.getpid()}, f)
        os.replace(tmp, self.path)


BAD_KINDS = ("garbage", "version 2", "unknown type", "slots 0", "huge resolution", "frame from another socket",
             "close from another socket", "NaN action")


def bad_message(rng: random.Random, session: str, kind: int) -> list[bytes]:
    """One hostile message; each is refused with an error reply (never a crash, never a closed session)."""
    if kind == 0:
        return [bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40)))]  # garbage
    if kind == 1:
        return [msgpack.packb({"v": 2, "type": "hello"})]
    if kind == 2:
        return [msgpack.packb({"v": 1, "type": "nope", "req": 5})]
    if kind == 3:
        return [msgpack.packb({"v": 1, "type": "open", "req": 6, "width": 8, "height": 8, "channels": {"color": "float16"},
                               "action_dim": 9, "output_format": "rgb8", "transport": "shm", "slots": 0})]
    if kind == 4:
        return [msgpack.packb({"v": 1, "type": "open", "req": 7, "width": 10**6, "height": 8,
                               "channels": {"color": "float16"}, "action_dim": 9, "output_format": "rgb8",
                               "transport": "inline"})]
    if kind == 5:  # our own session, from another connection: must not reach it
        return [msgpack.packb({"v": 1, "type": "frame", "session": session, "seq": 10**9, "slot": 0})]
    if kind == 6:
        return [msgpack.packb({"v": 1, "type": "close", "req": 8, "session": session})]
    return [msgpack.packb({"v": 1, "type": "frame", "session": "0" * 16, "seq": 1, "action": [float("nan")] * 9})]


def run(endpoint: str, index: int, seed: int, stats_path: str, fps: float) -> None:
    from bridge.client import BridgeError, Client, DaemonUnavailable, SessionLost

    rng = random.Random(seed)
    st = Stats(stats_path)
    stop = False

    def on_term(signum, frame):
        nonlocal stop
        stop = True
    signal.signal(signal.SIGTERM, on_term)
    ctx = zmq.Context()
    raw = ctx.socket(zmq.DEALER)
    raw.setsockopt(zmq.LINGER, 0)
    raw.connect(endpoint)
    period = 1.0 / fps
    client = None
    recent: list = []  # (time.time(), what): this client's last events, logged with a wrong frame

    def event(what: str) -> None:
        recent.append((round(time.time(), 3), what))
        del recent[:-12]
    while not stop:
        outstanding: dict[int, float] = {}  # seq -> expected red value of its output
        try:
            if client is None:
                client = Client(endpoint, timeout=10.0, name=f"soak-{index}")
                st.c["connections"] += 1
                event(f"connected (daemon pid {client.welcome.get('pid')})")
            w, h = rng.choice(SIZES)
            transport = rng.choice(("shm", "inline"))
            s = client.open_session(w, h, {"color": "float16", "depth": "float32"}, transport=transport,
                                    slots=rng.choice((2, 3, 4)))
            st.c["sessions"] += 1
            event(f"opened {s.id} {w}x{h} {transport} slots={s.slots}")
            opened = recent[-1]
            nan_seqs: set[int] = set()
            slot_of: dict[int, int | None] = {}  # seq -> shm slot (to say which output slot was wrong)
            last_answered = -1
            color = np.zeros((h, w, 3), np.float16)
            depth = np.ones((h, w, 1), np.float32)

            def take(r) -> None:
                nonlocal last_answered
                for q in r.dropped:
                    if outstanding.pop(q, None) is None:
                        st.c["answered_twice"] += 1
                    st.c["dropped"] += 1
                if r.seq not in outstanding:
                    st.c["answered_twice"] += 1
                    return
                value = outstanding.pop(r.seq)
                if r.seq < last_answered:
                    st.c["reordered"] += 1
                last_answered = r.seq
                st.c["rendered"] += 1
                want = int(value * 255 + 0.5)
                bad = r.image[..., 0] != want
                if r.seq in nan_seqs:
                    bad[0, 0] = False  # the NaN pixel, repaired to 0
                if bad.any():  # the whole image, not one pixel: where it differs tells the cause
                    st.c["wrong_pixels"] += 1
                    ys, xs = np.nonzero(bad)
                    got = r.image[..., 0][bad]
                    st.wrong(t=round(time.time(), 3), client=index, session=s.id, seq=r.seq, size=[w, h],
                             transport=transport, slots=s.slots, slot=slot_of.get(r.seq), expected=want,
                             wrong_pixels=int(bad.sum()), of=w * h, first=[int(ys[0]), int(xs[0])],
                             last=[int(ys[-1]), int(xs[-1])], got_values=sorted({int(v) for v in got})[:8],
                             rows=[int(ys.min()), int(ys.max())], nan_frame=r.seq in nan_seqs,
                             dropped=list(r.dropped), timings=r.timings, in_flight=len(outstanding),
                             session_opened=opened, recent=list(recent))
                if r.seq in nan_seqs:
                    nan_seqs.discard(r.seq)
                    st.c["nan_frames_repaired" if getattr(r, "repaired", 0) else "nan_frames_not_repaired"] += 1

            def collect(timeout: float) -> bool:
                try:
                    r = s.poll(timeout=timeout)
                except BridgeError as e:
                    st.errors[e.code] += 1
                    if e.seq is not None and outstanding.pop(e.seq, None) is None:
                        st.c["answered_twice"] += 1
                    return True
                if r is None:
                    return False
                take(r)
                return True

            n_frames = rng.randrange(50, 400)
            next_tick = time.monotonic()
            for i in range(n_frames):
                if stop:
                    break
                value = rng.randrange(256) / 255.0
                color[...] = value
                nan = rng.random() < 0.02
                if nan:
                    color[0, 0, 0] = np.nan
                while s.free_slots() == 0:
                    if not collect(10.0):
                        raise TimeoutError("no answer for 10 s")
                seq = s.submit({"color": color, "depth": depth}, action=[0.0] * 9)
                outstanding[seq] = float(np.float16(value))
                slot_of[seq] = s._inflight[seq][0] if transport == "shm" else None
                if nan:
                    nan_seqs.add(seq)
                    event(f"NaN pixel in seq {seq}")
                st.c["submitted"] += 1
                while collect(0.0):
                    pass
                if rng.random() < 0.05:
                    kind = rng.randrange(len(BAD_KINDS))
                    raw.send_multipart(bad_message(rng, s.id, kind))
                    st.c["bad_sent"] += 1
                    event(f"bad message: {BAD_KINDS[kind]} (after seq {seq})")
                while raw.poll(0):
                    reply = msgpack.unpackb(raw.recv_multipart()[0], raw=False)
                    st.errors[reply.get("code", reply.get("type"))] += 1
                    st.c["bad_answered"] += 1
                st.flush()
                next_tick += period
                time.sleep(max(0.0, next_tick - time.monotonic()))
            deadline = time.monotonic() + 10
            while outstanding and time.monotonic() < deadline:
                collect(0.5)
            for q in s.close():
                outstanding.pop(q, None)
                st.c["dropped"] += 1
            st.c["lost"] += len(outstanding)  # accepted, never answered
            st.c["sessions_closed"] += 1
        except (SessionLost, DaemonUnavailable, TimeoutError) as e:
            # the daemon restarted (or is restarting): frames in flight are lost by the protocol's rules
            st.c["session_lost_events"] += 1
            st.c["lost_in_restart"] += len(outstanding)
            st.errors[type(e).__name__] += 1
            event(f"{type(e).__name__} with {len(outstanding)} frames in flight")
            if client is not None:
                try:
                    client.close()
                except Exception:  # noqa: BLE001
                    pass
            client = None
            time.sleep(0.5)
        st.flush(force=True)
    while raw.poll(200):  # replies to the last bad messages
        raw.recv_multipart()
        st.c["bad_answered"] += 1
    if client is not None:
        client.close()
    raw.close(0)
    ctx.term()
    st.flush(force=True)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--endpoint", required=True)
    p.add_argument("--index", type=int, required=True)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--stats", required=True)
    p.add_argument("--fps", type=float, default=30.0)
    a = p.parse_args()
    run(a.endpoint, a.index, a.seed, a.stats, a.fps)


if __name__ == "__main__":
    main()
