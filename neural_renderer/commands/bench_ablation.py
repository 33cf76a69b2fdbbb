"""`neurender bench ablation`: the causal generator against its ablations (per-frame, no history
augmentation) on an eval suite (library: neural_renderer.eval.ablation)."""
from __future__ import annotations

import argparse


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("what", choices=["context", "history"])
    p.add_argument("--model", default="tiny")
    p.add_argument("--vs-model", default="", help="history: the model trained without history augmentation")
    p.add_argument("--suite", default="standard")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default="eval_out")


def run(args: argparse.Namespace) -> int:
    import json

    from neural_renderer.eval.ablation import ablation

    res = ablation(args.what, args.model, args.vs_model, args.suite, args.steps, args.device, args.out)
    print(json.dumps(res["headline"], indent=1))
    return 0
