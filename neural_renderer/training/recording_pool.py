"""The pool a fine-tune samples from: the recording's clips (its `final` frames under the look's
prompt) and world clips of the built-in looks, in two on-device pools behind ClipPool's interface, a
batch holding round(B * look_share) recording clips."""
from __future__ import annotations

import numpy as np
import torch

from neural_renderer.data.recording import recording_clips
from neural_renderer.training.clip_sources import CLIP_CHANNELS, ClipBatch, ClipPool, clip_stream


class MixedPool:
    """Two ClipPools (world looks, the recorded look) behind ClipPool's add/sample/filled."""

    def __init__(self, capacity: int, length: int, resolution: int, world_styles: list[str], style_table: dict,
                 look: str, embedding: torch.Tensor, share: float, device=None, world: bool = False):
        if not 0.0 < share <= 1.0:
            raise ValueError(f"look share must be in (0, 1], got {share}")
        self.share = share
        n_look = max(1, round(capacity * share))
        n_world = capacity - n_look if share < 1.0 else 0
        self.look = ClipPool(n_look, length, resolution, [look], {look: embedding.reshape(1, -1)}, device=device,
                             world=world)
        self.world = (ClipPool(n_world, length, resolution, world_styles, style_table, device=device, world=world)
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

    def sample(self, batch: int, generator: torch.Generator, crop: int = 0) -> ClipBatch:
        n_look = batch if self.world is None else min(batch, max(1, round(batch * self.share)))
        parts = [self.look.sample(n_look, generator, crop=crop)]
        if n_look < batch:
            parts.append(self.world.sample(batch - n_look, generator, crop=crop))
        fields = ("cond", "target", "action", "prompt", "motion", "disocclusion")
        return ClipBatch(*(torch.cat([getattr(p, f) for p in parts]) for f in fields))


def mixed_pool(cfg, resolution: int, world_styles: list[str], style_table: dict, device, rank: int,
               world: bool = False):
    """The train loop's hook: (pool, stream) for a TrainConfig with `recording` set; `world`: the model
    reads the world group."""
    (look, emb), = cfg.looks.items()
    pool = MixedPool(cfg.pool, cfg.clip_len, resolution, world_styles, style_table, look,
                     torch.tensor(emb, dtype=torch.float32), cfg.look_share, device=device, world=world)
    seed = cfg.seed * 7919 + rank * 104729
    rec = recording_clips(cfg.recording, cfg.clip_len, CLIP_CHANNELS, seed=seed)
    world = clip_stream(cfg, resolution, world_styles, rank) if pool.world is not None else None
    rng = np.random.default_rng(seed)

    def stream():
        while True:
            if pool.wants_look(rng):
                yield True, next(rec)
            else:
                clip = next(world)
                yield None if clip is None else (False, clip)  # None: a parallel renderer has nothing ready

    return pool, stream()
