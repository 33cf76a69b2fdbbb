"""From per-frame numbers to the figures of the report: means, drift, responsiveness, latency.

Definitions (docs in the report header say the same):
- warping error: metrics.warping_error between consecutive outputs; undefined (NaN) on the first
  frame of a run, on frames the engine flags as a reset (a cut has no motion to follow) and on
  prompt switches (the picture is meant to change).
- drift: per window of `window` frames of the longest run, mean PSNR and mean warping error; the
  headline is the last full window showing the first window's style, minus (PSNR) or over
  (warping error) the first window.
- responsiveness: for each event (a prompt switch, or a reset after frame 0) the segment runs to the
  next event; the settled level is the median PSNR of the segment's second half, and the figure is
  the number of frames after the event until PSNR first reaches settled - RECOVER_DB. The settled
  level is reported beside it: a renderer that ignores a prompt "recovers" at once to a low level.
"""
from __future__ import annotations

import math

import numpy as np

RECOVER_DB = 1.0


def finite_mean(x) -> float:
    a = np.asarray(x, np.float64)
    if a.size and np.all(np.isposinf(a)):
        return math.inf
    a = a[np.isfinite(a)]
    return float(a.mean()) if a.size else math.nan


def windows(values, window: int) -> list[float]:
    a = np.asarray(values, np.float64)
    return [finite_mean(a[i:i + window]) for i in range(0, len(a) - window + 1, window)]


def drift(psnr, warp, styles, window: int) -> dict:
    """Windows of the run; the headline compares the first window with the LAST window that shows
    the same single style throughout, so a prompt switch is not mistaken for drift."""
    p, w = windows(psnr, window), windows(warp, window)
    same = [i for i in range(len(p)) if len(set(styles[i * window:(i + 1) * window])) == 1
            and styles[i * window] == styles[0]]
    last = same[-1] if same else len(p) - 1
    if len(p) < 2 or last == 0:
        return {"window": window, "windows": len(p), "psnr_windows": p, "warp_windows": w,
                "last_window": None, "psnr_last_minus_first": math.nan, "warp_last_over_first": math.nan}
    ratio = w[last] / w[0] if w[0] and np.isfinite(w[0]) else (1.0 if w[last] == w[0] == 0 else math.nan)
    dp = p[last] - p[0] if np.isfinite(p[0]) and np.isfinite(p[last]) else (0.0 if p[0] == p[last] else math.nan)
    return {"window": window, "windows": len(p), "psnr_windows": p, "warp_windows": w, "last_window": last,
            "psnr_last_minus_first": dp, "warp_last_over_first": ratio}


def recovery(psnr, event: int, end: int) -> dict:
    """Frames after `event` until PSNR reaches the segment's settled level minus RECOVER_DB."""
    seg = np.asarray(psnr[event:end], np.float64)
    settled = float(np.median(seg[len(seg) // 2:]))
    target = settled - RECOVER_DB
    hit = np.nonzero(seg >= target)[0]
    frames = int(hit[0]) if hit.size else len(seg)
    return {"frame": event, "frames_to_recover": frames, "settled_psnr": settled}


def events(switches: list[int], resets: list[int], n: int) -> tuple[list[dict], list[dict]]:
    marks = sorted(set(switches) | set(resets) | {n})
    nxt = lambda t: next(m for m in marks if m > t)
    return ([{"frame": t, "end": nxt(t)} for t in switches if 0 < t < n],
            [{"frame": t, "end": nxt(t)} for t in resets if 0 < t < n])


def per_look(runs: list[dict]) -> dict:
    """PSNR, SSIM and warping error per look shown: an average over looks hides the ones a model loses."""
    out = {}
    styles = np.concatenate([r["styles"] for r in runs]) if runs else np.array([])
    for look in sorted(set(styles.tolist())):
        m = styles == look
        out[look] = {k: finite_mean(np.concatenate([r[k] for r in runs])[m]) for k in ("psnr", "ssim", "warp")}
        out[look]["frames"] = int(m.sum())
    return out


def latency(seconds: list[float]) -> dict:
    if not seconds:
        return {"p50_ms": math.nan, "p99_ms": math.nan, "mean_ms": math.nan, "fps": math.nan, "frames": 0}
    ms = np.asarray(seconds) * 1e3
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)),
            "mean_ms": float(ms.mean()), "fps": float(1e3 / ms.mean()) if ms.mean() > 0 else math.inf,
            "frames": int(ms.size)}


def summarize(runs: list[dict], drift_window: int, timed: bool) -> dict:
    """runs: one dict per sequence with per-frame lists psnr, ssim, warp, latency_s, and events."""
    psnr = np.concatenate([r["psnr"] for r in runs])
    longest = max(runs, key=lambda r: len(r["psnr"]))
    prompt_rec = [recovery(r["psnr"], e["frame"], e["end"]) for r in runs for e in r["switch_events"]]
    reset_rec = [recovery(r["psnr"], e["frame"], e["end"]) for r in runs for e in r["reset_events"]]
    agg = lambda rec, k, f: (float(f([x[k] for x in rec])) if rec else math.nan)
    out = {
        "frames": int(psnr.size),
        "nonfinite_frames": int(sum(r.get("nonfinite_frames", 0) for r in runs)),
        "psnr": finite_mean(psnr),
        "psnr_min": float(np.min(psnr)),
        "ssim": finite_mean(np.concatenate([r["ssim"] for r in runs])),
        "warp_error": finite_mean(np.concatenate([r["warp"] for r in runs])),
        "block_grid": max(finite_mean(np.concatenate([r.get(k, []) for r in runs])) for k in ("block_grid_8", "block_grid_16")),
        "looks": per_look(runs),
        "drift": drift(longest["psnr"], longest["warp"], longest["styles"], drift_window),
        "prompt_switch": {"events": prompt_rec, "mean_frames": agg(prompt_rec, "frames_to_recover", np.mean),
                          "max_frames": agg(prompt_rec, "frames_to_recover", np.max),
                          "settled_psnr": agg(prompt_rec, "settled_psnr", finite_mean)},
        "reset": {"events": reset_rec, "mean_frames": agg(reset_rec, "frames_to_recover", np.mean),
                  "max_frames": agg(reset_rec, "frames_to_recover", np.max),
                  "settled_psnr": agg(reset_rec, "settled_psnr", finite_mean)},
    }
    if timed:
        out["latency"] = latency([s for r in runs for s in r["latency_s"][r["warmup"]:]])
        served = [ms for r in runs for ms in r.get("daemon_render_ms", [])[r["warmup"]:]]
        if served:  # through a daemon: how much of the round trip is the renderer itself
            out["latency"]["daemon_render_p50_ms"] = float(np.percentile(served, 50))
            out["latency"]["daemon_render_p99_ms"] = float(np.percentile(served, 99))
    return out
