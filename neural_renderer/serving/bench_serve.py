"""Round trip through `neurender serve` with the generator backend: a client on the same machine
sends real engine frames (shared memory, the default local transport) and waits for each result.

    neurender bench serve --model base --device cuda --steps 1 2 --json out.json

Per step count: the blocking round trip (submit -> result in hand) p50/p99 as the client sees it, and
the daemon's own render time for the frame (generator step + conversions), from the frame timings.
"""
from __future__ import annotations

import json


def bench(model: str, device: str, steps_list: list[int], size: int, frames: int, warmup: int,
          dtype: str = "float32") -> dict:
    import numpy as np

    from bridge.client import Client
    from bridge.daemon import spawn_daemon
    from neural_renderer.data.world import render_sequence
    from bridge.styles import STYLES

    channels = {"color": "float16", "depth": "float16", "normals": "float16", "albedo": "float16", "material_id": "uint8"}
    f = next(iter(render_sequence(1_000_000, 1, size, size)))
    pixels = {c: f.engine[c].astype(dt) for c, dt in channels.items()}
    rows = []
    for steps in steps_list:
        with spawn_daemon(f"generator:{model}", runtime_dir="private", device=device, steps=steps, timeout=180,
                          extra_args=["--dtype", dtype]) as d:
            with Client(d.endpoint) as c:
                s = c.open_session(size, size, channels, output_format="rgb8", prompt=STYLES["sunny"], steps=steps)
                for k in range(s.slots):  # the engine's readback lands in every slot once
                    for name, view in s.input_views(k).items():
                        view[...] = pixels[name]
                rt, render = [], []
                for i in range(warmup + frames):
                    r = s.render(slot=s.acquire_slot(), timeout=60)
                    if i >= warmup:
                        rt.append(r.timings["roundtrip_ms"])
                        render.append(r.timings.get("render_ms", float("nan")))
                img = np.asarray(r.image)
        rt_a, rd_a = np.array(rt), np.array(render)
        rows.append({"steps": steps, "dtype": dtype, "roundtrip_p50_ms": float(np.percentile(rt_a, 50)),
                     "roundtrip_p99_ms": float(np.percentile(rt_a, 99)), "roundtrip_mean_ms": float(rt_a.mean()),
                     "render_p50_ms": float(np.nanpercentile(rd_a, 50)), "render_p99_ms": float(np.nanpercentile(rd_a, 99)),
                     "frames": frames, "output_mean": float(img.mean())})
        print(json.dumps(rows[-1]))
    return {"model": model, "device": device, "size": size, "channels": channels, "transport": "shm", "rows": rows}
