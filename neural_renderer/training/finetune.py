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

from neural_renderer.clip_sources import GENERATOR_CHANNELS, ClipBatch, ClipPool
from neural_renderer.data.recording import held_out, look_name, open_recording, recording_clips

# The smallest share that reached the recorded look's plateau while costing the built-in looks 1.8 dB (a share
# of 1.0 lost them: -20.6 dB); benchmarks/RESULTS.md, "How much of each batch should be the recording".
DEFAULT_LOOK_SHARE = 0.5


def look_embedding(name: str) -> list[float]:
    from neural_renderer.prompts import encode_prompt

    return [float(x) for x in encode_prompt(name).reshape(-1)]


class MixedPool:
    """Two ClipPools (world looks, the recorded look) behind ClipPool's add/sample/filled."""

    def __init__(self, capacity: int, length: int, resolution: int, world_styles: list[str], style_table: dict,
                 look: str, embedding: torch.Tensor, share: float, device=None):
        if not 0.0 < share <= 1.0:
            raise ValueError(f"look share must be in (0, 1], got {share}")
        self.share = share
        n_look = max(1, round(capacity * share))
        n_world = capacity - n_look if share < 1.0 else 0
        self.look = ClipPool(n_look, length, resolution, [look], {look: embedding.reshape(1, -1)}, device=device)
        self.world = (ClipPool(n_world, length, resolution, world_styles, style_table, device=device)
                      if n_world else None)
        self.capacity = n_look + n_world

    @property
    def filled(self) -> int:
        return self.look.filled + (self.world.filled if self.world else 0)

    def wants_look(self, rng: np.random.Generator) -> bool:
        """Which source the next clip comes from: fill both pools, then refresh them in proportion."""
        if self.look.filled < self.look.capacity:
            return True
        if self.world is not None and self.world.filled < self.world.capacity:
            return False
        return self.world is None or bool(rng.random() < self.share)

    def add(self, tagged) -> None:
        is_look, clip = tagged
        (self.look if is_look else self.world).add(clip)

    def sample(self, batch: int, generator: torch.Generator) -> ClipBatch:
        n_look = batch if self.world is None else min(batch, max(1, round(batch * self.share)))
        parts = [self.look.sample(n_look, generator)]
        if n_look < batch:
            parts.append(self.world.sample(batch - n_look, generator))
        return ClipBatch(*(torch.cat([getattr(p, f) for p in parts]) for f in ("cond", "target", "action", "prompt")))


def mixed_pool(cfg, resolution: int, world_styles: list[str], style_table: dict, device, rank: int):
    """The train loop's hook: (pool, stream) for a TrainConfig with `recording` set."""
    from neural_renderer.train import clip_stream

    (look, emb), = cfg.looks.items()
    pool = MixedPool(cfg.pool, cfg.clip_len, resolution, world_styles, style_table, look,
                     torch.tensor(emb, dtype=torch.float32), cfg.look_share, device=device)
    seed = cfg.seed * 7919 + rank * 104729
    rec = recording_clips(cfg.recording, cfg.clip_len, GENERATOR_CHANNELS, seed=seed)
    world = clip_stream(cfg, resolution, world_styles, rank) if pool.world is not None else None
    rng = np.random.default_rng(seed)

    def stream():
        while True:
            if pool.wants_look(rng):
                yield True, next(rec)
            else:
                yield False, next(world)

    return pool, stream()


def finetune(data: str, look: str | None, *, init: str, model: str | None = None, out: str, steps: int,
             look_share: float = DEFAULT_LOOK_SHARE, mix: str = "world", progress: bool = True, **train_kw) -> dict:
    """Fine-tune `init` on the recording `data` under the prompt `look` (default: the recording's name)."""
    from neural_renderer.checkpoint import resolve
    from neural_renderer.train import TrainConfig, train

    if not 0.0 < look_share <= 1.0:  # before the text encoder loads
        raise ValueError(f"look share must be in (0, 1], got {look_share}")
    ds = open_recording(data)
    look = look or look_name(ds)
    init = init.removeprefix("generator:")
    init_json = resolve(init)
    base_model = json.loads(init_json.read_text())["config"]["name"]
    if model is not None and model != base_model:
        raise ValueError(f"--model {model} but --init {init} is a {base_model} checkpoint")
    cfg = TrainConfig(model=base_model, out=out, steps=steps, source=mix, init=str(init_json),
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

    from demos.present import contact_sheet, to_srgb8
    from neural_renderer.backend import register_checkpoint_looks
    from neural_renderer.checkpoint import load_model
    from neural_renderer.engine_inputs import engine_to_cond
    from neural_renderer.generator import Generator
    from neural_renderer.prompts import lookup

    register_checkpoint_looks(checkpoint)
    m = load_model(checkpoint)
    k = (held_out(len(ds)) or [0])[0]
    n = min(frames, ds.sequences[k].frames)
    clip = ds.clip(k, 0, n)
    chans = [c for c in GENERATOR_CHANNELS if c in ds.channels]
    gen = Generator(m, lookup(look), seed=0)
    rows = {"engine": [], "recorded": [], "model": []}
    with torch.no_grad():
        for t in range(n):
            if t and clip.reset[t]:
                gen.reset()
            cond = engine_to_cond({c: torch.from_numpy(_frame(clip.engine[c][t])) for c in chans},
                                  resolution=m.cfg.resolution)[None]
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
