"""The generator's eval figures, through the shared eval runner (neural_renderer.eval.run_eval):

  context   the causal model vs the per-frame ablation (same weights, no KV cache): PSNR against the
            reference look (the engine pass is scored in the same run), warping error, drift;
  history   a model trained with history augmentation vs one trained without (same steps, same
            seed, same data): drift and quality.

    python -m neural_renderer.eval_generator context --model tiny --suite standard --out DIR
    python -m neural_renderer.eval_generator history --model A.json --vs-model B.json --suite standard --out DIR
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("what", choices=["context", "history"])
    p.add_argument("--model", default="tiny")
    p.add_argument("--vs-model", default="")
    p.add_argument("--suite", default="standard")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default="eval_out")
    a = p.parse_args(argv)

    from neural_renderer.backend import GeneratorRenderer
    from neural_renderer.eval import run_eval

    ours = GeneratorRenderer(a.model, steps=a.steps, device=a.device)
    if a.what == "context":
        ours.name = f"{ours.model.cfg.name} causal"
        vs = GeneratorRenderer(a.model, steps=a.steps, device=a.device, use_context=False)
        vs.name = f"{vs.model.cfg.name} per-frame"
    else:
        ours.name = "history-aug"
        vs = GeneratorRenderer(a.vs_model, steps=a.steps, device=a.device)
        vs.name = "no-history-aug"
    out = Path(a.out)
    res = run_eval(ours, a.suite, vs=vs, device=a.device, json_path=out / "eval.json", report_dir=out / "report")
    print(json.dumps(res["headline"], indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
