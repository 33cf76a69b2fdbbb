"""`neurender bench sessions`: how many games at 60 frames/s one GPU serves, through one real daemon.

    neurender bench sessions --model base --counts 1,4,8,12,16 --seconds 15 --long 8:60 --out sessions.json

One `neurender serve` with the generator backend (the model, device, dtype and serving arm as `bench serve`
starts it) serves every count in turn: for a count N, N client processes (neural_renderer.serving.paced_session)
each open a shared-memory session at the same frame size and submit frames on a fixed schedule at `fps`,
pipelined, for `warmup` + `seconds`; their sessions close before the next count opens its own. The daemon's
render thread batches the frames of these sessions that wait together, holding a frame up to `batch_wait_ms`
for partners due at the same tick (bridge/render_thread.py): the replies' `batch` timing says how many frames
each forward carried, reported per count.

A count *holds* when every one of its sessions holds (`holds`): answered frames/s >= 99% of the target, no frame
dropped by the daemon, none failed, no tick missed for want of a free slot, and latency p99 <= `p99_ms`. The
largest count that held is reported; `long` (e.g. 8 sessions for 60 s) is one more count run for longer after
the sweep, skipped when the sweep already ran that count for at least that long.
"""
from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

HOLD_FPS_FRACTION = 0.99


def holds(session: dict, fps: float, p99_ms: float) -> list[str]:
    """Why a session did not hold the target; [] when it held."""
    if session.get("error"):
        return [f"error: {session['error']}"]
    why = []
    if session["answered_fps"] < HOLD_FPS_FRACTION * fps:
        why.append(f"{session['answered_fps']:.2f} frames/s < {HOLD_FPS_FRACTION:.0%} of {fps:g}")
    for what in ("dropped", "failed", "missed", "unaccounted"):
        if session[what]:
            why.append(f"{session[what]} {what}")
    if not session["in_order"]:
        why.append("answered out of order")
    if not session["latency_p99_ms"] <= p99_ms:  # NaN (nothing answered) fails too
        why.append(f"p99 {session['latency_p99_ms']:.2f} ms > {p99_ms:g} ms")
    return why


def summarise(sessions: list[dict], count: int, seconds: float, fps: float, p99_ms: float) -> dict:
    """One count's row: per-session figures and verdicts, the worst and summed figures, the batching seen."""
    import numpy as np

    sessions = sorted(sessions, key=lambda s: s["index"])
    reasons = {}
    for s in sessions:
        s["held"] = not (why := holds(s, fps, p99_ms))
        if why:
            reasons[str(s["index"])] = why
    ok = [s for s in sessions if not s.get("error")]
    hist: dict[str, int] = {}
    for s in ok:
        for k, v in s["batch_histogram"].items():
            hist[k] = hist.get(k, 0) + v
    frames = sum(hist.values())
    forwards = sum(v / int(k) for k, v in hist.items())  # a batch of k answers k frames in one call
    total = lambda key: int(sum(s[key] for s in ok))  # noqa: E731
    return {
        "sessions": count, "seconds": seconds, "held": len(ok) == count and all(s["held"] for s in sessions),
        "sessions_held": sum(bool(s.get("held")) for s in sessions), "reasons": reasons,
        "fps_min": min((s["answered_fps"] for s in ok), default=0.0),
        "fps_total": float(sum(s["answered_fps"] for s in ok)),
        "latency_p50_ms_median": float(np.median([s["latency_p50_ms"] for s in ok])) if ok else float("nan"),
        "latency_p99_ms_max": max((s["latency_p99_ms"] for s in ok), default=float("nan")),
        "submitted": total("submitted"), "answered": total("answered"), "dropped": total("dropped"),
        "failed": total("failed"), "missed": total("missed"), "late": total("late"),
        "render_p50_ms_median": float(np.median([s["render_p50_ms"] for s in ok])) if ok else float("nan"),
        "batch_histogram": dict(sorted(hist.items(), key=lambda kv: int(kv[0]))),
        "batch_mean": frames / forwards if forwards else 0.0,  # frames per render call, over all calls
        "batch_wait_max_ms": max((s.get("batch_wait_max_ms", 0.0) for s in ok), default=0.0),
        "client_lag_max_ms": max((s["client_lag_max_ms"] for s in ok), default=0.0),
        "errors": [s["error"] for s in sessions if s.get("error")],
        "per_session": sessions,
    }


def run_count(endpoint: str, count: int, plan: dict, prompts: list[str], spread: bool, progress=None) -> list[dict]:
    """`count` paced sessions against the daemon at `endpoint`, all starting on one tick (or, `spread`, evenly
    spaced over one frame period); each session's figures (paced_session.session_figures)."""
    import multiprocessing as mp

    from neural_renderer.serving.paced_session import play

    ctx = mp.get_context("spawn")  # a fresh interpreter per session: no fork of the parent's threads or sockets
    ready, results, go, start_at = ctx.Queue(), ctx.Queue(), ctx.Event(), ctx.Value("d", 0.0)
    period = 1.0 / plan["fps"]
    procs = [ctx.Process(target=play, daemon=True, args=(
        endpoint, {**plan, "prompt": prompts[k % len(prompts)], "offset": k * period / count if spread else 0.0},
        k, ready, go, start_at, results)) for k in range(count)]
    for p in procs:
        p.start()
    try:
        for _ in procs:  # every session is open (a cold session may take a while on the daemon) before the clock starts
            ready.get(timeout=600)
        start_at.value = time.time() + 0.5
        go.set()
        out, began = [], time.monotonic()
        while len(out) < count:
            try:
                out.append(results.get(timeout=0.5))
            except Exception:  # noqa: BLE001 - queue.Empty: nothing yet
                if time.monotonic() - began > plan["warmup"] + plan["seconds"] + 180:
                    raise TimeoutError(f"{count - len(out)} of {count} sessions never reported") from None
            if progress is not None:
                progress(min(time.monotonic() - began, plan["warmup"] + plan["seconds"]))
    finally:
        for p in procs:
            p.join(10)
            if p.is_alive():
                p.kill()
    return out


def bench(model: str, device: str, size: tuple[int, int], fps: float, counts: list[int], seconds: float,
          long: tuple[int, float] | None, warmup: float, steps: int, dtype: str, kernels: str, p99_ms: float,
          spread: bool = False, batch_wait_ms: float | None = None, log=print) -> dict:
    import torch
    from tqdm import tqdm

    from bridge.daemon import spawn_daemon
    from bridge.styles import STYLES
    from neural_renderer.serving.bench_serve import checkpoint_for

    H, W = size
    runs = [(n, seconds) for n in counts]
    if long is not None and not any(n == long[0] and s >= long[1] for n, s in runs):
        runs.append(long)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = checkpoint_for(model, Path(tmp))
        with spawn_daemon(f"generator:{ckpt}", runtime_dir="private", device=device, steps=steps, timeout=600,
                          extra_args=["--dtype", dtype, "--kernels", kernels, "--log-level", "WARNING",
                                      *(["--batch-wait-ms", str(batch_wait_ms)] if batch_wait_ms is not None else [])]) as d:
            renderer = d.info["renderer"]
            log(f"daemon: {renderer.get('model')} on {device}, {renderer.get('dtype')}, arm {renderer.get('kernels')}, "
                f"{steps} steps; {W}x{H} sessions at {fps:g} frames/s, p99 limit {p99_ms:g} ms")
            for n, secs in runs:
                plan = {"width": W, "height": H, "fps": fps, "warmup": warmup, "seconds": secs, "steps": steps}
                with tqdm(total=round(warmup + secs), desc=f"{n} sessions, {secs:g} s", unit="s", leave=False) as bar:
                    def progress(t, bar=bar):
                        bar.update(int(t) - bar.n)
                    sessions = run_count(d.endpoint, n, plan, list(STYLES.values()), spread, progress)
                row = summarise(sessions, n, secs, fps, p99_ms)
                rows.append(row)
                log(f"{n:>3} sessions: {'held' if row['held'] else 'NOT held'}: min {row['fps_min']:.2f} frames/s, "
                    f"p99 {row['latency_p99_ms_max']:.2f} ms, dropped {row['dropped']}, missed {row['missed']}, "
                    f"frames per forward {row['batch_mean']:.2f}")
    sweep = rows[:len(counts)]
    held = [r["sessions"] for r in sweep if r["held"]]
    issue = next((r for r in rows if long is not None and r["sessions"] == long[0] and r["seconds"] >= long[1]), None)
    return {"model": model, "checkpoint": ckpt.name, "device": device,
            "device_name": torch.cuda.get_device_name() if device.startswith("cuda") else "cpu",
            "renderer": renderer, "steps": steps, "dtype": dtype, "kernels_requested": kernels, "transport": "shm",
            "width": W, "height": H, "fps": fps, "warmup_s": warmup, "p99_ms": p99_ms,
            "phase": "spread" if spread else "aligned", "batch_wait_ms": batch_wait_ms,  # None: serve's default
            "hold_rule": f"every session: answered frames/s >= {HOLD_FPS_FRACTION:.0%} of {fps:g}, 0 dropped, 0 failed, "
                         f"0 missed ticks, latency p99 <= {p99_ms:g} ms (submit -> result in hand)",
            "late_rule": f"answered more than one frame period ({1e3 / fps:.2f} ms) after submit",
            "counts": sweep, "largest_held": max(held) if held else 0,
            "long": issue, "long_held": None if issue is None else issue["held"],
            "date": time.strftime("%Y-%m-%d")}


def write(res: dict, path: str) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(res, indent=1))
