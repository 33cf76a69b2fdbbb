"""`neurender prune`: architecture-aware pruning of a trained generator (neural_renderer.prune).

Scores heads and MLP channels (Taylor |w * grad|) and whole blocks (ablation) on real clips, drops
the lowest-scoring blocks and MLP channels down to `--mlp-ratio` x dim (multiples of 64), recovers by
distillation from the unpruned model, and writes OUT/NAME.json + safetensors, which
`neurender serve --backend generator:OUT/NAME.safetensors` loads like any checkpoint; plus
scores.png, loss.png and prune_result.json.
"""
from __future__ import annotations

import argparse


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--source", default="tiny", help="the unpruned checkpoint: shipped name or NAME.json/.safetensors path")
    p.add_argument("--out", default="runs/tiny-pruned", help="output directory")
    p.add_argument("--name", default="", help="checkpoint name (default: SOURCE_NAME-pruned)")
    p.add_argument("--drop-blocks", type=int, default=2, help="whole blocks to remove (lowest ablation score)")
    p.add_argument("--mlp-ratio", type=int, default=3, help="MLP width kept per block, x dim (<= the source's ratio)")
    p.add_argument("--score-batches", type=int, default=8, help="batches of real clips the scores are summed over")
    p.add_argument("--data", default="world", help="'world' (render on the fly), 'synthetic', or a dataset directory")
    p.add_argument("--steps", type=int, default=500, help="recovery (distillation) steps")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--clip-len", type=int, default=6)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--match-weight", type=float, default=1.0, help="weight of output matching vs the flow loss")
    p.add_argument("--finest", type=int, default=32, help="shortcut sources: step sizes 1/M..1 drawn in recovery")
    p.add_argument("--pool", type=int, default=64)
    p.add_argument("--refresh-every", type=int, default=4)
    p.add_argument("--no-history-aug", action="store_true")
    p.add_argument("--time-budget", type=float, default=0.0, help="stop recovery and save after this many seconds")
    p.add_argument("--log-every", type=int, default=25)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="")
    p.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    import json

    from neural_renderer.prune import PruneConfig, prune

    cfg = PruneConfig(source=args.source, out=args.out, name=args.name, drop_blocks=args.drop_blocks,
                      mlp_ratio=args.mlp_ratio, score_batches=args.score_batches, data=args.data, steps=args.steps,
                      batch=args.batch, clip_len=args.clip_len, lr=args.lr, warmup=args.warmup,
                      match_weight=args.match_weight, finest=args.finest, pool=args.pool,
                      refresh_every=args.refresh_every, history_aug=not args.no_history_aug,
                      time_budget_s=args.time_budget, log_every=args.log_every, seed=args.seed, device=args.device)
    try:
        result = prune(cfg, progress=not args.no_progress)
    except (ValueError, FileNotFoundError) as e:  # an impossible plan, or a source that names no checkpoint
        raise SystemExit(f"neurender prune: {e}")
    summary = {k: v for k, v in result.items() if k not in ("history", "scores", "plan")}
    summary["removed_blocks"] = [i for i in range(len(result["scores"]["blocks"])) if i not in result["plan"]["keep_blocks"]]
    summary["mlp_ratio"] = result["plan"]["mlp_ratio"]
    print(json.dumps(summary))
    return 0
