"""`neurender demo --headless`: a scripted player drives the daemon with no display; writes an mp4 of
engine pass | neural output | reference look, a contact-sheet PNG, latency.png (round trip per frame and
its histogram) and stats.json (latency, frames/s). `--style-every N` switches to the next style (its
prompt) every N frames, to show live restyling."""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np


def _even(img: np.ndarray) -> np.ndarray:
    h, w = img.shape[:2]
    return np.pad(img, ((0, h % 2), (0, w % 2), (0, 0)))


def find_ffmpeg() -> str | None:
    """The ffmpeg imageio would use, or None (e.g. a GPU machine without it): checked before the first
    frame, not discovered when the video is finalised."""
    try:
        import imageio_ffmpeg
        return imageio_ffmpeg.get_ffmpeg_exe()
    except Exception:  # noqa: BLE001 - not installed, no binary, unsupported platform
        import shutil
        return shutil.which("ffmpeg")


class PngFrames:
    """The video writer's stand-in without ffmpeg: one PNG per frame in a folder."""

    def __init__(self, folder: Path):
        import imageio.v2 as imageio
        self.folder, self.n, self._imageio = folder, 0, imageio
        folder.mkdir(parents=True, exist_ok=True)

    def append_data(self, img: np.ndarray) -> None:
        self._imageio.imwrite(self.folder / f"{self.n:05d}.png", img)
        self.n += 1

    def __enter__(self) -> "PngFrames":
        return self

    def __exit__(self, *exc) -> None:
        pass


def video_writer(out: Path, fps: float, log):
    """(writer, what it writes): an mp4 through ffmpeg, else PNG frames (said once, up front)."""
    if find_ffmpeg() is None:
        log(f"ffmpeg not found: writing PNG frames to {out / 'frames'} instead of demo.mp4")
        return PngFrames(out / "frames"), out / "frames"
    import imageio.v2 as imageio
    video = out / "demo.mp4"
    return imageio.get_writer(video, fps=fps, codec="libx264", quality=8, macro_block_size=2,
                              ffmpeg_log_level="error"), video


def plot_latency(path: Path, roundtrip_ms: list[float], frame_ms: list[float], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(10, 3.5))
    ax[0].plot(roundtrip_ms, lw=1, label="bridge round trip")
    ax[0].plot(frame_ms, lw=1, label="whole frame (engine + daemon + reference + encode)")
    ax[0].set_xlabel("frame")
    ax[0].set_ylabel("ms")
    ax[0].set_yscale("log")
    ax[0].legend(fontsize=8)
    rt = np.asarray(roundtrip_ms, np.float64)
    ax[1].hist(rt[np.isfinite(rt)], bins=40)
    for q, ls in ((50, "-"), (99, "--")):
        v = np.nanpercentile(roundtrip_ms, q)
        ax[1].axvline(v, color="k", ls=ls, label=f"p{q} {v:.2f} ms")
    ax[1].set_xlabel("round trip (ms)")
    ax[1].legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def run_headless(args, log=print) -> int:
    import imageio.v2 as imageio
    from tqdm import tqdm

    from demos.daemon_link import DaemonLink
    from demos.gl import create_context
    from demos.live import LiveScene
    from demos.player import ScriptedController
    from demos.present import contact_sheet, side_by_side, to_srgb8
    from demos.styles import STYLES

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    width, height = args.resolution
    ctx = create_context(headless=True)
    link = scene = None
    try:
        link = DaemonLink(args.backend, args.steps, args.runtime_dir, args.endpoint, args.device, log=log)
        scene = LiveScene(ctx, link.client, args.seed, width, height, args.style, steps=args.steps, ssaa=args.ssaa,
                          pipelined=args.pipeline)
        ctrl = ScriptedController(args.script, args.seed, fps=args.fps)
        scene.player.teleport(*ctrl.spawn(scene.world))
        n_sheet = min(6, args.frames)
        sheet_ids = sorted(set(np.linspace(0, args.frames - 1, n_sheet).round().astype(int).tolist()))
        sheet = {"engine pass": [], "neural": [], "reference": []}
        dt = 1.0 / args.fps
        styles = list(STYLES)
        roundtrips, frame_ms = [], []
        t0 = time.perf_counter()
        writer, video = video_writer(out, args.fps, log)
        with writer:
            for i in tqdm(range(args.frames), desc="demo", unit="frame"):
                tf = time.perf_counter()
                if args.style_every and i > 0 and i % args.style_every == 0:  # restyle live: the next prompt
                    scene.set_style(styles[(styles.index(scene.style) + 1) % len(styles)])
                action, cut = ctrl(i, scene.player)
                if cut:
                    scene.player.teleport(*ctrl.spawn(scene.world))
                    scene.reset(teleport=False)
                    action = np.zeros_like(action)
                f = scene.step(action, dt, with_reference=not args.no_reference)
                panels = [to_srgb8(f.engine_color), to_srgb8(f.neural)]
                if f.reference is not None:
                    panels.append(to_srgb8(f.reference))
                labels = ["engine pass", f"neural ({scene.renderer_info.get('backend', '?')})", f"reference: {scene.style}"]
                writer.append_data(_even(side_by_side(panels, labels[: len(panels)])))
                if i in sheet_ids:
                    for name, p in zip(sheet, panels):
                        sheet[name].append(p)
                roundtrips.append(f.roundtrip_ms)
                frame_ms.append((time.perf_counter() - tf) * 1e3)
        wall = time.perf_counter() - t0
        sheet = {k: v for k, v in sheet.items() if v}
        imageio.imwrite(out / "contact_sheet.png", contact_sheet(sheet, sheet_ids))
        stats = {"frames": args.frames, "pipelined": bool(args.pipeline), "resolution": [width, height], "style": args.style, "seed": args.seed,
                 "script": args.script, "wall_s": wall, "renderer": scene.renderer_info,
                 **scene.stats.summary()}
        (out / "stats.json").write_text(json.dumps(stats, indent=2))
        plot_latency(out / "latency.png", roundtrips, frame_ms,
                     f"neurender demo: {args.frames} frames {width}x{height}, backend {scene.renderer_info.get('backend')}")
        log(f"wrote {video}, contact_sheet.png, latency.png, stats.json in {out}: {args.frames} frames in {wall:.1f} s, "
            f"round trip p50 {stats['roundtrip_p50_ms']:.1f} ms p99 {stats['roundtrip_p99_ms']:.1f} ms")
        return 0
    finally:
        if scene is not None:
            scene.close()
        if link is not None:
            link.close()
        ctx.release()
