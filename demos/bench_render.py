"""Throughput of the engine pass and the reference look on whatever GL device this machine has.

    neurender bench world --json benchmarks/results/world_cpu.json [--sizes 128 512] [--frames 30]

Engine pass: render + synchronous readback of all seven channels; render + PBO readback collected one
frame later (side by side with the synchronous one, the ratio is printed); render alone. Reference look:
render + readback per style at the default supersampling, and all styles of each frame through
`render_styles` (prepass + AO once) vs the per-style figures (ratio printed). Arms are interleaved
over `--repeats` rounds and medians reported (the CPU machines are shared and noisy). Frames follow a scripted walk of one seed.
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


def bench_size(ctx, world, size: int, frames: int, styles, ssaa: int, repeats: int = 3) -> dict:
    """Every arm runs `repeats` times, the arms interleaved round by round (a burst of load on a shared
    machine then hits all arms alike); each figure is the median over the rounds."""
    from demos.engine_pass import EngineRenderer
    from demos.reference import ReferenceRenderer

    cams = _cameras(world, frames + 1, 1.0)
    models = [world.models(i / 30) for i in range(frames + 1)]
    eng = EngineRenderer(ctx, world, size, size)
    n_ref = max(3, frames // 3)

    def engine_arm(mode: str) -> float:
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

    ref_renderer = ReferenceRenderer(ctx, world, size, size, styles[0], ssaa=ssaa) if styles else None

    def style_arm(style: str) -> float:
        ref_renderer.set_style(style)
        ref_renderer.render(cams[0], models[0], 0.0)
        ref_renderer.read()
        t0 = time.perf_counter()
        for i in range(1, n_ref + 1):
            ref_renderer.render(cams[i], models[i], i / 30)
            ref_renderer.read()
        return n_ref / (time.perf_counter() - t0)

    def shared_arm() -> float:
        ref_renderer.render_styles(cams[0], models[0], 0.0, styles)
        t0 = time.perf_counter()
        for i in range(1, n_ref + 1):
            ref_renderer.render_styles(cams[i], models[i], i / 30, styles)
        return n_ref / (time.perf_counter() - t0)

    rounds: dict[str, list[float]] = {}
    for _ in range(repeats):
        for mode in ("sync", "pbo", "render"):
            rounds.setdefault(f"engine_{mode}", []).append(engine_arm(mode))
        for style in styles:
            rounds.setdefault(f"style_{style}", []).append(style_arm(style))
        if len(styles) > 1:
            rounds.setdefault("shared", []).append(shared_arm())
    eng.release()
    if ref_renderer is not None:
        ref_renderer.release()
    med = {k: float(np.median(v)) for k, v in rounds.items()}
    out = {"repeats": repeats, "engine_sync_fps": med["engine_sync"], "engine_pbo_fps": med["engine_pbo"],
           "engine_render_only_fps": med["engine_render"],
           "engine_sync_fps_rounds": rounds["engine_sync"], "engine_render_only_fps_rounds": rounds["engine_render"]}
    out["pbo_over_sync"] = out["engine_pbo_fps"] / out["engine_sync_fps"]
    ref = {s: med[f"style_{s}"] for s in styles}
    out["reference_fps"] = ref
    out["reference_fps_mean"] = float(np.mean(list(ref.values()))) if ref else 0.0
    if len(styles) > 1:  # every style of each frame: prepass + AO shared vs rendered again per style
        out["all_styles_shared_fps"] = med["shared"]
        out["all_styles_separate_fps"] = 1.0 / sum(1.0 / v for v in ref.values())
        out["shared_over_separate"] = out["all_styles_shared_fps"] / out["all_styles_separate_fps"]
    return out


def configure(ap: argparse.ArgumentParser) -> None:
    from bridge.styles import STYLES

    ap.add_argument("--json", required=True, help="where to write the results")
    ap.add_argument("--sizes", type=int, nargs="+", default=[128, 512])
    ap.add_argument("--frames", type=int, default=30)
    ap.add_argument("--styles", nargs="+", default=list(STYLES), choices=list(STYLES))
    ap.add_argument("--ssaa", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=3, help="rounds of every arm (interleaved); medians are reported")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    configure(ap)
    return run(ap.parse_args(argv))


def run(args: argparse.Namespace) -> int:
    """`neurender bench world`."""
    from tqdm import tqdm

    from demos.gl import create_context
    from demos.world import World

    ctx = create_context(headless=True)
    world = World(args.seed)
    result = {"gl_renderer": ctx.info["GL_RENDERER"], "gl_version": ctx.info["GL_VERSION"],
              "cpu_count": os.cpu_count(), "machine": platform.node(), "python": platform.python_version(),
              "frames": args.frames, "ssaa": args.ssaa, "seed": args.seed,
              "triangles": int(len(world.mesh()) // 3), "sizes": {}}
    for size in tqdm(args.sizes, desc="bench_render", unit="size"):
        r = bench_size(ctx, world, size, args.frames, args.styles, args.ssaa, args.repeats)
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
