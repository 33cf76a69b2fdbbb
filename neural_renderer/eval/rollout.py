"""Long streaming rollouts for drift: the generator runs N frames of one eval scene (no camera cuts),
PSNR against the reference look every frame; the per-frame ablation (same weights, no context) is run
on the first and last windows for comparison (it cannot drift, so it shows how much of a PSNR change
is the scene's content rather than the model).

    neurender bench rollout --model base --frames 10000 --device cuda --json out.json
"""
from __future__ import annotations

import time


def mse_t(a, b) -> "torch.Tensor":
    """Mean squared error kept on the device (a host sync per frame would pace the rollout)."""
    return ((a - b) ** 2).mean()


def _psnr(mses) -> "np.ndarray":
    import numpy as np

    from neural_renderer.eval.metrics import psnr_from_mse

    return np.array([psnr_from_mse(float(m)) for m in mses])


ABLATION_EVERY = 10  # the per-frame ablation runs on every 10th frame (it is stateless, so sampling is exact)


def rollout(model_spec: str, frames: int, window: int, seed: int, style: str, device: str, steps: int | None,
            script: str = "walk", progress: bool = True, time_budget_s: float = 0.0) -> dict:
    """Runs up to `frames` frames (fewer if time_budget_s runs out: the result says how many)."""
    import numpy as np
    import torch
    from tqdm import tqdm

    from neural_renderer.data.world import SequenceRenderer
    from bridge.styles import STYLES
    from neural_renderer.model.checkpoint import load_model
    from neural_renderer.model.inputs import INPUT_CHANNELS, engine_to_cond, image_to_model
    from neural_renderer.serving.generator import Generator
    from neural_renderer.serving.prompts import encode_prompt

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
                                   if k in INPUT_CHANNELS})[None]
            ref = image_to_model(torch.from_numpy(f.reference[style]).to(device))[None]
            y = gen.step(cond)
            ours[i] = mse_t((y + 1) / 2, (ref + 1) / 2)
            engine[i] = mse_t(cond[:, :3].clamp(-1, 1) * 0.5 + 0.5, (ref + 1) / 2)
            if f.reset and i > 0:
                raise RuntimeError(f"script {script!r} cut at frame {i}; drift needs an unbroken run")
            if i % ABLATION_EVERY == 0:
                ablation[i] = mse_t((abl.step(cond) + 1) / 2, (ref + 1) / 2)
            if time_budget_s and time.time() - t0 > time_budget_s and i + 1 >= 2 * window:
                frames = i + 1
                break
    finally:
        seq.release()
    ours, engine = ours[:frames], engine[:frames]
    ablation = dict(zip(ablation, _psnr(ablation.values())))
    elapsed = time.time() - t0
    o, e = _psnr(ours.cpu().numpy()), _psnr(engine.cpu().numpy())
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
