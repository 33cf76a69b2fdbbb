"""`BatchStepper`: frames of several sessions run as ONE batched forward of the hourglass generator, each
session keeping its own KV cache, reprojected history, prompt and noise stream.

Which frames share a batch (`batch_key`): those whose samplers, after `StreamingSampler.prepare`, do the same
per-element device work: same frame size, same step count, same context setting and the same cache phase
(the frame counter capped at the steady state, which fixes the validity mask and whether `advance()` fills
a sink). The mask and the sink copy are one per cache, not one per batch row, so sessions in their first
S + W + 1 frames batch only with sessions at the same frame; from then on every session batches with every
other of its size, whatever its history.

How a batch runs: each session prepares its frame exactly as it would alone (its own rng draws the history
noise and the frame's noise, in the same order), the inputs are concatenated along the batch, the sessions'
caches are copied into one batched cache, the `steps` forwards and the cache advance run once for all rows,
and each row's cache and output go back to its session. Nothing in a row depends on another row (convs,
norms and attention are per sample), so each session gets the output it would get alone, up to the float
rounding of a different matmul shape. On CUDA the steady-state batch of each (size, steps, rows) is one
captured graph over static buffers, as the single-session sampler's frame is.

The copies cost two passes over each session's cache per frame (a few tens of microseconds on a GPU at
512x512) against a forward per session saved.
"""
from __future__ import annotations

import torch

from neural_renderer.model.flow import euler_step, schedule
from neural_renderer.model.kv_cache import KVCache
from neural_renderer.serving.stream import StreamingSampler


def batch_key(s: StreamingSampler) -> tuple:
    """Samplers (prepared for their next frame) with equal keys may run that frame as one batch."""
    c = s.cache
    # refresh_due: a frame whose sinks were just refreshed has its own mask (KVCache.refresh_sink)
    return (s.size, s.steps, s.use_context, s.forward, min(c.frames, len(c.valid_table) - 1), c.refresh_due)


class _Graph:
    """One captured steady-state batch: static inputs, the batched cache it reads and writes, its output."""

    def __init__(self, stepper: "BatchStepper", cache: KVCache, inputs: list[torch.Tensor], steps: int):
        self.inputs = [a.clone() for a in inputs]
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm-up: allocator and lazy kernels settle outside the capture
            stepper._denoise(cache, *self.inputs, steps=steps, count=False)
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.out = stepper._denoise(cache, *self.inputs, steps=steps, count=False)
        # the warm-up wrote into the cache: harmless, BatchStepper.run copies the sessions' caches in after


class BatchStepper:
    def __init__(self, model, forward, cuda_graph: bool):
        self.model, self.forward = model, forward
        p = next(model.parameters())
        self.device, self.dtype = p.device, p.dtype
        self.use_graph = cuda_graph and self.device.type == "cuda"
        self._caches: dict[tuple, KVCache] = {}  # (H, W, rows) -> the batched cache
        self._graphs: dict[tuple, _Graph] = {}  # (H, W, steps, rows) -> captured steady-state batch
        self._levels: dict[tuple, tuple] = {}  # (steps, rows, shortcut d, h) -> (t per step, d, h)

    def _cache(self, size: tuple[int, int], rows: int) -> KVCache:
        key = (*size, rows)
        if key not in self._caches:
            c = self.model.cfg
            self._caches[key] = KVCache(c.depth, rows, c.heads, self.model.tokens_for(*size), c.window, c.sinks,
                                        device=self.device, dtype=self.dtype)
        return self._caches[key]

    def _scalars(self, s: StreamingSampler, rows: int) -> tuple:
        key = (s.steps, rows)
        if key not in self._levels:
            self._levels[key] = ([torch.full((rows,), t, device=self.device) for t in schedule(s.steps)],
                                 s.d[:1].expand(rows).clone(), s.h[:1].expand(rows).clone())
        return self._levels[key]

    def _denoise(self, cache, x, cond, hist, action, prompt, steps: int, count: bool = True, use_context: bool = True):
        """StreamingSampler._denoise over the batch (the same forwards, the same Euler updates)."""
        t_levels, d, h = self._levels[(steps, x.shape[0])]
        levels = schedule(steps)
        x0 = x
        for k in range(steps):
            x0 = self.forward(x, cond, hist, t_levels[k], d, h, action, prompt, cache)
            x = euler_step(x, x0, levels[k], levels[k + 1])
        if use_context:
            cache.advance(count=count)
        return x0.clamp(-1.0, 1.0)

    @torch.no_grad()
    def run(self, samplers: list[StreamingSampler], prepared: list[tuple]) -> list[torch.Tensor]:
        """Samplers of one `batch_key`, each with its `prepare()`d (x, cond, hist, action) -> each one's
        output frame (1, 3, H, W), as its own `step()` would return it."""
        s0, rows = samplers[0], len(samplers)
        size = s0.size
        x, cond, hist, action = (torch.cat(parts) for parts in zip(*prepared))
        prompt = torch.cat([s.prompt for s in samplers])
        self._scalars(s0, rows)
        cache = self._cache(size, rows)
        cache.frames = s0.cache.frames  # the host counter decides the advance a capture records
        inputs = [x, cond, hist, action, prompt]
        key = (*size, s0.steps, rows)
        graphed = self.use_graph and s0.use_context and s0.cache.steady
        if graphed and key not in self._graphs:  # before the rows go in: the capture's warm-up writes the cache
            self._graphs[key] = _Graph(self, cache, inputs, s0.steps)
        for i, s in enumerate(samplers):  # rows are the sessions' own caches, in batch order
            cache.k[:, i:i + 1].copy_(s.cache.k)
            cache.v[:, i:i + 1].copy_(s.cache.v)
        cache.valid.copy_(s0.cache.valid)
        if graphed:
            g = self._graphs[key]
            for dst, src in zip(g.inputs, inputs):
                dst.copy_(src)
            g.graph.replay()
            cache.frames += 1
            out = g.out.clone()  # the static output is overwritten by the next replay
        else:
            out = self._denoise(cache, *inputs, steps=s0.steps, use_context=s0.use_context)
        for i, s in enumerate(samplers):
            s.cache.k.copy_(cache.k[:, i:i + 1])
            s.cache.v.copy_(cache.v[:, i:i + 1])
            s.cache.valid.copy_(cache.valid)
            s.cache.frames = cache.frames
        return [s.finish(out[i:i + 1]) for i, s in enumerate(samplers)]
