"""`Generator`: the streaming sampler. One instance per client session; `step()` turns one frame of
engine conditioning + action into one output frame, keeping the KV cache of earlier frames.

Per frame: `steps` Euler steps from pure noise (each a forward of the current frame's tokens against
the cache), then one cache-write pass of the result re-noised at the context level the model was
trained with (`cfg.context_noise`), then `KVCache.advance()`. Noise comes from a seeded
`torch.Generator`, so a run is deterministic by seed. Nothing in `step()` reads a tensor back to the
host. A prompt change re-caches: the kept context frames are re-encoded under the new prompt.
"""
from __future__ import annotations

from collections import deque

import torch

from bridge.channels import ACTION_DIM
from neural_renderer.flow import add_noise, euler_step, schedule
from neural_renderer.kv_cache import KVCache
from neural_renderer.model import CausalDiT


class Generator:
    def __init__(self, model: CausalDiT, prompt: torch.Tensor, steps: int | None = None, seed: int = 0,
                 batch: int = 1, use_context: bool = True):
        self.model = model.eval()
        p = next(model.parameters())
        self.device, self.dtype = p.device, p.dtype
        self.cfg = model.cfg
        self.steps = int(steps or self.cfg.steps)
        self.batch = batch
        self.seed = seed
        self.use_context = use_context  # False = the per-frame ablation (same weights, no context)
        self.cache = KVCache.for_model(model, batch, device=self.device, dtype=self.dtype)
        self.rng = torch.Generator(device=self.device)
        self.prompt = self._prompt_batch(prompt)
        self.d = torch.full((batch,), 1.0 / self.steps if self.cfg.shortcut else 0.0, device=self.device)
        self.t_levels = [torch.full((batch,), t, device=self.device) for t in schedule(self.steps)]
        self.t_ctx = torch.full((batch,), self.cfg.context_noise, device=self.device)
        self.zero_d = torch.zeros(batch, device=self.device)
        self.history: deque = deque(maxlen=max(self.cfg.window, 1))  # window frames, for re-caching
        self.reset()

    def _prompt_batch(self, prompt: torch.Tensor) -> torch.Tensor:
        prompt = prompt.to(self.device, self.dtype).reshape(-1, prompt.shape[-1])
        return prompt.expand(self.batch, -1).contiguous()

    def reset(self) -> None:
        """A cut in the game (client's reset flag): forget all context, restart the noise stream."""
        self.cache.reset()
        self.history.clear()
        self.sinks_kept: list = []
        self.rng.manual_seed(self.seed)

    @torch.no_grad()
    def set_prompt(self, prompt: torch.Tensor) -> None:
        """New prompt: re-encode the kept context frames under it (LongLive-style re-cache)."""
        self.prompt = self._prompt_batch(prompt)
        kept = list(self.sinks_kept) + [h for h in self.history if h[3] >= len(self.sinks_kept)]
        self.cache.reset()
        for x_ctx, cond, action, _n in sorted(kept, key=lambda h: h[3]):
            self._write(x_ctx, cond, action)

    def _write(self, x_ctx, cond, action) -> None:
        self.model.forward_frame(x_ctx, cond, self.t_ctx, self.zero_d, action, self.prompt, self.cache)
        self.cache.advance()

    @torch.no_grad()
    def step(self, cond: torch.Tensor, action: torch.Tensor | None = None) -> torch.Tensor:
        """cond (B, COND_CHANNELS, R, R), action (B, ACTION_DIM) -> frame (B, 3, R, R) in [-1, 1]."""
        if action is None:
            action = torch.zeros(self.batch, ACTION_DIM, device=self.device)
        cond = cond.to(self.device, self.dtype)
        action = action.to(self.device, self.dtype)
        if not self.use_context:
            self.cache.reset()
        shape = (self.batch, 3, self.cfg.resolution, self.cfg.resolution)
        x = torch.randn(shape, generator=self.rng, device=self.device, dtype=self.dtype)
        ctx_noise = torch.randn(shape, generator=self.rng, device=self.device, dtype=self.dtype)
        levels = schedule(self.steps)
        x0 = x
        for k in range(self.steps):
            x0 = self.model.forward_frame(x, cond, self.t_levels[k], self.d, action, self.prompt, self.cache)
            x = euler_step(x, x0, levels[k], levels[k + 1])
        x0 = x0.clamp(-1.0, 1.0)
        if self.use_context:
            x_ctx = add_noise(x0, ctx_noise, self.t_ctx)
            n = self.cache.frames
            self._write(x_ctx, cond, action)
            entry = (x_ctx, cond, action, n)
            if n < self.cfg.sinks:
                self.sinks_kept.append(entry)
            self.history.append(entry)
        return x0
