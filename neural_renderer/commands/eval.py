"""`neurender eval`: quality, temporal stability, drift and latency of a renderer, with baselines."""
from __future__ import annotations

import argparse


def configure(p: argparse.ArgumentParser) -> None:
    from neural_renderer.eval.suites import SUITES

    p.add_argument("--renderer", required=True, help="renderer spec, as for `neurender serve --backend` "
                   "(passthrough, generator:PATH, ...)")
    p.add_argument("--suite", choices=list(SUITES), default="quick")
    p.add_argument("--json", dest="json_path", default=None, help="write every figure here")
    p.add_argument("--report", dest="report_dir", default=None, help="write README.md + PNG plots here")
    p.add_argument("--vs", default=None, help="a second renderer spec scored side by side (in-process)")
    p.add_argument("--endpoint", default=None,
                   help="score the renderer hosted by the running daemon at this endpoint (its backend "
                   "must be the one --renderer names) instead of loading it in-process")
    p.add_argument("--steps", type=int, default=None, help="denoising steps (renderer default if omitted)")
    p.add_argument("--device", default=None, help="torch device for in-process renderers")
    p.add_argument("--resolution", default=None, help="WxH overriding the suite's resolution")
    p.add_argument("--channels", nargs="+", default=None, help="engine channels declared to the renderer "
                   "(default all)")
    p.add_argument("--output-format", default="rgb16f", help="output format asked of the renderer")
    p.add_argument("--cache-dir", default=None, help="where rendered eval sequences are kept "
                   "(default $NEURENDER_EVAL_CACHE or ~/.cache/neurender/eval)")
    p.add_argument("--data", default=None, metavar="DIR",
                   help="score on the held-out sequences of this recording of your game, against its own frames, "
                        "instead of a suite (neural_renderer/eval/recorded.py)")
    p.add_argument("--no-progress", action="store_true")


def run(args) -> int:
    import sys

    from neural_renderer.eval.report import table
    from neural_renderer.eval.runner import run_eval

    from .dataset import parse_resolution

    try:
        resolution = parse_resolution(args.resolution) if args.resolution else None
    except argparse.ArgumentTypeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from bridge.backends import RendererError
    from bridge.client import BridgeError

    from neural_renderer.data import DatasetError

    try:
        if args.data:
            from neural_renderer.eval.recorded import run_eval_recording

            result = run_eval_recording(args.renderer, args.data, endpoint=args.endpoint, steps=args.steps,
                                        device=args.device, json_path=args.json_path,
                                        output_format=args.output_format, progress=not args.no_progress)
            print(table(result))
            return 0
        result = run_eval(args.renderer, args.suite, vs=args.vs, endpoint=args.endpoint, steps=args.steps,
                          device=args.device, cache_dir=args.cache_dir, json_path=args.json_path,
                          report_dir=args.report_dir, resolution=resolution, channels=args.channels,
                          output_format=args.output_format, progress=not args.no_progress)
    except (RendererError, BridgeError, DatasetError, ConnectionError, FileNotFoundError, ValueError) as e:
        # bad spec, missing checkpoint, no daemon at --endpoint, unusable cache, unknown channel/format
        print(f"error: {type(e).__name__}: {e}", file=sys.stderr)
        return 2
    print(table(result))
    return 0
