"""`neurender distill`: shortcut distillation of a trained generator checkpoint (neural_renderer.distill).

Writes OUT/NAME.json + safetensors (config: shortcut=true, steps=recommended), loss.png, sampling.png
(k-step PSNR vs the 32-step teacher, before/after) and distill_result.json. The result loads anywhere
a checkpoint does: `neurender serve --backend generator:OUT/NAME.json --steps 2`.
"""
from __future__ import annotations

import argparse


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--teacher", default="tiny", help="trained checkpoint: shipped name or NAME.json/.safetensors path")
    p.add_argument("--out", default="runs/tiny-shortcut", help="output directory")
    p.add_argument("--name", default="", help="checkpoint name (default: the teacher's model name)")
    p.add_argument("--data", default="world", help="'world' (render on the fly), 'synthetic', or a dataset directory")
    p.add_argument("--steps", type=int, default=1000, help="optimizer steps")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--clip-len", type=int, default=6)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--warmup", type=int, default=50)
    p.add_argument("--ema", type=float, default=0.99, help="EMA decay of the self-consistency target model (and the saved weights)")
    p.add_argument("--finest", type=int, default=32, help="M: the smallest step 1/M is plain flow matching (power of two)")
    p.add_argument("--sc-frac", type=float, default=0.125, help="share of each batch with self-consistency targets")
    p.add_argument("--recommended-steps", type=int, default=2, help="default step count written into the checkpoint")
    p.add_argument("--pool", type=int, default=64)
    p.add_argument("--refresh-every", type=int, default=4)
    p.add_argument("--no-history-aug", action="store_true")
    p.add_argument("--time-budget", type=float, default=0.0, help="stop and save after this many seconds")
    p.add_argument("--log-every", type=int, default=25)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="")
    p.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    import json

    from neural_renderer.distill import DistillConfig, distill

    if args.finest < 1 or args.finest & (args.finest - 1):
        raise SystemExit(f"--finest must be a power of two, got {args.finest}")
    if not 0.0 <= args.sc_frac <= 1.0:
        raise SystemExit(f"--sc-frac must be in [0, 1], got {args.sc_frac}")
    cfg = DistillConfig(teacher=args.teacher, out=args.out, name=args.name, source=args.data, steps=args.steps,
                        batch=args.batch, clip_len=args.clip_len, lr=args.lr, warmup=args.warmup, ema=args.ema,
                        finest=args.finest, sc_frac=args.sc_frac, recommended_steps=args.recommended_steps,
                        pool=args.pool, refresh_every=args.refresh_every, history_aug=not args.no_history_aug,
                        time_budget_s=args.time_budget, log_every=args.log_every, seed=args.seed, device=args.device)
    try:
        result = distill(cfg, progress=not args.no_progress)
    except FileNotFoundError as e:  # a teacher spec that names no checkpoint
        raise SystemExit(f"neurender distill: {e}")
    print(json.dumps({k: v for k, v in result.items() if k != "history"}))
    return 0
