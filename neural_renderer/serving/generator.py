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
from neural_renderer.model.flow import add_noise, euler_step, schedule
from neural_renderer.model.kv_cache import KVCache
from neural_renderer.model.dit import CausalDiT


class Generator:
    def __init__(self, model: CausalDiT, prompt: torch.Tensor, steps: int | None = None, seed: int = 0,
                 batch: int = 1, use_context: bool = True, cuda_graph: bool | None = None, step=None):
        self.model = model.eval()
        # every forward of a run (denoising and cache writes) goes through one step implementation:
        # the model's own, or one from kernels.step_builder (whose cache layout is its own)
        self.forward = step or model.forward_frame
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
        self.use_graph = (self.device.type == "cuda") if cuda_graph is None else cuda_graph
        self.graph = None
        self.reset()

    def _prompt_batch(self, prompt: torch.Tensor) -> torch.Tensor:
        prompt = prompt.to(self.device, self.dtype).reshape(-1, prompt.shape[-1])
        return prompt.expand(self.batch, -1).clone()  # own storage: set_prompt writes into it in place

    def reset(self) -> None:
        """A cut in the game (client's reset flag): forget all context, restart the noise stream."""
        self.cache.reset()
        self.history.clear()
        self.sinks_kept: list = []
        self.rng.manual_seed(self.seed)

    @torch.no_grad()
    def set_prompt(self, prompt: torch.Tensor) -> None:
        """New prompt: re-encode the kept context frames under it (LongLive-style re-cache)."""
        self.prompt.copy_(self._prompt_batch(prompt))  # in place: a captured graph reads this buffer
        kept = list(self.sinks_kept) + [h for h in self.history if h[3] >= len(self.sinks_kept)]
        self.cache.reset()
        for x_ctx, cond, action, _n in sorted(kept, key=lambda h: h[3]):
            self._write(x_ctx, cond, action)

    def _write(self, x_ctx, cond, action) -> None:
        self.forward(x_ctx, cond, self.t_ctx, self.zero_d, action, self.prompt, self.cache)
        self.cache.advance()

    def _denoise_and_write(self, x, ctx_noise, cond, action, count: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """Device work of one frame: Euler steps, then the cache-write pass. Returns (x0, x_ctx)."""
        levels = schedule(self.steps)
        x0 = x
        for k in range(self.steps):
            x0 = self.forward(x, cond, self.t_levels[k], self.d, action, self.prompt, self.cache)
            x = euler_step(x, x0, levels[k], levels[k + 1])
        x0 = x0.clamp(-1.0, 1.0)
        x_ctx = add_noise(x0, ctx_noise, self.t_ctx)
        if self.use_context:
            self.forward(x_ctx, cond, self.t_ctx, self.zero_d, action, self.prompt, self.cache)
            self.cache.advance(count=count)
        return x0, x_ctx

    def _capture(self, shape) -> None:
        """Record the steady-state frame as one CUDA graph (static input/output buffers). The cache
        is snapshotted around the warm-up so capturing leaves the stream's state untouched."""
        self.g_in = [torch.zeros(shape, device=self.device, dtype=self.dtype) for _ in range(2)]
        self.g_cond = torch.zeros(self.batch, *self.cfg_cond_shape, device=self.device, dtype=self.dtype)
        self.g_action = torch.zeros(self.batch, ACTION_DIM, device=self.device, dtype=self.dtype)
        snap = (self.cache.k.clone(), self.cache.v.clone(), self.cache.valid.clone())
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            self._denoise_and_write(self.g_in[0], self.g_in[1], self.g_cond, self.g_action, count=False)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self.g_out = self._denoise_and_write(self.g_in[0], self.g_in[1], self.g_cond, self.g_action, count=False)
        for dst, src in zip((self.cache.k, self.cache.v, self.cache.valid), snap):
            dst.copy_(src)
        self.graph = graph

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
        n = self.cache.frames
        if self.use_graph and self.use_context and self.cache.steady:
            if self.graph is None:
                self.cfg_cond_shape = tuple(cond.shape[1:])
                try:
                    self._capture(shape)
                except RuntimeError as e:  # capture unsupported here: stay eager, say so once
                    import warnings

                    warnings.warn(f"CUDA graph capture failed, running eager: {e}")
                    self.use_graph = False
                    return self._eager_frame(x, ctx_noise, cond, action, n)
            self.g_in[0].copy_(x)
            self.g_in[1].copy_(ctx_noise)
            self.g_cond.copy_(cond)
            self.g_action.copy_(action)
            self.graph.replay()
            self.cache.frames += 1
            x0, x_ctx = self.g_out[0].clone(), self.g_out[1].clone()
        else:
            return self._eager_frame(x, ctx_noise, cond, action, n)
        self._remember(x_ctx, cond, action, n)
        return x0

    def _eager_frame(self, x, ctx_noise, cond, action, n) -> torch.Tensor:
        x0, x_ctx = self._denoise_and_write(x, ctx_noise, cond, action)
        self._remember(x_ctx, cond, action, n)
        return x0

    def _remember(self, x_ctx, cond, action, n) -> None:
        if self.use_context:
            entry = (x_ctx, cond, action, n)
            if n < self.cfg.sinks:
                self.sinks_kept.append(entry)
            self.history.append(entry)
