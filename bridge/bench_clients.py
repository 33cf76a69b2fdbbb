"""`neurender bench bridge --clients K --fps F`: K concurrent clients, each in its own process with its
own session, each pacing frames at F per second like a game loop, against one daemon per
configuration; configurations side by side in one run (`--workers 0 1 2`: the render thread, 1 and 2
worker processes; `--gpus 1 2`: 1 and 2 GPUs; both may be given).

A client at every tick (t0 + i/F) submits a frame if one of its slots is free, else counts a *missed*
tick (the daemon has not answered in time, the game would show a stale image); frames the daemon
replaced by newer ones are *dropped*. A session holds the rate when it missed and dropped nothing and
finished at least 95% of its ticks. Pixels are written into every slot once (an engine reading back
straight into shared memory), so what is measured is the daemon, the workers and the renderer.
"""
from __future__ import annotations

import time

HOLD_FRACTION = 0.95  # a session holds the rate when it rendered at least this share of its ticks


def client_main(endpoint: str, width: int, height: int, channels: dict, fps: float, seconds: float,
                transport: str, start_at: float, results) -> None:
    """One paced client (a spawned process); puts its numbers on `results`."""
    import numpy as np

    from bridge.client import BridgeError, Client
    out = {"error": None}
    try:
        with Client(endpoint, timeout=30) as c:
            s = c.open_session(width, height, channels, transport=transport)
            rng = np.random.default_rng(s.slots)
            pixels = {n: rng.random(v.shape, np.float32).astype(v.dtype) for n, v in s.input_views(0).items()}
            if transport == "shm":
                for k in range(s.slots):
                    for n, v in s.input_views(k).items():
                        v[...] = pixels[n]
            out["worker"] = s.info["renderer"].get("worker")
            lat, render, done, dropped, missed, failed, ticks = [], [], 0, 0, 0, 0, 0
            period = 1.0 / fps
            time.sleep(max(0.0, start_at - time.time()))  # every client starts on the same tick
            t0 = time.perf_counter()
            end = t0 + seconds

            def collect(until: float) -> None:
                nonlocal done, dropped, failed
                while True:
                    try:
                        r = s.poll(timeout=max(0.0, until - time.perf_counter()))
                    except BridgeError:
                        failed += 1
                        continue
                    if r is None:
                        return
                    done += 1
                    dropped += len(r.dropped)
                    lat.append(r.timings["roundtrip_ms"])
                    render.append(r.timings.get("render_ms", 0.0))

            while True:
                tick = t0 + ticks * period
                if tick >= end:
                    break
                collect(tick)
                ticks += 1
                if s.free_slots():
                    if transport == "shm":
                        s.submit(slot=s.acquire_slot(), constants={"dt": [period]})
                    else:
                        s.submit(pixels, constants={"dt": [period]})
                else:
                    missed += 1
            deadline = time.perf_counter() + 10
            while s.in_flight() and time.perf_counter() < deadline:
                collect(time.perf_counter() + 0.05)
            elapsed = max(seconds, time.perf_counter() - t0)  # frames answered while draining count too
            a = np.asarray(lat) if lat else np.zeros(1)
            out.update(ticks=ticks, done=done, dropped=dropped, missed=missed, failed=failed,
                       achieved_fps=done / elapsed, latency_p50_ms=float(np.percentile(a, 50)),
                       latency_p99_ms=float(np.percentile(a, 99)),
                       render_p50_ms=float(np.percentile(np.asarray(render or [0.0]), 50)))
            s.close()
    except Exception as e:  # noqa: BLE001 - reported in the table, not a hang of the parent
        out["error"] = f"{type(e).__name__}: {e}"
    results.put(out)


def run_config(label: str, serve_args: list[str], args, channels: dict, env: dict | None = None) -> dict:
    """One daemon with `serve_args`, K paced clients against it; per-session and summed numbers."""
    import multiprocessing as mp

    import numpy as np

    from bridge.daemon import spawn_daemon
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    extra = list(serve_args) + ["--log-level", "WARNING"]  # the session log lines would bury the table
    if args.device:
        extra += ["--device", args.device]
    with spawn_daemon(args.backend, runtime_dir="private", steps=args.steps, extra_args=extra, env=env,
                      timeout=600) as d:
        start_at = time.time() + 2.0 + 0.3 * args.clients  # clients import and connect first
        procs = [ctx.Process(target=client_main, args=(d.endpoint, args.width, args.height, channels, args.fps,
                                                       args.seconds, args.transport, start_at, q), daemon=True)
                 for _ in range(args.clients)]
        for p in procs:
            p.start()
        sessions = [q.get(timeout=args.seconds + 120) for _ in procs]
        for p in procs:
            p.join(10)
        renderer = d.info["renderer"]
    ok = [s for s in sessions if s["error"] is None]
    fps = [s["achieved_fps"] for s in ok]
    held = [s["error"] is None and s["dropped"] == 0 and s["missed"] == 0 and s["done"] >= HOLD_FRACTION * s["ticks"]
            for s in sessions]
    return {"label": label, "serve_args": serve_args, "renderer": renderer, "sessions": sessions,
            "sessions_holding_rate": int(sum(held)), "total_fps": float(sum(fps)),
            "min_session_fps": float(min(fps)) if fps else 0.0, "dropped": int(sum(s["dropped"] for s in ok)),
            "missed": int(sum(s["missed"] for s in ok)), "errors": [s["error"] for s in sessions if s["error"]],
            "latency_p99_ms_max": float(max((s["latency_p99_ms"] for s in ok), default=float("nan"))),
            "latency_p50_ms_median": float(np.median([s["latency_p50_ms"] for s in ok])) if ok else float("nan")}


def run(args) -> int:
    import json
    import os
    import platform
    from datetime import datetime, timezone
    from pathlib import Path

    from tqdm import tqdm

    from bridge.bench_cmd import BENCH_CHANNELS
    from bridge.worker_pool import MULTI_GPU_ENV
    configs: list[tuple[str, list[str]]] = []
    for n in args.workers or []:
        configs.append(("render thread" if n == 0 else f"{n} worker process{'es' if n > 1 else ''}",
                        [] if n == 0 else ["--workers", str(n)]))
    for g in args.gpus or []:
        configs.append((f"gpus {g}", ["--gpus", g]))
    if not configs:
        configs = [("render thread", [])]
    env = {**os.environ, **MULTI_GPU_ENV}
    load_before = os.getloadavg()
    results = []
    for label, serve_args in tqdm(configs, desc=f"{args.clients} clients at {args.fps:g} fps", unit="config"):
        results.append(run_config(label, serve_args, args, BENCH_CHANNELS, env))
    base = results[0]["total_fps"] or float("nan")
    print(f"\n{args.clients} clients x {args.fps:g} fps target, {args.seconds:g} s, {args.width}x{args.height} "
          f"{args.transport}, backend {args.backend}, {os.cpu_count()} CPUs, load average {load_before[0]:.2f} "
          f"before / {os.getloadavg()[0]:.2f} after")
    print(f"{'config':<22}{'held':>6}{'total fps':>11}{'min fps':>9}{'dropped':>9}{'missed':>8}{'p50 ms':>8}"
          f"{'p99 ms':>8}{'vs first':>9}")
    for r in results:
        print(f"{r['label']:<22}{r['sessions_holding_rate']:>3}/{args.clients:<2}{r['total_fps']:>11.1f}"
              f"{r['min_session_fps']:>9.1f}{r['dropped']:>9}{r['missed']:>8}{r['latency_p50_ms_median']:>8.2f}"
              f"{r['latency_p99_ms_max']:>8.2f}{r['total_fps'] / base:>8.2f}x")
        for e in r["errors"]:
            print(f"  error: {e}")
    if args.json:
        out = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "host": platform.node(),
               "cpus": os.cpu_count(), "loadavg_1min_before_after": [load_before[0], os.getloadavg()[0]],
               "clients": args.clients, "fps_target": args.fps, "seconds": args.seconds, "width": args.width,
               "height": args.height, "transport": args.transport, "backend": args.backend, "device": args.device,
               "hold_rule": f"no dropped, no missed tick, >= {HOLD_FRACTION:.0%} of ticks rendered",
               "configs": results,
               "total_fps_ratio_vs_first": {r["label"]: r["total_fps"] / base for r in results}}
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(out, indent=2))
        _plot(results, args, path.with_suffix(".png"))
        print(f"wrote {path} and {path.with_suffix('.png')}")
    return 0 if all(not r["errors"] for r in results) else 1


def _plot(results: list[dict], args, path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4.5))
    width = 0.8 / max(1, args.clients)
    for k in range(args.clients):
        xs = [i + (k - (args.clients - 1) / 2) * width for i in range(len(results))]
        a.bar(xs, [r["sessions"][k].get("achieved_fps", 0.0) for r in results], width,
              label=f"client {k}" if args.clients <= 8 else None)
    a.axhline(args.fps, color="k", ls="--", lw=1, label=f"target {args.fps:g}")
    a.set_xticks(range(len(results)), [r["label"] for r in results], rotation=20, ha="right")
    a.set_ylabel("achieved frames/s per session")
    a.legend(fontsize=7)
    x = range(len(results))
    b.bar([i - 0.2 for i in x], [r["dropped"] for r in results], 0.4, label="dropped (daemon)")
    b.bar([i + 0.2 for i in x], [r["missed"] for r in results], 0.4, label="missed ticks (no free slot)")
    b.set_xticks(list(x), [r["label"] for r in results], rotation=20, ha="right")
    b.set_ylabel("frames, all sessions")
    b.legend(fontsize=7)
    fig.suptitle(f"{args.clients} clients at {args.fps:g} fps, {args.width}x{args.height}, {args.backend}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
