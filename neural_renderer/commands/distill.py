"""`neurender distill`: shortcut distillation of a trained generator checkpoint (neural_renderer.training.distill),
the hourglass (default: the shipped `tiny`) or the DiT.

Writes OUT/NAME.json + safetensors (config: shortcut=true, steps=recommended), loss.png, sampling.png
(k-step PSNR vs the 32-step teacher, before/after; the hourglass's clips streamed through the serving
sampler) and distill_result.json. The result loads anywhere
a checkpoint does: `neurender serve --backend generator:OUT/NAME.json --steps 2`.
"""
from __future__ import annotations

import argparse

from neural_renderer.training.config import DistillConfig

from .flags import add_config_flags, config_from_args

HELP = {
    "init": "the teacher: shipped name or NAME.json/.safetensors path (hourglass or DiT)",
    "name": "checkpoint name (default: the teacher's model name)",
    "steps": "optimizer steps",
    "ema": "EMA decay of the self-consistency target model (and the saved weights); 1 freezes it",
    "finest": "M: the smallest step 1/M is plain flow matching (power of two)",
    "sc_frac": "share of each batch with self-consistency targets",
    "recommended_steps": "default step count written into the checkpoint",
}


def configure(p: argparse.ArgumentParser) -> None:
    add_config_flags(p, DistillConfig, HELP)
    p.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    import json

    from neural_renderer.training.distill import distill

    if args.finest < 1 or args.finest & (args.finest - 1):
        raise SystemExit(f"--finest must be a power of two, got {args.finest}")
    if not 0.0 <= args.sc_frac <= 1.0:
        raise SystemExit(f"--sc-frac must be in [0, 1], got {args.sc_frac}")
    try:
        result = distill(config_from_args(DistillConfig, args), progress=not args.no_progress)
    except FileNotFoundError as e:  # a teacher spec that names no checkpoint
        raise SystemExit(f"neurender distill: {e}")
    print(json.dumps({k: v for k, v in result.items() if k != "history"}))
    return 0
