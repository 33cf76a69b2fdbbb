"""`neurender train`: train the causal generator (single process, or several through torchrun)."""
from __future__ import annotations

import argparse

from neural_renderer.training.config import TrainConfig

from .flags import add_config_flags, config_from_args

HELP = {
    "model": "a size of the model registry (neural_renderer/model/registry.py)",
    "resume": "train_state.pt to continue from",
    "init": "checkpoint (name or .json) to start the weights from",
    "device": "default: cuda:LOCAL_RANK if available, else cpu",
}


def configure(p: argparse.ArgumentParser) -> None:
    add_config_flags(p, TrainConfig, HELP)
    p.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    import json

    from neural_renderer.model.registry import MODELS
    from neural_renderer.training.train import train

    if args.model not in MODELS:
        raise SystemExit(f"--model must be one of {', '.join(MODELS)}, got {args.model!r}")
    result = train(config_from_args(TrainConfig, args), progress=not args.no_progress)
    print(json.dumps(result))
    return 0
