"""`neurender bench serve`: the daemon round trip per frame size, the model time alone, the host share, and a
StreamDiffusion-style img2img baseline side by side, in one run (library: neural_renderer.serving.bench_serve)."""
from __future__ import annotations

import argparse


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="base", help="shipped name, checkpoint path, or a registry size (random weights)")
    p.add_argument("--device", default=None, help="cuda when present, else cpu")
    p.add_argument("--sizes", nargs="+", default=["512x512", "1280x720"], help="WxH frame sizes")
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--frames", type=int, default=300, help="timed frames per figure")
    p.add_argument("--warmup", type=int, default=30)
    p.add_argument("--dtype", default=None, choices=("float32", "bfloat16"),
                   help="the generator's dtype (default: bfloat16 on cuda, float32 on cpu, as serve)")
    p.add_argument("--baseline", default=None, choices=("sd-turbo", "tiny"),
                   help="baseline UNet config (default: sd-turbo on cuda, tiny on cpu)")
    p.add_argument("--baseline-size", default="512x512", help="WxH of the baseline's frames")
    p.add_argument("--kernels", nargs="+", default=None,
                   help="serving arms, one daemon each (default on cuda: auto fused frame-graph frame-graph+fused; "
                        "on cpu: auto)")
    p.add_argument("--out", "--json", dest="out", default="", help="write the figures here (JSON)")


def run(args: argparse.Namespace) -> int:
    import torch

    from neural_renderer.serving.bench_serve import bench, parse_size, write

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    gpu = device.startswith("cuda")
    res = bench(args.model, device, [parse_size(s) for s in args.sizes], args.steps, args.frames, args.warmup,
                args.dtype or ("bfloat16" if gpu else "float32"), args.baseline or ("sd-turbo" if gpu else "tiny"),
                parse_size(args.baseline_size),
                kernels=tuple(args.kernels or (("auto", "fused", "frame-graph", "frame-graph+fused") if gpu else ("auto",))))
    if args.out:
        write(res, args.out)
    return 0
