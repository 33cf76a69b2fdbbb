"""The generator's ablations, through the shared eval runner (neural_renderer.eval.run_eval):

  context   the causal model vs the per-frame ablation (same weights, no KV cache): PSNR against the
            reference look (the engine pass is scored in the same run), warping error, drift;
  history   a model trained with history augmentation vs one trained without (same steps, same
            seed, same data): drift and quality.

    neurender bench ablation context --model tiny --suite standard --out DIR
    neurender bench ablation history --model A.json --vs-model B.json --suite standard --out DIR
"""
from __future__ import annotations

from pathlib import Path

ABLATIONS = ("context", "history")


def ablation(what: str, model: str, vs_model: str = "", suite: str = "standard", steps: int | None = None,
             device: str = "cpu", out: str | Path = "eval_out") -> dict:
    """Scores both arms side by side; writes OUT/eval.json and OUT/report/; returns run_eval's result."""
    from neural_renderer.eval import run_eval
    from neural_renderer.serving.renderer import GeneratorRenderer

    if what not in ABLATIONS:
        raise ValueError(f"ablation {what!r}: choose one of {', '.join(ABLATIONS)}")
    ours = GeneratorRenderer(model, steps=steps, device=device)
    if what == "context":
        ours.name = f"{ours.model.cfg.name} causal"
        vs = GeneratorRenderer(model, steps=steps, device=device, use_context=False)
        vs.name = f"{vs.model.cfg.name} per-frame"
    else:
        ours.name = "history-aug"
        vs = GeneratorRenderer(vs_model, steps=steps, device=device)
        vs.name = "no-history-aug"
    out = Path(out)
    return run_eval(ours, suite, vs=vs, device=device, json_path=out / "eval.json", report_dir=out / "report")
