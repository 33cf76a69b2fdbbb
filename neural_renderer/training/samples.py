"""Sample grids of a streamed model: what a person looks at after training.

`stream_sequence` runs the streaming sampler over one world sequence in one look, exactly as the daemon
would (engine channels, motion, disocclusion, actions, resets), and returns the frames with the
reference look beside them; `sample_grid` writes a PNG (rows: looks; columns: engine pass | model |
reference at a few frame indices) and returns the mean PSNR per look. Training seeds only: this is a
look at training progress, not an evaluation (that is `neurender eval` on held-out seeds).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from neural_renderer.model.inputs import INPUT_CHANNELS, engine_to_cond, model_to_image
from neural_renderer.eval.metrics import psnr


def stream_sequence(model, seed: int, frames: int, width: int, height: int, style: str, steps: int | None = None,
                    ctx=None, **sampler_kw) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """-> (engine colour, model output, reference), each a list of (H, W, 3) float images in [0, 1]."""
    from neural_renderer.data.world import check_train_seed, render_sequence
    from neural_renderer.serving.prompts import style_embeddings
    from neural_renderer.serving.stream import StreamingSampler

    dev = next(model.parameters()).device
    sampler = StreamingSampler(model, style_embeddings()[style][0], steps=steps, seed=seed, **sampler_kw)
    engine, outs, refs = [], [], []
    for f in render_sequence(check_train_seed(seed), frames, width, height, styles=(style,), ctx=ctx):
        if f.reset:
            sampler.reset()
        cond = engine_to_cond({c: torch.from_numpy(np.asarray(f.engine[c])) for c in INPUT_CHANNELS},
                              constants=f.constants)[None]
        mv = torch.from_numpy(f.engine["motion"]).float().permute(2, 0, 1)[None].to(dev)
        dis = torch.from_numpy(np.asarray(f.engine["disocclusion"], np.float32)).reshape(1, 1, height, width).to(dev)
        y = sampler.step(cond.to(dev), torch.from_numpy(f.action)[None].to(dev), mv, dis)
        engine.append(np.clip(f.engine["color"], 0, 1).astype(np.float32))
        outs.append(model_to_image(y[0]).cpu().numpy())
        refs.append(f.reference[style])
    return engine, outs, refs


def sample_grid(model, path: str | Path, seed: int = 7, size: int | None = None,
                looks=("sunny", "night", "winter", "cartoon"), frames: int = 24, columns: int = 4,
                tile: int = 192, ctx=None) -> dict[str, float]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    size = size or model.cfg.resolution
    picks = np.linspace(0, frames - 1, columns).round().astype(int)
    rows, scores = [], {}
    for look in looks:
        engine, outs, refs = stream_sequence(model, seed, frames, size, size, look, ctx=ctx)
        scores[look] = float(np.mean([psnr(o, r) for o, r in zip(outs, refs)]))
        rows.append([[engine[i], outs[i], refs[i]] for i in picks])
    fig, axes = plt.subplots(len(looks), 3 * columns, figsize=(3 * columns * tile / 100, len(looks) * tile / 100 + 0.4),
                             squeeze=False)
    for r, look in enumerate(looks):
        for c, i in enumerate(picks):
            for k, (img, name) in enumerate(zip(rows[r][c], ("engine", "model", "reference"))):
                ax = axes[r, 3 * c + k]
                ax.imshow(np.clip(img, 0, 1), interpolation="nearest")
                ax.set_xticks([]), ax.set_yticks([])
                if r == 0:
                    ax.set_title(f"{name} t={i}", fontsize=7)
            if c == 0:
                axes[r, 0].set_ylabel(f"{look}\n{scores[look]:.1f} dB", fontsize=8)
    fig.suptitle(f"{model.cfg.name}: streamed, training seed {seed}, {size}x{size}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return scores
