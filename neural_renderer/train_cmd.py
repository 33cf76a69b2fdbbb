"""`neurender train`: train the causal generator (single process, or several through torchrun)."""
from __future__ import annotations

import argparse

MODEL_CHOICES = ("micro", "tiny", "small", "base")  # neural_renderer.model.MODELS (kept light: no torch import here)


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", choices=MODEL_CHOICES, default="tiny")
    p.add_argument("--out", default="runs/tiny", help="output directory: NAME.json + safetensors, train_state.pt, loss.png")
    p.add_argument("--data", default="world", help="'world' (render on the fly), 'synthetic', or a dataset directory")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--clip-len", type=int, default=6)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--pool", type=int, default=64, help="clips kept on the device")
    p.add_argument("--refresh-every", type=int, default=4, help="steps between new clips entering the pool (0 = never)")
    p.add_argument("--no-history-aug", action="store_true", help="ablation: clean context, no corruption")
    p.add_argument("--time-budget", type=float, default=0.0, help="stop and save after this many seconds")
    p.add_argument("--resume", default="", help="train_state.pt to continue from")
    p.add_argument("--init", default="", help="checkpoint (name or .json) to start the weights from")
    p.add_argument("--ckpt-every", type=int, default=500)
    p.add_argument("--log-every", type=int, default=25)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="", help="default: cuda:LOCAL_RANK if available, else cpu")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--look", default=None, metavar="NAME",
                   help="fine-tune on the recording --data (the game's own frames) as the look NAME, the prompt that "
                        "selects it when served; needs --init (neural_renderer/training/finetune.py)")
    p.add_argument("--look-share", type=float, default=None,
                   help="--look: share of each batch from the recording, the rest world clips of the built-in looks "
                        "(default 0.5)")
    p.add_argument("--mix", default="world", help="--look: where the built-in looks' clips come from: 'world', "
                   "'synthetic' or a dataset directory")


def run(args: argparse.Namespace) -> int:
    import json

    if args.look is not None:
        return _finetune(args)
    from neural_renderer.train import TrainConfig, train

    cfg = TrainConfig(model=args.model, out=args.out, source=args.data, steps=args.steps, batch=args.batch,
                      clip_len=args.clip_len, lr=args.lr, pool=args.pool, refresh_every=args.refresh_every,
                      history_aug=not args.no_history_aug, time_budget_s=args.time_budget, resume=args.resume,
                      init=args.init, ckpt_every=args.ckpt_every, log_every=args.log_every, seed=args.seed, device=args.device)
    result = train(cfg, progress=not args.no_progress)
    print(json.dumps(result))
    return 0


def _finetune(args) -> int:
    import json
    import sys

    from neural_renderer.data import DatasetError
    from neural_renderer.training.finetune import DEFAULT_LOOK_SHARE, finetune

    if not args.init:
        print("neurender train: --look fine-tunes a trained model: give --init (e.g. generator:base)", file=sys.stderr)
        return 2
    model = args.model if any(a.startswith("--model") for a in sys.argv) else None
    try:
        result = finetune(args.data, args.look, init=args.init, model=model, out=args.out, steps=args.steps,
                          look_share=args.look_share if args.look_share is not None else DEFAULT_LOOK_SHARE,
                          mix=args.mix, progress=not args.no_progress, batch=args.batch, clip_len=args.clip_len,
                          lr=args.lr, pool=args.pool, refresh_every=args.refresh_every, time_budget_s=args.time_budget,
                          resume=args.resume, ckpt_every=args.ckpt_every, log_every=args.log_every, seed=args.seed,
                          device=args.device, history_aug=not args.no_history_aug)
    except (DatasetError, FileNotFoundError, ValueError) as e:
        print(f"neurender train: {e}", file=sys.stderr)
        return 2
    print(json.dumps(result))
    return 0
