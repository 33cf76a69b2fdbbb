"""Long streaming rollouts for drift: the generator runs N frames of one eval scene (no camera cuts),
PSNR against the reference look every frame; the per-frame ablation (same weights, no context) is run
on the first and last windows for comparison (it cannot drift, so it shows how much of a PSNR change
is the scene's content rather than the model).

    python -m neural_renderer.rollout --model base --frames 10000 --device cuda --json out.json
"""
from __future__ import annotations

import argparse
import json
import time


def psnr_t(a, b) -> "torch.Tensor":
    import torch

    return -10.0 * torch.log10(((a - b) ** 2).mean().clamp_min(1e-10))


ABLATION_EVERY = 10  # the per-frame ablation runs on every 10th frame (it is stateless, so sampling is exact)


def rollout(model_spec: str, frames: int, window: int, seed: int, style: str, device: str, steps: int | None,
            script: str = "walk", progress: bool = True, time_budget_s: float = 0.0) -> dict:
    """Runs up to `frames` frames (fewer if time_budget_s runs out: the result says how many)."""
    import numpy as np
    import torch
    from tqdm import tqdm

    from demos.sequence import SequenceRenderer
    from demos.styles import STYLES
    from neural_renderer.checkpoint import load_model
    from neural_renderer.engine_inputs import engine_to_cond, image_to_model
    from neural_renderer.generator import Generator
    from neural_renderer.prompts import encode_prompt

    model = load_model(model_spec, device=device)
    R = model.cfg.resolution
    prompt = encode_prompt(STYLES[style])
    gen = Generator(model, prompt, steps=steps, seed=0)
    abl = Generator(model, prompt, steps=steps, seed=0, use_context=False)
    seq = SequenceRenderer(seed, R, R, styles=(style,), script=script)
    ours = torch.zeros(frames, device=device)
    engine = torch.zeros(frames, device=device)
    ablation = {}
    t0 = time.time()
    try:
        for i in tqdm(range(frames), desc=f"rollout {model.cfg.name}", disable=not progress, mininterval=2):
            f = seq.step()
            cond = engine_to_cond({k: torch.from_numpy(v).to(device) for k, v in f.engine.items()
                                   if k in ("color", "depth", "normals", "albedo", "material_id")})[None]
            ref = image_to_model(torch.from_numpy(f.reference[style]).to(device))[None]
            y = gen.step(cond)
            ours[i] = psnr_t((y + 1) / 2, (ref + 1) / 2)
            engine[i] = psnr_t(cond[:, :3].clamp(-1, 1) * 0.5 + 0.5, (ref + 1) / 2)
            if f.reset and i > 0:
                raise RuntimeError(f"script {script!r} cut at frame {i}; drift needs an unbroken run")
            if i % ABLATION_EVERY == 0:
                ablation[i] = psnr_t((abl.step(cond) + 1) / 2, (ref + 1) / 2)
            if time_budget_s and time.time() - t0 > time_budget_s and i + 1 >= 2 * window:
                frames = i + 1
                break
    finally:
        seq.release()
    ours, engine = ours[:frames], engine[:frames]
    ablation = {i: float(v) for i, v in ablation.items()}
    elapsed = time.time() - t0
    o, e = ours.cpu().numpy(), engine.cpu().numpy()
    first, last = slice(0, window), slice(frames - window, frames)
    a_first = float(np.mean([v for i, v in ablation.items() if i < window]))
    a_last = float(np.mean([v for i, v in ablation.items() if i >= frames - window]))
    res = {"model": model.cfg.name, "frames": frames, "window": window, "seed": seed, "style": style, "script": script,
           "steps": gen.steps, "device": str(device), "elapsed_s": elapsed,
           "psnr_first": float(o[first].mean()), "psnr_last": float(o[last].mean()),
           "drift_db": float(o[first].mean() - o[last].mean()),
           "ablation_psnr_first": a_first, "ablation_psnr_last": a_last, "ablation_drift_db": a_first - a_last,
           "engine_psnr_first": float(e[first].mean()), "engine_psnr_last": float(e[last].mean()),
           "psnr_per_100": [float(o[i:i + 100].mean()) for i in range(0, frames, 100)]}
    return res


def save_plot(res: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4))
    xs = [i * 100 + 50 for i in range(len(res["psnr_per_100"]))]
    ax.plot(xs, res["psnr_per_100"], label=f"{res['model']} causal, {res['steps']} steps (mean per 100 frames)")
    ax.axhline(res["ablation_psnr_first"], ls=":", c="gray", label="per-frame ablation, first window (every 10th frame)")
    ax.axhline(res["ablation_psnr_last"], ls="--", c="gray", label="per-frame ablation, last window (every 10th frame)")
    ax.set_xlabel("frame")
    ax.set_ylabel("PSNR vs reference (dB)")
    ax.set_title(f"rollout: {res['frames']} frames, seed {res['seed']}, {res['style']}; drift {res['drift_db']:+.2f} dB")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="tiny")
    p.add_argument("--frames", type=int, default=1000)
    p.add_argument("--window", type=int, default=100)
    p.add_argument("--seed", type=int, default=1_000_000)
    p.add_argument("--style", default="sunny")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--device", default="cpu")
    p.add_argument("--time-budget", type=float, default=0.0, help="stop early after this many seconds")
    p.add_argument("--json", default="")
    p.add_argument("--plot", default="")
    a = p.parse_args(argv)
    res = rollout(a.model, a.frames, a.window, a.seed, a.style, a.device, a.steps, time_budget_s=a.time_budget)
    print(json.dumps({k: v for k, v in res.items() if k != "psnr_per_100"}))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)
    if a.plot:
        save_plot(res, a.plot)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
