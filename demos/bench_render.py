"""Throughput of the engine pass and the reference look on whatever GL device this machine has.

    python -m demos.bench_render --json benchmarks/results/world_cpu.json [--sizes 128 512] [--frames 30]

Engine pass: render + synchronous readback of all seven channels; render + PBO readback collected one
frame later (side by side with the synchronous one, the ratio is printed); render alone. Reference look:
render + readback per style at the default supersampling, and all styles of each frame through one
renderer sharing the style-independent passes vs one renderer per style (ratio printed). Frames follow a scripted walk of one seed.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np


def _cameras(world, n: int, aspect: float):
    from demos.player import Player, ScriptedController

    c = ScriptedController("walk", 0)
    p = Player(world, *c.spawn(world))
    cams = []
    for i in range(n):
        a, _ = c(i, p)
        p.step(a, 1 / 30)
        cams.append(p.camera(aspect))
    return cams


def bench_size(ctx, world, size: int, frames: int, styles, ssaa: int) -> dict:
    from demos.engine_pass import EngineRenderer
    from demos.reference import ReferenceRenderer

    cams = _cameras(world, frames + 1, 1.0)
    models = [world.models(i / 30) for i in range(frames + 1)]
    eng = EngineRenderer(ctx, world, size, size)
    out = {}

    def run(mode: str) -> float:
        eng.render(cams[0], cams[0], models[0], models[0], True)
        eng.read()  # warm-up (shader compile, allocation)
        t0 = time.perf_counter()
        for i in range(1, frames + 1):
            eng.render(cams[i], cams[i - 1], models[i], models[i - 1], False)
            if mode == "sync":
                eng.read()
            elif mode == "pbo":
                if i > 1:
                    eng.collect()
                eng.read_async()
            else:
                ctx.finish()
        if mode == "pbo":
            eng.collect()
        return frames / (time.perf_counter() - t0)

    out["engine_sync_fps"] = run("sync")
    out["engine_pbo_fps"] = run("pbo")
    out["engine_render_only_fps"] = run("render")
    out["pbo_over_sync"] = out["engine_pbo_fps"] / out["engine_sync_fps"]
    eng.release()
    ref = {}
    n_ref = max(3, frames // 3)
    for s in styles:
        r = ReferenceRenderer(ctx, world, size, size, s, ssaa=ssaa)
        r.render(cams[0], models[0], 0.0)
        r.read()
        t0 = time.perf_counter()
        for i in range(1, n_ref + 1):
            r.render(cams[i], models[i], i / 30)
            r.read()
        ref[s] = n_ref / (time.perf_counter() - t0)
        r.release()
    out["reference_fps"] = ref
    out["reference_fps_mean"] = float(np.mean(list(ref.values()))) if ref else 0.0
    if len(styles) > 1:  # every style of each frame: one renderer sharing prepass + AO vs one renderer per style
        r = ReferenceRenderer(ctx, world, size, size, styles[0], ssaa=ssaa)
        r.render_styles(cams[0], models[0], 0.0, styles)
        t0 = time.perf_counter()
        for i in range(1, n_ref + 1):
            r.render_styles(cams[i], models[i], i / 30, styles)
        out["all_styles_shared_fps"] = n_ref / (time.perf_counter() - t0)
        out["all_styles_separate_fps"] = 1.0 / sum(1.0 / v for v in ref.values())
        out["shared_over_separate"] = out["all_styles_shared_fps"] / out["all_styles_separate_fps"]
        r.release()
    return out


def main(argv=None) -> int:
    from tqdm import tqdm

    from demos.gl import create_context
    from demos.styles import STYLES
    from demos.world import World

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", required=True, help="where to write the results")
    ap.add_argument("--sizes", type=int, nargs="+", default=[128, 512])
    ap.add_argument("--frames", type=int, default=30)
    ap.add_argument("--styles", nargs="+", default=list(STYLES), choices=list(STYLES))
    ap.add_argument("--ssaa", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    ctx = create_context(headless=True)
    world = World(args.seed)
    result = {"gl_renderer": ctx.info["GL_RENDERER"], "gl_version": ctx.info["GL_VERSION"],
              "cpu_count": os.cpu_count(), "machine": platform.node(), "python": platform.python_version(),
              "frames": args.frames, "ssaa": args.ssaa, "seed": args.seed,
              "triangles": int(len(world.mesh()) // 3), "sizes": {}}
    for size in tqdm(args.sizes, desc="bench_render", unit="size"):
        r = bench_size(ctx, world, size, args.frames, args.styles, args.ssaa)
        result["sizes"][str(size)] = r
        print(f"{size}x{size}: engine pass {r['engine_sync_fps']:.1f} frames/s (sync readback), "
              f"{r['engine_pbo_fps']:.1f} (PBO, x{r['pbo_over_sync']:.2f} vs sync), "
              f"{r['engine_render_only_fps']:.1f} (render only); reference look {r['reference_fps_mean']:.2f} frames/s "
              f"(mean of {len(r['reference_fps'])} styles, ssaa {args.ssaa})", flush=True)
        if "all_styles_shared_fps" in r:
            print(f"{size}x{size}: all {len(args.styles)} styles of a frame: {r['all_styles_shared_fps']:.2f} frames/s "
                  f"sharing prepass + AO vs {r['all_styles_separate_fps']:.2f} one renderer per style "
                  f"(x{r['shared_over_separate']:.2f})", flush=True)
    ctx.release()
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump(result, f, indent=2)
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
