"""`neurender demo`: the game scene driving the rendering daemon, in a window or headless.

With no display (no $DISPLAY / $WAYLAND_DISPLAY) it runs headless automatically: a scripted player,
120 frames, written to ./demo_out. The daemon is the one already serving locally, or one the demo
starts with the same default backend as `neurender serve`.
"""
from __future__ import annotations

import argparse

HEADLESS_FRAMES = 120
HEADLESS_OUT = "demo_out"


def _resolution(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"resolution must look like 256x256, got {text!r}") from None
    if not (16 <= w <= 4096 and 16 <= h <= 4096):
        raise argparse.ArgumentTypeError(f"resolution {w}x{h} out of range 16..4096")
    return w, h


def configure(p: argparse.ArgumentParser) -> None:
    from demos.player import SCRIPTS  # light: numpy only
    from demos.seeds import EVAL_SEED_BASE
    from demos.styles import LOOKS

    p.add_argument("--headless", action="store_true", help="no window: scripted player, writes an mp4 and a contact sheet")
    p.add_argument("--frames", type=int, default=None, help=f"frames to run (headless default {HEADLESS_FRAMES}; window: until closed)")
    p.add_argument("--out", default=None, help=f"output folder of a headless run (default ./{HEADLESS_OUT})")
    p.add_argument("--backend", default=None,
                   help="backend of a daemon the demo starts (default: the default of `neurender serve`)")
    p.add_argument("--steps", type=int, default=None, help="denoising steps (backend default if absent)")
    p.add_argument("--device", default=None, help="torch device of a daemon the demo starts")
    p.add_argument("--resolution", type=_resolution, default=(256, 256), help="frame size WxH sent to the daemon")
    p.add_argument("--style", choices=sorted(LOOKS), default="sunny", help="initial style (its prompt)")
    p.add_argument("--seed", type=int, default=EVAL_SEED_BASE, help="world seed (default: the first evaluation seed)")
    p.add_argument("--script", choices=SCRIPTS, default="mixed", help="scripted player of a headless run")
    p.add_argument("--fps", type=float, default=30.0, help="simulation rate of a headless run")
    p.add_argument("--ssaa", type=int, default=2, help="supersampling of the reference look")
    p.add_argument("--style-every", type=int, default=0, metavar="N",
                   help="headless: switch to the next style every N frames (0: keep --style)")
    p.add_argument("--pipeline", action="store_true",
                   help="submit each frame without waiting for its result; show the newest result (lags a frame "
                        "or more, keeps the game's frame rate when the daemon is slower)")
    p.add_argument("--no-reference", action="store_true", help="headless: skip the reference-look panel")
    p.add_argument("--endpoint", default=None, help="connect to this daemon endpoint instead of the local one")
    p.add_argument("--runtime-dir", default=None, help="runtime dir of the local daemon (see `neurender serve`)")
    p.add_argument("--view", choices=("neural", "engine pass", "reference look", "side by side"), default="neural",
                   help="window: the view shown first (Tab cycles)")
    p.add_argument("--screenshot", default=None, help="window: save what the window shows when --frames is reached")
    p.add_argument("--record", default=None, metavar="NAME",
                   help="record the scene through the daemon as look NAME (the --style reference is the game's own "
                        "frame); no window, no video: see demos/record_script.py")
    p.add_argument("--sequences", type=int, default=1, help="--record: sessions to record (one world seed each)")
    p.add_argument("--recordings-dir", default=None, help="--record: recordings root of a daemon the demo starts")
    p.add_argument("--window-size", type=_resolution, default=(1280, 720), help="window size WxH")


def resolve_mode(args: argparse.Namespace, has_display: bool) -> argparse.Namespace:
    """Fills the headless defaults; with no display the demo is headless whatever was asked."""
    args.headless = bool(args.headless or not has_display or getattr(args, "record", None))
    if args.headless and args.frames is None:
        args.frames = HEADLESS_FRAMES
    if args.out is None:
        args.out = HEADLESS_OUT
    if args.frames is not None and args.frames < 1:
        raise ValueError("--frames must be at least 1")
    return args


def run(args: argparse.Namespace) -> int:
    import sys

    from demos.gl import has_display

    try:
        args = resolve_mode(args, has_display())
    except ValueError as e:
        print(f"neurender demo: {e}", file=sys.stderr)
        return 2
    from bridge.client import BridgeError, DaemonUnavailable

    log = lambda msg: print(f"neurender demo: {msg}", file=sys.stderr)  # noqa: E731
    try:
        if args.record:
            from demos.record_script import run_record

            return run_record(args, log=log)
        if args.headless:
            from demos.headless import run_headless

            return run_headless(args, log=log)
        from demos.window import run_window

        return run_window(args, log=log)
    except (BridgeError, DaemonUnavailable) as e:  # the daemon refused us or is not there
        log(f"error: {e}")
        return 1
    except RuntimeError as e:  # e.g. the daemon we started did not come up (bad --backend)
        log(f"error: {e}")
        return 1
