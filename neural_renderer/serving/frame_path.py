"""`FramePath`: a hourglass generator session's frames run as one `FrameProgram` (the whole per-frame device
work, from the staged channel bytes to the packed output) and, on CUDA once the KV cache is steady, as ONE
captured graph of it replayed per frame. The serving arms `frame-graph` and `frame-graph+fused` use it.

Per frame on the host, and nothing else: the events' state changes (the session's reset and look switch act
on the sampler as on the plain path), the camera's 4x4 algebra (a few microseconds of float64 on 4x4
matrices), packing the channels and the float vector (action, camera, history present) into the pinned
buffer, ONE copy up, the frame's noise drawn into the program's static buffers (the session's generator, the
plain path's order), the replay, ONE copy down. Until the cache is steady (the first sinks + window + 1
frames after a reset, whose cache advance differs frame to frame) the same program runs eagerly, as the
step-graph arms do; off CUDA it always runs eagerly.

A program is made per layout (frame size, the channels the frame carries, the output format) and kept with its
graph; a session's layout does not change from frame to frame, so it is captured once per session size. The
sampler's state (cache, prompt, previous output, noise stream) stays the sampler's: frames of the same session
may also run the plain way (a batch of sessions, neural_renderer.serving.batch) in between.
"""
from __future__ import annotations

import numpy as np
import torch

from bridge.channels import ACTION_DIM
from neural_renderer.model.world_position import camera_floats
from neural_renderer.serving.frame_program import FrameProgram, Layout

PROGRAMS = 4  # layouts kept per session (a client alternating channel sets is not a case worth more)


class _Entry:
    def __init__(self, program: FrameProgram, cache):
        self.program, self.cache, self.graph = program, cache, None


class FramePath:
    def __init__(self, sampler, io, size: tuple[int, int], world: bool, cuda_graph: bool):
        self.gen, self.io, self.size, self.world = sampler, io, size, world
        self.use_graph = cuda_graph and sampler.device.type == "cuda"
        self.entries: dict[tuple, _Entry] = {}
        self._no_camera = camera_floats(None)

    def _entry(self, layout: Layout, raw: torch.Tensor) -> _Entry:
        key = (layout, raw.data_ptr())
        e = self.entries.get(key)
        if e is not None and e.cache is self.gen.cache:
            return e
        if len(self.entries) >= PROGRAMS:
            self.entries.pop(next(iter(self.entries)))
        e = self.entries[key] = _Entry(FrameProgram(self.gen, layout, self.world), self.gen.cache)
        return e

    def _capture(self, prog: FrameProgram, raw: torch.Tensor):
        """The steady-state frame as one CUDA graph; what the warm-up writes into the session's state (cache,
        previous output) is put back, so capturing leaves the stream's state untouched."""
        c = self.gen.cache
        keep = [t.clone() for t in (c.k, c.v, c.valid, prog.prev)]
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm-up: allocator and lazy kernels settle outside the capture
            prog(raw, count=False)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            prog(raw, count=False)
        for dst, src in zip((c.k, c.v, c.valid, prog.prev), keep):
            dst.copy_(src)
        return graph

    def _noise(self, prog: FrameProgram, history: bool) -> None:
        """StreamingSampler.prepare's draws, in its order, into the program's buffers."""
        s = self.gen
        shape = prog.x.shape
        if history and s.cfg.history_noise > 0:
            torch.randn(shape, generator=s.rng, device=s.device, dtype=s.dtype, out=prog.hist_noise)
        if s.noise_mode == "fixed":
            if s.fixed_noise is None:
                s.fixed_noise = torch.randn(shape, generator=s.rng, device=s.device, dtype=s.dtype)
            prog.x.copy_(s.fixed_noise)
        else:
            torch.randn(shape, generator=s.rng, device=s.device, dtype=s.dtype, out=prog.x)

    @torch.no_grad()
    def render(self, pixels: dict[str, np.ndarray], constants, action: np.ndarray, out: np.ndarray) -> torch.Tensor:
        """One frame: `pixels` the channels (H, W, C) the frame carries, `constants` the camera (or None), `action`
        (ACTION_DIM,) float32 -> `out` (H, W, 3 | 4) uint8 or float16. Returns the static packed device output."""
        s = self.gen
        s.begin_frame(*self.size)
        history = s.use_history and "motion" in pixels and s.prev is not None
        camera = camera_floats(constants) if self.world and "depth" in pixels else self._no_camera
        vec = np.concatenate([np.asarray(action, np.float32).reshape(ACTION_DIM), camera, np.float32([history])])
        raw, offs, at = self.io.stage(pixels, vec)
        layout = Layout(self.size, tuple((k, a.dtype.name, tuple(a.shape), offs[k]) for k, a in pixels.items()), at,
                        int(out.shape[-1]), out.dtype.name)
        e = self._entry(layout, raw)
        prog = e.program
        if s.prev is not None and s.prev is not prog.prev:  # the last frame ran another way (or another layout)
            prog.prev.copy_(s.prev)
        self._noise(prog, history)
        if self.use_graph and s.use_context and s.cache.steady and e.graph is None:
            try:
                e.graph = self._capture(prog, raw)
            except RuntimeError as err:  # capture unsupported here: stay eager, say so once
                import warnings

                warnings.warn(f"CUDA graph capture of the frame failed, running eager: {err}")
                self.use_graph = False
        if e.graph is not None and s.use_context and s.cache.steady:
            e.graph.replay()
            s.cache.frames += 1
        else:
            prog(raw)
        s.finish(prog.prev)
        self.io.fetch(prog.out, out)
        return prog.out
