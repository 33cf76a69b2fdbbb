"""`neurender bench rollout`: a long streaming rollout of one eval scene for drift, against the
per-frame ablation (library: neural_renderer.eval.rollout)."""
from __future__ import annotations

import argparse


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="tiny")
    p.add_argument("--frames", type=int, default=1000)
    p.add_argument("--window", type=int, default=100)
    p.add_argument("--seed", type=int, default=1_000_000, help="an evaluation seed")
    p.add_argument("--style", default="sunny")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--device", default="cpu")
    p.add_argument("--time-budget", type=float, default=0.0, help="stop early after this many seconds")
    p.add_argument("--json", default="")
    p.add_argument("--plot", default="")


def run(args: argparse.Namespace) -> int:
    import json

    from neural_renderer.eval.rollout import rollout, save_plot

    res = rollout(args.model, args.frames, args.window, args.seed, args.style, args.device, args.steps,
                  time_budget_s=args.time_budget)
    print(json.dumps({k: v for k, v in res.items() if k != "psnr_per_100"}))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)
    if args.plot:
        save_plot(res, args.plot)
    return 0
