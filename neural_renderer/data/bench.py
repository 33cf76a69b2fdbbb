"""Dataset generation throughput, measured side by side in one run:

    neurender bench dataset --resolution 128x128 --frames 48 --json benchmarks/results/dataset_cpu.json

Arms: the engine pass alone (no reference look: the floor of what writing a dataset costs), one
style, every style; each with 1 worker, and every style with `workers` as well. Each arm writes a
real dataset through make_dataset into a temporary directory and reads its frames/s from the index.
"""
from __future__ import annotations

import os
import platform
import tempfile
import time
from pathlib import Path


def throughput(width: int = 128, height: int = 128, sequences: int = 2, frames: int = 48, workers: int = 2) -> dict:
    from bridge.styles import STYLES

    from .make import make_dataset
    from .reader import SequenceDataset

    first = next(iter(STYLES))
    arms = [("engine pass only", {}, 1), (f"1 style ({first})", {first: STYLES[first]}, 1),
            (f"all {len(STYLES)} styles", dict(STYLES), 1),
            (f"all {len(STYLES)} styles, {workers} workers", dict(STYLES), workers)]
    rows = []
    load_before = os.getloadavg()  # the CPU machine is shared: say how busy it was
    with tempfile.TemporaryDirectory() as tmp:
        for k, (name, styles, n_workers) in enumerate(arms):
            t0 = time.perf_counter()
            index = make_dataset(Path(tmp) / f"arm{k}", sequences=sequences, frames=frames, width=width,
                                 height=height, styles=styles, workers=n_workers, report=False, progress=True)
            wall = time.perf_counter() - t0
            ds = SequenceDataset(Path(tmp) / f"arm{k}")
            nbytes = sum(f.stat().st_size for f in ds.root.glob("shard_*/*.npy"))
            rows.append({"arm": name, "styles": len(styles), "workers": n_workers, "frames": index["meta"]["frames"],
                         "frames_per_second": index["meta"]["frames_per_second"],
                         "wall_seconds_incl_setup": round(wall, 3), "bytes_per_frame": nbytes // ds.total_frames})
    base = rows[0]["frames_per_second"]
    for r in rows:
        r["ratio_vs_engine_only"] = round(r["frames_per_second"] / base, 4)
    return {"date": time.strftime("%Y-%m-%d"), "host": platform.node(), "machine": platform.machine(),
            "resolution": [width, height], "sequences": sequences, "frames": frames, "arms": rows,
            "cpu_count": os.cpu_count(), "loadavg_1_5_15_before": load_before, "loadavg_1_5_15_after": os.getloadavg()}
