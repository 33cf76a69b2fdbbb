"""Dataset generation throughput, measured side by side in one run:

    python -m neural_renderer.data.bench --resolution 128x128 --frames 48 --json benchmarks/results/dataset_cpu.json

Arms: the engine pass alone (no reference look: the floor of what writing a dataset costs), one
style, every style; each with 1 worker, and every style with --workers as well. Each arm writes a
real dataset through make_dataset into a temporary directory and reads its frames/s from the index.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path


def main(argv=None) -> int:
    from demos.styles import STYLES

    from .dataset_cmd import parse_resolution
    from .make import make_dataset
    from .reader import SequenceDataset

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--resolution", type=parse_resolution, default=(128, 128))
    p.add_argument("--sequences", type=int, default=2)
    p.add_argument("--frames", type=int, default=48)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    w, h = args.resolution
    first = next(iter(STYLES))
    arms = [("engine pass only", {}, 1), (f"1 style ({first})", {first: STYLES[first]}, 1),
            (f"all {len(STYLES)} styles", dict(STYLES), 1),
            (f"all {len(STYLES)} styles, {args.workers} workers", dict(STYLES), args.workers)]
    rows = []
    load_before = os.getloadavg()  # the CPU machine is shared: say how busy it was
    with tempfile.TemporaryDirectory() as tmp:
        for k, (name, styles, workers) in enumerate(arms):
            t0 = time.perf_counter()
            index = make_dataset(Path(tmp) / f"arm{k}", sequences=args.sequences, frames=args.frames, width=w,
                                 height=h, styles=styles, workers=workers, report=False, progress=True)
            wall = time.perf_counter() - t0
            ds = SequenceDataset(Path(tmp) / f"arm{k}")
            nbytes = sum(f.stat().st_size for f in ds.root.glob("shard_*/*.npy"))
            rows.append({"arm": name, "styles": len(styles), "workers": workers, "frames": index["meta"]["frames"],
                         "frames_per_second": index["meta"]["frames_per_second"],
                         "wall_seconds_incl_setup": round(wall, 3), "bytes_per_frame": nbytes // ds.total_frames})
    base = rows[0]["frames_per_second"]
    print(f"\n{w}x{h}, {args.sequences} sequences x {args.frames} frames per arm")
    print(f"{'arm':36s} {'frames/s':>9s} {'vs engine only':>15s} {'bytes/frame':>12s}")
    for r in rows:
        r["ratio_vs_engine_only"] = round(r["frames_per_second"] / base, 4)
        print(f"{r['arm']:36s} {r['frames_per_second']:9.2f} {r['ratio_vs_engine_only']:14.3f}x {r['bytes_per_frame']:12d}")
    out = {"date": time.strftime("%Y-%m-%d"), "host": platform.node(), "machine": platform.machine(),
           "resolution": [w, h], "sequences": args.sequences, "frames": args.frames, "arms": rows,
           "cpu_count": os.cpu_count(), "loadavg_1_5_15_before": load_before, "loadavg_1_5_15_after": os.getloadavg(),
           "command": "python -m neural_renderer.data.bench " + " ".join(argv or __import__("sys").argv[1:])}
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
