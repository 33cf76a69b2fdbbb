"""Fine-tuning the generator on a recording of a user's game (`neurender train --data DIR --look NAME`).

The recording's `final` frames are the target under the prompt NAME; world clips (all seven built-in
looks, as in pre-training) are mixed in so the model keeps them: a batch of B clips holds
round(B * look_share) recording clips, the rest world clips, each from its own on-device pool.
NAME's prompt embedding is computed once here (the text encoder, on CPU) and stored in the output
checkpoint (`train.looks` of its JSON), so the daemon's prompt lookup resolves NAME without the encoder.
After training: `samples.png`, recorded frames vs the model's, on held-out sequences when there are any.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from neural_renderer.data.recording import held_out, look_name, open_recording
from neural_renderer.model.inputs import INPUT_CHANNELS
from neural_renderer.training.config import TrainConfig

DEFAULT_LOOK_SHARE = TrainConfig.look_share


def look_embedding(name: str) -> list[float]:
    from neural_renderer.serving.prompts import encode_prompt

    return [float(x) for x in encode_prompt(name).reshape(-1)]


def finetune(data: str, look: str | None, *, init: str, model: str | None = None, out: str, steps: int,
             look_share: float = DEFAULT_LOOK_SHARE, mix: str = "world", progress: bool = True, **train_kw) -> dict:
    """Fine-tune `init` on the recording `data` under the prompt `look` (default: the recording's name)."""
    from neural_renderer.model.checkpoint import resolve
    from neural_renderer.training.train import train

    if not 0.0 < look_share <= 1.0:  # before the text encoder loads
        raise ValueError(f"look share must be in (0, 1], got {look_share}")
    ds = open_recording(data)
    look = look or look_name(ds)
    init = init.removeprefix("generator:")
    init_json = resolve(init)
    base_model = json.loads(init_json.read_text())["config"]["name"]
    if model is not None and model != base_model:
        raise ValueError(f"--model {model} but --from {init} is a {base_model} checkpoint")
    cfg = TrainConfig(model=base_model, out=out, steps=steps, data=mix, init=str(init_json),
                      recording=str(Path(data)), look_share=look_share, looks={look: look_embedding(look)},
                      **train_kw)
    result = train(cfg, progress=progress)
    result["look"] = look
    result["checkpoint"] = str(Path(out) / f"{base_model}.json")
    result["samples"] = str(sample_grid(ds, Path(result["checkpoint"]), look, Path(out) / "samples.png",
                                        frames=min(cfg.clip_len * 2, 8)))
    return result


def sample_grid(ds, checkpoint: Path, look: str, path: Path, frames: int = 8) -> Path:
    """Rows engine colour | recorded `final` | the model, one column per frame, on the first held-out
    sequence (the first training one when none is held out)."""
    import imageio.v2 as imageio
    import torch.nn.functional as F

    from neural_renderer.data.world import contact_sheet, to_srgb8
    from neural_renderer.model.checkpoint import load_model
    from neural_renderer.model.inputs import engine_to_cond
    from neural_renderer.serving.generator import Generator
    from neural_renderer.serving.prompts import lookup
    from neural_renderer.serving.renderer import register_checkpoint_looks
    from neural_renderer.serving.stream import StreamingSampler

    register_checkpoint_looks(checkpoint)
    m = load_model(checkpoint)
    k = (held_out(len(ds)) or [0])[0]
    n = min(frames, ds.sequences[k].frames)
    clip = ds.clip(k, 0, n)
    chans = [c for c in INPUT_CHANNELS if c in ds.channels]
    native = m.cfg.arch == "hourglass"  # served at the recording's own size, with its motion vectors
    gen = StreamingSampler(m, lookup(look), seed=0) if native else Generator(m, lookup(look), seed=0)
    rows = {"engine": [], "recorded": [], "model": []}
    with torch.no_grad():
        for t in range(n):
            if t and clip.reset[t]:
                gen.reset()
            cond = engine_to_cond({c: torch.from_numpy(_frame(clip.engine[c][t])) for c in chans},
                                  resolution=None if native else m.cfg.resolution, constants=clip.constants_at(t))[None]
            if native:
                mv = (torch.from_numpy(np.asarray(clip.engine["motion"][t], np.float32)).permute(2, 0, 1)[None]
                      if "motion" in clip.engine else None)
                dis = (torch.from_numpy(np.asarray(clip.engine["disocclusion"][t], np.float32)).reshape(1, 1, *cond.shape[-2:])
                       if mv is not None and "disocclusion" in clip.engine else None)
                y = gen.step(cond, None, mv, dis)
            else:
                y = gen.step(cond)
            y = F.interpolate(y.float(), size=(ds.height, ds.width), mode="bilinear", align_corners=False)
            img = ((y[0] + 1) * 0.5).clamp(0, 1).permute(1, 2, 0).numpy()
            rows["engine"].append(to_srgb8(np.asarray(clip.engine["color"][t], np.float32))
                                  if "color" in clip.engine else to_srgb8(np.zeros_like(img)))
            rows["recorded"].append(to_srgb8(np.asarray(clip.engine["final"][t], np.float32)))
            rows["model"].append(to_srgb8(img))
    scale = max(1, 128 // ds.height)  # small recordings are enlarged (nearest) so the labels leave room
    rows = {k: [im.repeat(scale, 0).repeat(scale, 1) for im in v] for k, v in rows.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    imageio.imwrite(path, contact_sheet(rows, list(range(n))))
    return path


def _frame(a) -> np.ndarray:
    a = np.asarray(a)
    return a.astype(np.int32) if a.dtype == np.uint16 else np.array(a)
