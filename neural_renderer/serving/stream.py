"""`StreamingSampler`: the hourglass generator's per-session sampler. `step()` turns one frame of engine
conditioning, motion and action into one output frame at the frame's own size.

Per frame:
1. the history: the previous output (noised at `history_noise`, a level the model is told) reprojected
   with this frame's motion vectors and disocclusion; absent after a reset, a prompt change, a size
   change, or when the client sends no motion vectors;
2. `steps` Euler steps from noise (each a forward of the current frame's tokens against the KV cache);
3. `cache.advance()`: the K/V the last step wrote stay as context, so a frame costs exactly `steps`
   forwards. With `cfg.sink_every = N` the sinks are refreshed every N frames (`KVCache.refresh_sink()`, run by
   `prepare()` before the forwards, outside the captured graph).
Noise comes from a seeded generator: a run is deterministic by seed. `noise="fixed"` draws one noise
field after each reset and reuses it (the ablation arm that tells context from noise apart).
Steady-state frames on CUDA replay one captured graph; nothing reads a tensor back to the host.
"""
from __future__ import annotations

import torch

from bridge.channels import ACTION_DIM
from neural_renderer.model.flow import add_noise, euler_step, schedule
from neural_renderer.model.history import absent_history, history_planes, reproject
from neural_renderer.model.kv_cache import KVCache


class StreamingSampler:
    def __init__(self, model, prompt: torch.Tensor, steps: int | None = None, seed: int = 0, batch: int = 1,
                 use_context: bool = True, use_history: bool = True, noise: str = "fresh",
                 cuda_graph: bool | None = None, forward=None):
        if noise not in ("fresh", "fixed"):
            raise ValueError(f"noise must be 'fresh' or 'fixed', got {noise!r}")
        self.model = model.eval()
        # every forward of a run goes through one step implementation: the model's own, or a serving arm's
        # (neural_renderer.serving.arms), whose cache layout may be its own
        self.forward = forward or model.forward_frame
        p = next(model.parameters())
        self.device, self.dtype = p.device, p.dtype
        self.cfg = model.cfg
        self.steps = int(steps or self.cfg.steps)
        self.batch, self.seed = batch, seed
        self.use_context, self.use_history, self.noise_mode = use_context, use_history, noise
        self.prompt = prompt.to(self.device, self.dtype).reshape(-1, prompt.shape[-1]).expand(batch, -1).clone()
        self.d = torch.full((batch,), 1.0 / self.steps if self.cfg.shortcut else 0.0, device=self.device)
        self.t_levels = [torch.full((batch,), t, device=self.device) for t in schedule(self.steps)]
        self.h = torch.full((batch,), float(self.cfg.history_noise), device=self.device)
        self.rng = torch.Generator(device=self.device)
        self.use_graph = (self.device.type == "cuda") if cuda_graph is None else cuda_graph
        self.size: tuple[int, int] | None = None
        self.cache: KVCache | None = None
        self.graph = None
        self.prev: torch.Tensor | None = None  # (B, 3, H, W) the last output, in [-1, 1]
        self.fixed_noise: torch.Tensor | None = None
        self.frames = 0

    # -- state ---------------------------------------------------------------------------------

    def reset(self) -> None:
        """A cut in the game (client's reset flag): forget context and history, restart the noise stream."""
        if self.cache is not None:
            self.cache.reset()
        self.prev = None
        self.fixed_noise = None
        self.rng.manual_seed(self.seed)
        self.frames = 0

    @torch.no_grad()
    def set_prompt(self, prompt: torch.Tensor) -> None:
        """A new look: the old look's frames would pull the output back, so context and history go."""
        self.prompt.copy_(prompt.to(self.device, self.dtype).reshape(-1, prompt.shape[-1]).expand(self.batch, -1))
        if self.cache is not None:
            self.cache.reset()
        self.prev = None

    def _resize(self, height: int, width: int) -> None:
        c = self.cfg
        self.cache = KVCache(c.depth, self.batch, c.heads, self.model.tokens_for(height, width), c.window, c.sinks,
                             device=self.device, dtype=self.dtype, sink_every=int(c.sink_every), use_sinks=bool(c.use_sinks))
        self.size, self.graph, self.prev, self.fixed_noise = (height, width), None, None, None

    # -- one frame -------------------------------------------------------------------------------

    def _history(self, motion, disocclusion, height: int, width: int) -> torch.Tensor:
        if not self.use_history or self.prev is None or motion is None:
            return absent_history(self.batch, height=height, width=width, device=self.device, dtype=self.dtype)
        prev = self.prev
        if self.cfg.history_noise > 0:
            prev = add_noise(prev, torch.randn(prev.shape, generator=self.rng, device=self.device, dtype=self.dtype), self.h)
        warped, valid = reproject(prev, motion.to(self.device, self.dtype),
                                  None if disocclusion is None else disocclusion.to(self.device, self.dtype))
        return history_planes(warped, valid, 1.0)

    def _denoise(self, x, cond, hist, action, count: bool = True) -> torch.Tensor:
        levels = schedule(self.steps)
        x0 = x
        for k in range(self.steps):
            x0 = self.forward(x, cond, hist, self.t_levels[k], self.d, self.h, action, self.prompt, self.cache)
            x = euler_step(x, x0, levels[k], levels[k + 1])
        if self.use_context:
            self.cache.advance(count=count)
        return x0.clamp(-1.0, 1.0)

    def _capture(self, x, cond, hist, action) -> None:
        """Record the steady-state frame as one CUDA graph; the cache is snapshotted around the warm-up
        so capturing leaves the stream's state untouched."""
        self.g_in = [a.clone() for a in (x, cond, hist, action)]
        snap = (self.cache.k.clone(), self.cache.v.clone(), self.cache.valid.clone())
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            self._denoise(*self.g_in, count=False)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self.g_out = self._denoise(*self.g_in, count=False)
        for dst, src in zip((self.cache.k, self.cache.v, self.cache.valid), snap):
            dst.copy_(src)
        self.graph = graph

    def begin_frame(self, height: int, width: int) -> None:
        """The cache state a frame of this size starts from: a new size resets the run, the per-frame ablation
        clears the cache, and `sink_every` refreshes the sinks when due (outside any captured graph)."""
        if self.size != (height, width):
            self._resize(height, width)
            self.reset()
        if not self.use_context:
            self.cache.reset()
        else:
            self.cache.maybe_refresh()

    @torch.no_grad()
    def prepare(self, cond: torch.Tensor, action: torch.Tensor | None = None, motion: torch.Tensor | None = None,
                disocclusion: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        """Everything of a frame before its forwards: size and cache state, history, this frame's noise
        (drawn from this session's own stream, in the same order whether the frame then runs alone or in a
        batch with other sessions: neural_renderer.serving.batch). Returns (x, cond, hist, action)."""
        H, W = cond.shape[-2:]
        self.begin_frame(H, W)
        if action is None:
            action = torch.zeros(self.batch, ACTION_DIM, device=self.device)
        cond = cond.to(self.device, self.dtype)
        action = action.to(self.device, self.dtype)
        hist = self._history(motion, disocclusion, H, W)
        shape = (self.batch, 3, H, W)
        if self.noise_mode == "fixed":
            if self.fixed_noise is None:
                self.fixed_noise = torch.randn(shape, generator=self.rng, device=self.device, dtype=self.dtype)
            x = self.fixed_noise
        else:
            x = torch.randn(shape, generator=self.rng, device=self.device, dtype=self.dtype)
        return x, cond, hist, action

    def finish(self, out: torch.Tensor) -> torch.Tensor:
        """The frame's output becomes the next frame's history."""
        self.prev = out
        self.frames += 1
        return out

    @torch.no_grad()
    def step(self, cond: torch.Tensor, action: torch.Tensor | None = None, motion: torch.Tensor | None = None,
             disocclusion: torch.Tensor | None = None) -> torch.Tensor:
        """cond (B, COND_CHANNELS, H, W), action (B, ACTION_DIM), motion (B, 2, H, W) pixels or None,
        disocclusion (B, 1, H, W) or None -> frame (B, 3, H, W) in [-1, 1]."""
        return self.run(*self.prepare(cond, action, motion, disocclusion))

    @torch.no_grad()
    def run(self, x: torch.Tensor, cond: torch.Tensor, hist: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """The forwards of a prepared frame, this session alone (its own graph once steady on CUDA)."""
        if self.use_graph and self.use_context and self.cache.steady:
            if self.graph is None:
                try:
                    self._capture(x, cond, hist, action)
                except RuntimeError as e:  # capture unsupported here: stay eager, say so once
                    import warnings

                    warnings.warn(f"CUDA graph capture failed, running eager: {e}")
                    self.use_graph = False
            if self.graph is not None:
                for dst, src in zip(self.g_in, (x, cond, hist, action)):
                    dst.copy_(src)
                self.graph.replay()
                self.cache.frames += 1
                return self.finish(self.g_out.clone())
        return self.finish(self._denoise(x, cond, hist, action))
