"""One game's session for `neurender bench sessions`: a client process that submits engine frames on a fixed
schedule through shared memory, pipelined (it never waits for a frame's answer before submitting the next),
and accounts for every frame it submitted.

Each session runs in its own spawned process, not a thread: a Python client's receive loop holds the GIL, and
sixteen of them in one interpreter would queue behind each other, so the latency measured would be the
benchmark's own. A process per session is also what a game is: its own process beside the daemon.

The schedule: frame i is due at t0 + i / fps (t0 agreed by all sessions, plus the session's phase offset). At
its tick the session submits frame i if one of its slots is free, else the tick is *missed* (the game would
have had to stall). Between ticks it waits on the socket, so a result is in hand the moment it arrives. The
session renders one frame before the common start, and the first `warmup` seconds of ticks run the same way
as the rest and are not counted (first frames, graph captures of each batch size).

What a measured frame can become, from the replies of the daemon:
- answered: its frame_done came (latency = submit -> result in hand, the client's roundtrip_ms);
- dropped: a newer frame of the session replaced it while it waited (newest frame wins, bridge/render_thread.py);
- failed: an error reply;
- late: answered more than one frame period (1 / fps) after it was submitted, i.e. after the next frame was due
  (the game shows it a frame late). A late frame is answered too: late is a subset of answered.
"""
from __future__ import annotations

import time


def play(endpoint: str, plan: dict, index: int, ready, go, start_at, results) -> None:
    """The client process's whole life: open a session, say ready, wait for the common start, run the schedule,
    put its figures (session_figures) on `results`. `plan`: width, height, fps, warmup, seconds, steps, prompt,
    offset (seconds after the common start this session's ticks begin)."""
    out = {"index": index, "error": None}
    try:
        out.update(_play(endpoint, plan, index, ready, go, start_at))
    except Exception as e:  # noqa: BLE001 - reported in the table, not a hang of the parent
        out["error"] = f"{type(e).__name__}: {e}"
        ready.put(index)  # a session that failed before the start must not hold the others back
    results.put(out)


def _play(endpoint, plan, index, ready, go, start_at) -> dict:
    from bridge.client import BridgeError, Client
    from neural_renderer.serving.bench_serve import CHANNELS, fill_slots

    fps = plan["fps"]
    period = 1.0 / fps
    warm, timed = round(plan["warmup"] * fps), round(plan["seconds"] * fps)
    with Client(endpoint, timeout=120) as c:
        s = c.open_session(plan["width"], plan["height"], CHANNELS, output_format="rgb8", prompt=plan["prompt"],
                           steps=plan["steps"])
        fill_slots(s, seed=index)
        # the session's first frame before the clock starts (a game's loading screen): its one-time costs (buffers,
        # a whole-frame graph capture on a GPU) land in no count's figures
        s.render(slot=s.acquire_slot(), constants={"dt": [period]}, timeout=600)
        ready.put(index)
        if not go.wait(600):
            raise TimeoutError("the benchmark never started")
        t0 = time.perf_counter() + (start_at.value - time.time()) + plan["offset"]
        tick_of: dict[int, int] = {}  # seq -> tick index
        lag, missed, answered, dropped, failed = [], [], [], [], []

        def collect(until: float) -> None:
            while True:
                try:
                    r = s.poll(timeout=max(0.0, until - time.perf_counter()))
                except BridgeError as e:
                    failed.append(e.seq)
                    continue
                if r is None:
                    return
                t = r.timings
                answered.append((r.seq, t["roundtrip_ms"], t.get("render_ms", 0.0), t.get("queue_ms", 0.0),
                                 int(t.get("batch", 1)), t.get("batch_wait_ms", 0.0)))
                dropped.extend(r.dropped)

        for i in range(warm + timed):
            tick = t0 + i * period
            collect(tick)
            lag.append((time.perf_counter() - tick) * 1e3)
            if s.free_slots():
                tick_of[s.submit(slot=s.acquire_slot(), constants={"dt": [period]})] = i
            else:
                missed.append(i)
        drain = time.perf_counter() + 30  # what is still in flight gets its answer (or its drop) first
        while s.in_flight() and time.perf_counter() < drain:
            collect(time.perf_counter() + 0.05)
        unanswered = s.close(timeout=30)  # frames the daemon still held: dropped at close
        info = s.info["renderer"]
    figs = session_figures(tick_of, answered, dropped + unanswered, failed, missed, lag[warm:], warm, timed, fps)
    figs.update(kernels=info.get("kernels"), model=info.get("model"))
    return figs


def session_figures(tick_of: dict[int, int], answered: list[tuple], dropped: list[int], failed: list[int],
                    missed: list[int], lag_ms: list[float], warm: int, timed: int, fps: float) -> dict:
    """The measured ticks' numbers (ticks >= warm), from what the session saw. answered: (seq, latency ms, render
    ms, queue ms, batch, batch wait ms) in arrival order; dropped, failed: seqs; missed: tick indices; lag_ms: how late the
    client itself was at each measured tick."""
    import numpy as np

    measured = {q for q, i in tick_of.items() if i >= warm}
    got = [a for a in answered if a[0] in measured]
    lat = np.asarray([a[1] for a in got] or [np.nan], np.float64)
    seqs = [a[0] for a in got]
    drops, fails = sorted(set(dropped) & measured), sorted(set(failed) & measured)
    batches: dict[int, int] = {}
    for a in got:
        batches[a[4]] = batches.get(a[4], 0) + 1
    period_ms = 1e3 / fps
    n = len(got)
    return {
        "ticks": timed, "submitted": len(measured), "answered": n, "dropped": len(drops), "failed": len(fails),
        "missed": sum(1 for i in missed if i >= warm),
        "unaccounted": len(measured - set(seqs) - set(drops) - set(fails)),  # neither answered, dropped nor failed
        "answered_twice": n - len(set(seqs)),
        "in_order": all(a < b for a, b in zip(seqs, seqs[1:])),
        "late": int(np.sum(lat > period_ms)) if n else 0,
        "answered_fps": n * fps / timed if timed else 0.0,  # answered frames over the schedule's own duration
        "latency_p50_ms": float(np.percentile(lat, 50)), "latency_p99_ms": float(np.percentile(lat, 99)),
        "latency_max_ms": float(np.max(lat)),
        "render_p50_ms": float(np.median([a[2] for a in got])) if n else float("nan"),
        "queue_p50_ms": float(np.median([a[3] for a in got])) if n else float("nan"),
        # held by the daemon for batch partners (part of queue): how much the coalescing window cost
        "batch_wait_p50_ms": float(np.median([a[5] for a in got])) if n else float("nan"),
        "batch_wait_max_ms": float(max(a[5] for a in got)) if n else float("nan"),
        "batch_histogram": {str(k): v for k, v in sorted(batches.items())},  # frames answered per batch size
        "client_lag_p99_ms": float(np.percentile(lag_ms, 99)) if lag_ms else 0.0,
        "client_lag_max_ms": float(max(lag_ms)) if lag_ms else 0.0,
    }
