"""`neurender prune`: architecture-aware pruning of a trained generator (neural_renderer.training.prune),
the hourglass's trunk (default: the shipped `tiny`) or the DiT.

Scores heads and MLP channels (Taylor |w * grad|) and whole transformer blocks (ablation) on real clips,
drops the lowest-scoring blocks and MLP channels down to `--mlp-ratio` x dim (multiples of 64), recovers by
distillation from the unpruned model, and writes OUT/NAME.json + safetensors, which
`neurender serve --backend generator:OUT/NAME.safetensors` loads like any checkpoint; plus
scores.png, loss.png and prune_result.json.
"""
from __future__ import annotations

import argparse

from neural_renderer.training.config import PruneConfig

from .flags import add_config_flags, config_from_args

HELP = {
    "init": "the unpruned checkpoint: shipped name or NAME.json/.safetensors path",
    "name": "checkpoint name (default: SOURCE_NAME-pruned)",
    "drop_blocks": "whole transformer blocks to remove (lowest ablation score)",
    "mlp_ratio": "MLP width kept per block, x dim (<= the source's ratio)",
    "score_batches": "batches of real clips the scores are summed over",
    "steps": "recovery (distillation) steps",
    "match_weight": "weight of output matching vs the flow loss",
    "finest": "shortcut sources: step sizes 1/M..1 drawn in recovery",
}


def configure(p: argparse.ArgumentParser) -> None:
    add_config_flags(p, PruneConfig, HELP)
    p.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    import json

    from neural_renderer.training.prune import prune

    try:
        result = prune(config_from_args(PruneConfig, args), progress=not args.no_progress)
    except (ValueError, FileNotFoundError) as e:  # an impossible plan, or a source that names no checkpoint
        raise SystemExit(f"neurender prune: {e}")
    summary = {k: v for k, v in result.items() if k not in ("history", "scores", "plan")}
    summary["removed_blocks"] = [i for i in range(len(result["scores"]["blocks"])) if i not in result["plan"]["keep_blocks"]]
    summary["mlp_ratio"] = result["plan"]["mlp_ratio"]
    print(json.dumps(summary))
    return 0
