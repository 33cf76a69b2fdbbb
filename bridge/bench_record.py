"""`neurender bench record`: what recording a session costs a frame. One daemon (--backend, default
passthrough; e.g. generator:base --device cuda for the cost beside a real model) in its own
process, a temporary recordings root unless --dir), one client in this process sending the demo's
channels plus `final` over shared memory (the engine writes straight into the slot), blocking round
trips. Recording off and on alternate in blocks of --block frames, --repeats times per resolution, so
a machine whose load drifts (shared CPU) shifts both arms alike. Frames are paced at --fps (a game). Reports round-trip p50/p99/mean per
arm, the frames the recorder kept and skipped (a disk slower than the game), and MB/s written."""
from __future__ import annotations

import argparse

# the demo's channels in their storage dtypes, plus the game's own frame (what a recording session sends)
RECORD_CHANNELS = {"color": "float16", "depth": "float32", "normals": "float16", "motion": "float32",
                   "albedo": "float16", "material_id": "uint16", "disocclusion": "uint8", "final": "float16"}


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--sizes", type=int, nargs="+", default=[256, 512], help="square frame sizes (default 256 512)")
    p.add_argument("--block", type=int, default=100, help="frames per block (default 100)")
    p.add_argument("--repeats", type=int, default=3, help="off/on block pairs per size (default 3)")
    p.add_argument("--warmup", type=int, default=20, help="untimed frames at the start of each block")
    p.add_argument("--fps", type=float, default=60.0,
                   help="the game's frame rate: one frame per 1/fps s (default 60; 0 = as fast as replies come)")
    p.add_argument("--dir", default=None, help="recordings root (default: a temporary directory, removed after)")
    p.add_argument("--json", metavar="PATH", default=None, help="write the numbers here")
    p.add_argument("--backend", default="passthrough", help="the daemon's backend (default passthrough)")
    p.add_argument("--device", default=None, help="torch device of a model backend")


def _block(client, size: int, record: str | None, frames: int, warmup: int, fps: float) -> dict:
    import time

    import numpy as np

    s = client.open_session(size, size, RECORD_CHANNELS, output_format="rgb8", record=record)
    rng = np.random.default_rng(0)
    for k in range(s.slots):  # content is irrelevant to the cost; fill every slot once
        for name, v in s.input_views(k).items():
            v[...] = rng.integers(0, 2, v.shape).astype(v.dtype)
    ms, waits = [], []
    next_tick = time.perf_counter()
    for t in range(warmup + frames):
        if fps:  # a game sends a frame per tick, not as fast as it can
            next_tick += 1.0 / fps
            time.sleep(max(0.0, next_tick - time.perf_counter()))
        slot = s.acquire_slot()
        s.input_views(slot)["color"][0, 0, 0] = t % 100 / 100  # the engine wrote a new frame
        t0 = time.perf_counter()
        seq = s.submit(slot=slot, constants={"dt": [1 / 60]}, action=np.zeros(9, np.float32))
        while True:
            r = s.poll(timeout=10.0)
            if r is None:
                raise TimeoutError("no reply")
            if r.seq == seq:
                break
        if t >= warmup:
            ms.append((time.perf_counter() - t0) * 1e3)
            waits.append(r.timings.get("record_wait_ms", 0.0))
    err = s.record_error
    s.close()
    return {"ms": ms, "waits": waits, "record_error": str(err) if err else None}


def run(args: argparse.Namespace) -> int:
    import json
    import os
    import shutil
    import tempfile
    import time
    from pathlib import Path

    import numpy as np

    from bridge.client import Client
    from bridge.daemon import spawn_daemon

    root = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="nr-bench-record-"))
    results = {"backend": args.backend, "device": args.device, "machine_cpus": os.cpu_count(), "loadavg_before": os.getloadavg()[0], "channels": RECORD_CHANNELS,
               "block": args.block, "repeats": args.repeats, "fps": args.fps, "sizes": {}}
    try:
        with spawn_daemon(args.backend, runtime_dir="private", device=args.device, timeout=None,
                          extra_args=["--recordings-dir", str(root)]) as d:
            with Client(d.endpoint, timeout=30) as c:
                for size in args.sizes:
                    arms = {"off": [], "on": []}
                    waits = []
                    errors = []
                    name = f"bench{size}"
                    t0 = time.perf_counter()
                    for _ in range(args.repeats):
                        for arm in ("off", "on"):
                            b = _block(c, size, name if arm == "on" else None, args.block, args.warmup, args.fps)
                            arms[arm] += b["ms"]
                            waits += b["waits"] if arm == "on" else []
                            errors += [b["record_error"]] if b["record_error"] else []
                    wall = time.perf_counter() - t0
                    index = _wait_index(root / name, args.repeats)
                    kept = index["meta"]["frames"] if index else 0
                    skipped = sum(q.get("skipped", 0) for q in index["meta"]["per_sequence"]) if index else None
                    on_bytes = sum(f.stat().st_size for f in (root / name).rglob("*.npy"))
                    results["sizes"][str(size)] = {
                        **{f"{arm}_{k}": v for arm, ms in arms.items() for k, v in _stats(ms).items()},
                        "on_record_wait_p50_ms": float(np.percentile(waits, 50)),
                        "on_record_wait_p99_ms": float(np.percentile(waits, 99)),
                        "p50_on_minus_off_ms": float(np.percentile(arms["on"], 50) - np.percentile(arms["off"], 50)),
                        "frames_sent_recording": args.repeats * (args.block + args.warmup),
                        "frames_recorded": kept, "frames_skipped": skipped, "record_errors": errors,
                        "bytes_per_frame": on_bytes // max(kept, 1),
                        "recorded_mb_per_s_of_wall": on_bytes / 2**20 / wall}
                    r = results["sizes"][str(size)]
                    print(f"{size}x{size}: round trip p50 off {r['off_p50_ms']:.2f} ms / on {r['on_p50_ms']:.2f} ms, "
                          f"p99 off {r['off_p99_ms']:.2f} / on {r['on_p99_ms']:.2f} ms (waiting for the copy: p50 "
                          f"{r['on_record_wait_p50_ms']:.2f} p99 {r['on_record_wait_p99_ms']:.2f} ms); recorded {kept} of "
                          f"{r['frames_sent_recording']} frames ({skipped} skipped), "
                          f"{r['bytes_per_frame'] / 2**20:.2f} MiB/frame", flush=True)
    finally:
        if not args.dir:
            shutil.rmtree(root, ignore_errors=True)
    results["loadavg_after"] = os.getloadavg()[0]
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


def _stats(ms: list[float]) -> dict:
    import numpy as np

    a = np.asarray(ms)
    return {"p50_ms": float(np.percentile(a, 50)), "p99_ms": float(np.percentile(a, 99)), "mean_ms": float(a.mean()),
            "frames": int(a.size)}


def _wait_index(d, sequences: int, timeout: float = 60.0):
    import json
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            index = json.loads((d / "index.json").read_text())
            if len(index["sequences"]) >= sequences:
                return index
        except (FileNotFoundError, json.JSONDecodeError):
            pass
        time.sleep(0.1)
    return None
