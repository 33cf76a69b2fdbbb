"""`neurender train`: train the causal generator (single process, or several through torchrun), or, with
`--look NAME`, fine-tune a trained one on a recording of your game (`--data REC --from generator:base`)."""
from __future__ import annotations

import argparse
import dataclasses

from neural_renderer.training.config import TrainConfig

from .flags import add_config_flags, config_from_args

HELP = {
    "model": "a size of the model registry (neural_renderer/model/registry.py)",
    "resume": "train_state.pt to continue from",
    "init": "checkpoint (name or .json) to start the weights from",
    "device": "default: cuda:LOCAL_RANK if available, else cpu",
    "look_share": "--look: share of each batch from the recording, the rest world clips of the built-in looks",
    "render_resolution": "world clips render at this size (0 = the model's); batches are --crop crops of them",
    "render_workers": "world-rendering processes (0 = render in the training process)",
}
FINETUNE_SET = ("model", "out", "steps", "init", "data", "recording", "looks", "look_share")  # finetune() sets these


def configure(p: argparse.ArgumentParser) -> None:
    add_config_flags(p, TrainConfig, HELP, skip=("recording", "looks"))
    p.add_argument("--look", default=None, metavar="NAME",
                   help="fine-tune on the recording --data (the game's own frames) as the look NAME, the prompt that "
                        "selects it when served; needs --from (neural_renderer/training/finetune.py)")
    p.add_argument("--mix", default="world", help="--look: where the built-in looks' clips come from: 'world', "
                   "'synthetic' or a dataset directory")
    p.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    import json

    from neural_renderer.model.registry import MODELS
    from neural_renderer.training.train import train

    if args.look is not None:
        return _finetune(args)
    if args.model not in MODELS:
        raise SystemExit(f"--model must be one of {', '.join(MODELS)}, got {args.model!r}")
    result = train(config_from_args(TrainConfig, args), progress=not args.no_progress)
    print(json.dumps(result))
    return 0


def _finetune(args) -> int:
    import json
    import sys

    from neural_renderer.data import DatasetError
    from neural_renderer.training.finetune import finetune

    if not args.init:
        print("neurender train: --look fine-tunes a trained model: give --from (e.g. generator:base)", file=sys.stderr)
        return 2
    model = args.model if any(a.startswith("--model") for a in sys.argv) else None
    rest = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)
            if f.name not in FINETUNE_SET and hasattr(args, f.name)}
    try:
        result = finetune(args.data, args.look, init=args.init, model=model, out=args.out, steps=args.steps,
                          look_share=args.look_share, mix=args.mix, progress=not args.no_progress, **rest)
    except (DatasetError, FileNotFoundError, ValueError) as e:
        print(f"neurender train: {e}", file=sys.stderr)
        return 2
    print(json.dumps(result))
    return 0
