"""`neurender demo --headless`: a scripted player drives the daemon with no display; writes an mp4 of
engine pass | neural output | reference look, a contact-sheet PNG and stats.json (latency, frames/s)."""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np


def _even(img: np.ndarray) -> np.ndarray:
    h, w = img.shape[:2]
    return np.pad(img, ((0, h % 2), (0, w % 2), (0, 0)))


def run_headless(args, log=print) -> int:
    import imageio.v2 as imageio
    from tqdm import tqdm

    from demos.daemon_link import DaemonLink
    from demos.gl import create_context
    from demos.live import LiveScene
    from demos.player import ScriptedController
    from demos.present import contact_sheet, side_by_side, to_srgb8

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    width, height = args.resolution
    ctx = create_context(headless=True)
    link = scene = None
    try:
        link = DaemonLink(args.backend, args.steps, args.runtime_dir, args.endpoint, args.device, log=log)
        scene = LiveScene(ctx, link.client, args.seed, width, height, args.style, steps=args.steps, ssaa=args.ssaa)
        ctrl = ScriptedController(args.script, args.seed, fps=args.fps)
        scene.player.teleport(*ctrl.spawn(scene.world))
        n_sheet = min(6, args.frames)
        sheet_ids = sorted(set(np.linspace(0, args.frames - 1, n_sheet).round().astype(int).tolist()))
        sheet = {"engine pass": [], "neural": [], "reference": []}
        video = out / "demo.mp4"
        dt = 1.0 / args.fps
        t0 = time.perf_counter()
        with imageio.get_writer(video, fps=args.fps, codec="libx264", quality=8, macro_block_size=2,
                                ffmpeg_log_level="error") as writer:
            for i in tqdm(range(args.frames), desc="demo", unit="frame"):
                action, cut = ctrl(i, scene.player)
                if cut:
                    scene.player.teleport(*ctrl.spawn(scene.world))
                    scene.reset(teleport=False)
                    action = np.zeros_like(action)
                f = scene.step(action, dt, with_reference=not args.no_reference)
                panels = [to_srgb8(f.engine_color), to_srgb8(f.neural)]
                if f.reference is not None:
                    panels.append(to_srgb8(f.reference))
                labels = ["engine pass", f"neural ({scene.renderer_info.get('backend', '?')})", f"reference: {args.style}"]
                writer.append_data(_even(side_by_side(panels, labels[: len(panels)])))
                if i in sheet_ids:
                    for name, p in zip(sheet, panels):
                        sheet[name].append(p)
        wall = time.perf_counter() - t0
        sheet = {k: v for k, v in sheet.items() if v}
        imageio.imwrite(out / "contact_sheet.png", contact_sheet(sheet, sheet_ids))
        stats = {"frames": args.frames, "resolution": [width, height], "style": args.style, "seed": args.seed,
                 "script": args.script, "wall_s": wall, "renderer": scene.renderer_info,
                 **scene.stats.summary()}
        (out / "stats.json").write_text(json.dumps(stats, indent=2))
        log(f"wrote {video}, {out / 'contact_sheet.png'}, {out / 'stats.json'}: {args.frames} frames in {wall:.1f} s, "
            f"round trip p50 {stats['roundtrip_p50_ms']:.1f} ms p99 {stats['roundtrip_p99_ms']:.1f} ms")
        return 0
    finally:
        if scene is not None:
            scene.close()
        if link is not None:
            link.close()
        ctx.release()
