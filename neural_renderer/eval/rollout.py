"""Long streaming rollouts for drift: the generator runs N frames of one eval scene (no camera cuts),
PSNR against the reference look every frame; the per-frame ablation (same weights, no context) is run
on the first and last windows for comparison (it cannot drift, so it shows how much of a PSNR change
is the scene's content rather than the model).

    neurender bench rollout --model base --frames 10000 --device cuda --json out.json
    neurender bench rollout --model generator:PATH.json --frames 10000 --style night
"""
from __future__ import annotations

import time


def _psnr(mses) -> "np.ndarray":
    import numpy as np

    from neural_renderer.eval.metrics import psnr_from_mse

    return np.array([psnr_from_mse(float(m)) for m in mses])


ABLATION_EVERY = 10  # the per-frame ablation runs on every 10th frame (it is stateless, so sampling is exact)


def rollout(model_spec: str, frames: int, window: int, seed: int, style: str, device: str, steps: int | None,
            script: str = "walk", progress: bool = True, time_budget_s: float = 0.0) -> dict:
    """Runs up to `frames` frames (fewer if time_budget_s runs out: the result says how many).

    The model is driven exactly as the daemon drives it: a generator backend session (serving/renderer.py)
    fed every engine channel, the camera constants and the action of each frame, so the hourglass's
    reprojected history and world group are in the loop. The per-frame ablation is the same weights with
    no context and no history (`?context=0&history=0`), a stateless renderer."""
    import numpy as np
    from tqdm import tqdm

    from bridge.styles import STYLES
    from neural_renderer.data.world import SequenceRenderer
    from neural_renderer.eval.hosts import InProcessHost

    spec = model_spec if model_spec.startswith("generator") else f"generator:{model_spec}"
    ours_host = InProcessHost(spec, steps=steps, device=device)
    abl_host = InProcessHost(spec + ("&" if "?" in spec else "?") + "context=0&history=0", steps=steps, device=device)
    info = ours_host.describe()
    size = int(info.get("resolution") or 128)
    seq = SequenceRenderer(seed, size, size, styles=(style,), script=script)
    ours, engine, ablation = [], [], {}
    runs = {}
    t0 = time.time()
    try:
        for i in tqdm(range(frames), desc=f"rollout {spec}", disable=not progress, mininterval=2):
            f = seq.step()
            if f.reset and i > 0:
                raise RuntimeError(f"script {script!r} cut at frame {i}; drift needs an unbroken run")
            if not runs:
                channels = {k: str(v.dtype) for k, v in f.engine.items()}
                runs = {"ours": ours_host.open(size, size, channels, "rgb16f", STYLES[style]),
                        "abl": abl_host.open(size, size, channels, "rgb16f", STYLES[style])}
            ref = np.asarray(f.reference[style], np.float32)
            args = ({k: np.ascontiguousarray(v) for k, v in f.engine.items()}, f.constants,
                    np.asarray(f.action, np.float32), None, i == 0)
            y, _, _ = runs["ours"].render(*args)
            ours.append(float(((y - ref) ** 2).mean()))
            engine.append(float(((np.clip(f.engine["color"].astype(np.float32), 0, 1) - ref) ** 2).mean()))
            if i % ABLATION_EVERY == 0:
                ya, _, _ = runs["abl"].render(*args)
                ablation[i] = float(((ya - ref) ** 2).mean())
            if time_budget_s and time.time() - t0 > time_budget_s and i + 1 >= 2 * window:
                frames = i + 1
                break
    finally:
        for r in runs.values():
            r.close()
        ours_host.close()
        abl_host.close()
        seq.release()
    ablation = dict(zip(ablation, _psnr(ablation.values())))
    elapsed = time.time() - t0
    o, e = _psnr(ours[:frames]), _psnr(engine[:frames])
    first, last = slice(0, window), slice(frames - window, frames)
    a_first = float(np.mean([v for i, v in ablation.items() if i < window]))
    a_last = float(np.mean([v for i, v in ablation.items() if i >= frames - window]))
    res = {"model": spec, "renderer": info, "frames": frames, "window": window, "seed": seed, "style": style,
           "script": script, "steps": info.get("steps", steps), "device": str(device), "elapsed_s": elapsed,
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
