"""`neurender bench bridge`: round trips of G-buffer frames through the daemon (passthrough backend) over
shared memory, inline ipc and inline tcp, side by side with a raw pyzmq round trip of the same bytes
in the same run.

Arms (every one a DEALER client in this process, the server in another process):
  shm            engine writes into the slot itself (zero-copy readback), the wire carries headers only
  shm+copy       render(pixels) copies the frame into the slot each time (an engine that cannot read back
                 straight into shared memory)
  inline-ipc     pixels as extra ZeroMQ frames over ipc://, image back inline
  inline-tcp     same over tcp://127.0.0.1 (plain TCP, loopback)
  inline-tcp+curve  same with CURVE (what a remote client pays for encryption; a second daemon)
  raw-ipc/hdr, raw-tcp/hdr      raw pyzmq: a header-sized message there and back (floor of the shm arm)
  raw-ipc/inline, raw-tcp/inline raw pyzmq: exactly the inline arm's bytes there (header + channels) and
                 a reply of the inline arm's size back (floor of the inline arms)
Latency is the blocking round trip (submit, wait). Frames/s is the pipelined rate of one session
(submit whenever a slot is free, count frame_done replies; dropped frames do not count).

With `--clients K` it measures something else: K concurrent paced clients (bridge/bench_clients.py)
against each daemon configuration of `--workers` / `--gpus`, side by side (the multi-GPU comparison).
"""
from __future__ import annotations

import argparse

from bridge.bench_clients import BENCH_CHANNELS


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--width", type=int, default=512, help="frame width (default 512)")
    p.add_argument("--height", type=int, default=512, help="frame height (default 512)")
    p.add_argument("--frames", type=int, default=300, help="timed round trips per arm")
    p.add_argument("--warmup", type=int, default=30, help="untimed round trips before each arm")
    p.add_argument("--output-format", default="rgb8", help="rgb8 | rgba8 | rgb16f (default rgb8)")
    p.add_argument("--json", metavar="PATH", default=None, help="write the numbers here (and a PNG beside it)")
    g = p.add_argument_group("several paced clients (bridge/bench_clients.py)")
    g.add_argument("--clients", type=int, default=0, metavar="K",
                   help="K concurrent client processes, one session each, pacing at --fps (default 0: the "
                        "round-trip arms above)")
    g.add_argument("--fps", type=float, default=60.0, help="each client's target frames/s (default 60)")
    g.add_argument("--seconds", type=float, default=10.0, help="paced run length per configuration")
    g.add_argument("--workers", type=int, nargs="+", default=None, metavar="N",
                   help="daemon configurations: N render worker processes each (0 = the render thread)")
    g.add_argument("--gpus", nargs="+", default=None, metavar="SPEC",
                   help="daemon configurations: serve --gpus SPEC each (e.g. --gpus 1 2)")
    g.add_argument("--backend", default="passthrough", help="serve --backend (default passthrough)")
    g.add_argument("--device", default=None, help="serve --device")
    g.add_argument("--steps", type=int, default=None, help="serve --steps")
    g.add_argument("--transport", choices=("shm", "inline"), default="shm")


def _echo_server(endpoint: str, reply_bytes: int, ready) -> None:
    """Raw pyzmq peer: answers every message with a header-sized frame plus `reply_bytes` of payload."""
    import zmq
    ctx = zmq.Context()
    s = ctx.socket(zmq.ROUTER)
    s.setsockopt(zmq.LINGER, 0)
    s.bind(endpoint)
    ready.put(s.getsockopt_string(zmq.LAST_ENDPOINT))
    import numpy as np
    payload = np.zeros(reply_bytes, np.uint8)
    header = b"x" * 120
    while True:
        frames = s.recv_multipart(copy=False)
        if frames[1].bytes == b"stop":
            break
        s.send_multipart([frames[0], header] + ([payload] if reply_bytes else []), copy=False)
    s.close(0)
    ctx.term()


def _stats(ms: list[float]) -> dict:
    import numpy as np
    a = np.asarray(ms)
    return {"p50_ms": float(np.percentile(a, 50)), "p99_ms": float(np.percentile(a, 99)),
            "mean_ms": float(a.mean()), "n": int(a.size)}


def _raw_arm(endpoint: str, frames: list, reply_bytes: int, n: int, warmup: int) -> dict:
    import multiprocessing as mp
    import time

    import zmq
    mctx = mp.get_context("spawn")
    q = mctx.Queue()
    proc = mctx.Process(target=_echo_server, args=(endpoint, reply_bytes, q), daemon=True)
    proc.start()
    ep = q.get(timeout=30)
    ctx = zmq.Context()
    s = ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.connect(ep)
    lat = []
    try:
        for i in range(warmup + n):
            t0 = time.perf_counter()
            s.send_multipart(frames, copy=False)
            s.recv_multipart(copy=False)
            if i >= warmup:
                lat.append((time.perf_counter() - t0) * 1e3)
        # pipelined: keep 2 messages in flight, like a session with 3 slots
        t0 = time.perf_counter()
        inflight = 0
        done = 0
        while done < n:
            while inflight < 2:
                s.send_multipart(frames, copy=False)
                inflight += 1
            s.recv_multipart(copy=False)
            inflight -= 1
            done += 1
        fps = n / (time.perf_counter() - t0)
        for _ in range(inflight):
            s.recv_multipart(copy=False)
        s.send_multipart([b"stop"])
    finally:
        s.close(0)
        ctx.term()
        proc.join(5)
        if proc.is_alive():
            proc.kill()
    return {**_stats(lat), "fps": fps}


def _bridge_arm(client, transport: str, args, pixels: dict, copy_in: bool, progress) -> dict:
    import time

    import numpy as np
    s = client.open_session(args.width, args.height, BENCH_CHANNELS, output_format=args.output_format,
                            transport=transport)
    try:
        if transport == "shm" and not copy_in:  # the engine's readback lands in every slot once
            for k in range(s.slots):
                for name, view in s.input_views(k).items():
                    view[...] = pixels[name]
        lat, render_ms, overhead = [], [], []
        for i in range(args.warmup + args.frames):
            if transport == "shm" and not copy_in:
                r = s.render(slot=s.acquire_slot())
            else:
                r = s.render(pixels)
            if i >= args.warmup:
                lat.append(r.timings["roundtrip_ms"])
                render_ms.append(r.timings["render_ms"])
                overhead.append(r.timings["roundtrip_ms"] - r.timings["render_ms"])
            progress.update(1)
        expected = np.clip(pixels["color"].astype(np.float32), 0, 1)
        got = r.image[..., :3].astype(np.float32) / (255.0 if r.image.dtype == np.uint8 else 1.0)
        max_err = float(np.abs(got - expected).max())
        # pipelined frames/s: submit whenever a slot is free
        done = dropped = 0
        t0 = time.perf_counter()
        while done < args.frames:
            while s.free_slots():  # submit without waiting
                if transport == "shm" and not copy_in:
                    s.submit(slot=s.acquire_slot())
                else:
                    s.submit(pixels)
            r = s.poll(timeout=10.0)
            done += 1
            dropped += len(r.dropped)
            progress.update(1)
        fps = done / (time.perf_counter() - t0)
        while s.in_flight():
            if s.poll(timeout=10.0) is None:
                break
        return {**_stats(lat), "fps": fps, "dropped_while_pipelined": dropped,
                "render_p50_ms": _stats(render_ms)["p50_ms"],
                "overhead_p50_ms": _stats(overhead)["p50_ms"], "overhead_p99_ms": _stats(overhead)["p99_ms"],
                "max_abs_error_vs_color": max_err}
    finally:
        s.close()


def run(args: argparse.Namespace) -> int:
    import json
    import os
    import platform
    import tempfile
    from datetime import datetime, timezone
    from pathlib import Path

    import numpy as np
    from tqdm import tqdm

    from bridge import keys
    from bridge import protocol as P
    from bridge.client import Client
    from bridge.daemon import spawn_daemon
    from bridge.layout import SlotLayout

    if args.clients:
        from bridge.bench_clients import run as run_clients

        return run_clients(args)
    load_before = os.getloadavg()  # the machine may be shared: the tails (p99) follow its load
    rng = np.random.default_rng(0)
    H, W = args.height, args.width
    layout = SlotLayout.build(W, H, BENCH_CHANNELS, args.output_format, 1)
    pixels = {c.name: rng.random((H, W, c.components), np.float32).astype(c.dtype) for c in layout.channels}
    in_bytes = sum(c.nbytes for c in layout.channels)
    out_bytes = layout.output.nbytes
    results: dict[str, dict] = {}
    n_bridge = 5 * (args.warmup + 2 * args.frames)
    with tqdm(total=n_bridge, desc="bridge arms", unit="frame") as bar:
        with spawn_daemon("passthrough", runtime_dir="private", tcp="127.0.0.1:*", insecure=True) as d:
            with Client(d.endpoint) as c:
                results["shm"] = _bridge_arm(c, "shm", args, pixels, False, bar)
                results["shm+copy"] = _bridge_arm(c, "shm", args, pixels, True, bar)
                results["inline-ipc"] = _bridge_arm(c, "inline", args, pixels, False, bar)
            with Client(d.tcp_endpoint) as c:
                results["inline-tcp"] = _bridge_arm(c, "inline", args, pixels, False, bar)
        with tempfile.TemporaryDirectory(prefix="nr-keys-") as kd:
            keys.ensure_server_keys(Path(kd))
            _, secret = keys.add_client(Path(kd), "bench")
            with spawn_daemon("passthrough", runtime_dir="private", tcp="127.0.0.1:*", keys_dir=kd) as d, \
                    Client(d.tcp_endpoint, server_public_key=d.server_public_key, client_keys=secret) as c:
                results["inline-tcp+curve"] = _bridge_arm(c, "inline", args, pixels, False, bar)
    header = P.encode("frame", session="0" * 16, seq=1, slot=0, constants={"dt": [0.016]}, action=[0.0] * 9)
    inline_frames = [header] + [np.ascontiguousarray(pixels[c.name]) for c in layout.channels]
    rt = Path(os.environ.get("TMPDIR", "/tmp"))
    arms = [("raw-ipc/hdr", f"ipc://{rt}/nr-echo-{os.getpid()}.sock", [header], 0),
            ("raw-tcp/hdr", "tcp://127.0.0.1:*", [header], 0),
            ("raw-ipc/inline", f"ipc://{rt}/nr-echo2-{os.getpid()}.sock", inline_frames, out_bytes),
            ("raw-tcp/inline", "tcp://127.0.0.1:*", inline_frames, out_bytes)]
    for name, ep, frames, reply in tqdm(arms, desc="raw pyzmq arms"):
        results[name] = _raw_arm(ep, frames, reply, args.frames, args.warmup)
        if ep.startswith("ipc://"):
            Path(ep[6:]).unlink(missing_ok=True)

    ratios = {
        "inline-tcp_p50 / shm_p50": results["inline-tcp"]["p50_ms"] / results["shm"]["p50_ms"],
        "inline-ipc_p50 / shm_p50": results["inline-ipc"]["p50_ms"] / results["shm"]["p50_ms"],
        "shm_fps / inline-tcp_fps": results["shm"]["fps"] / results["inline-tcp"]["fps"],
        "shm_p50 / raw-ipc/hdr_p50": results["shm"]["p50_ms"] / results["raw-ipc/hdr"]["p50_ms"],
        "inline-ipc_p50 / raw-ipc/inline_p50": results["inline-ipc"]["p50_ms"] / results["raw-ipc/inline"]["p50_ms"],
        "inline-tcp_p50 / raw-tcp/inline_p50": results["inline-tcp"]["p50_ms"] / results["raw-tcp/inline"]["p50_ms"],
        "inline-tcp+curve_p50 / inline-tcp_p50": results["inline-tcp+curve"]["p50_ms"] / results["inline-tcp"]["p50_ms"],
    }
    goals = {
        "shm overhead p99 (roundtrip - render) < 1 ms": results["shm"]["overhead_p99_ms"] < 1.0,
        "shm >= 500 frames/s": results["shm"]["fps"] >= 500,
        "shm >= 3x faster than inline-tcp (p50)": ratios["inline-tcp_p50 / shm_p50"] >= 3.0,
    }
    print(f"\n{W}x{H}, {len(layout.channels)} channels / {sum(c.components for c in layout.channels)} components "
          f"float16 in ({in_bytes / 2**20:.2f} MiB), {args.output_format} out ({out_bytes / 2**20:.2f} MiB), "
          f"{args.frames} frames per arm, {os.cpu_count()} CPUs, load average {load_before[0]:.2f} before / "
          f"{os.getloadavg()[0]:.2f} after")
    print(f"{'arm':<18}{'p50 ms':>9}{'p99 ms':>9}{'frames/s':>10}{'render p50':>12}{'overhead p99':>14}")
    for name, r in results.items():
        extra = (f"{r['render_p50_ms']:>12.3f}{r['overhead_p99_ms']:>14.3f}" if "render_p50_ms" in r else "")
        print(f"{name:<18}{r['p50_ms']:>9.3f}{r['p99_ms']:>9.3f}{r['fps']:>10.0f}{extra}")
    for k, v in ratios.items():
        print(f"  {k:<40} {v:6.2f}x")
    for k, ok in goals.items():
        print(f"  goal {k:<48} {'met' if ok else 'NOT met'}")
    if args.json:
        out = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "host": platform.node(),
               "cpus": os.cpu_count(), "loadavg_1min_before_after": [load_before[0], os.getloadavg()[0]], "width": W, "height": H, "channels": BENCH_CHANNELS,
               "output_format": args.output_format, "frames": args.frames, "input_bytes": in_bytes,
               "output_bytes": out_bytes, "arms": results, "ratios": ratios, "goals_met": goals}
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(out, indent=2))
        _plot(results, path.with_suffix(".png"), f"{W}x{H} x12 float16, {os.cpu_count()} CPUs")
        print(f"wrote {path} and {path.with_suffix('.png')}")
    return 0


def _plot(results: dict, path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    names = list(results)
    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4.5))
    x = range(len(names))
    a.bar([i - 0.2 for i in x], [results[n]["p50_ms"] for n in names], 0.4, label="p50")
    a.bar([i + 0.2 for i in x], [results[n]["p99_ms"] for n in names], 0.4, label="p99")
    a.set_xticks(list(x), names, rotation=35, ha="right")
    a.set_ylabel("round trip, ms")
    a.legend()
    a.set_title("latency (blocking)")
    b.bar(list(x), [results[n]["fps"] for n in names])
    b.axhline(500, color="k", ls="--", lw=1, label="goal 500/s")
    b.set_xticks(list(x), names, rotation=35, ha="right")
    b.set_yscale("log")
    b.set_ylabel("frames/s (pipelined, one session; log)")
    b.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
