"""`FrameProgram`: the whole per-frame device work of a hourglass generator session as one function of the
staged input bytes and static device buffers, so that on CUDA it can be captured as ONE graph per session
layout and replayed per frame (neural_renderer.serving.frame_path drives it).

From the bytes FrameIO copied up in one copy (every channel in its wire dtype, a float32 vector behind
them) to the packed output image, in the plain path's order and arithmetic:
  channel normalisation into the conditioning planes, the world group's planes (from depth and the camera
  in the vector), the reprojected history of the previous output (noised at the history level), the
  `steps` denoising forwards against the KV cache, the cache advance, the output's conversion and packing;
  the output is also kept, in place, as the next frame's history.
What differs from the plain path is only where values come from, never what is computed:
- the conditioning is written straight into a buffer of the compute dtype: an fp32 plane written into a
  bf16 buffer rounds exactly as the plain path's fp32 tensor cast to bf16 does;
- what varies per frame without changing shapes lives in the vector (action, camera, whether the history
  is present): an absent camera is an unusable one (every pixel invalid: the world planes and their flag
  are 0, as without constants) and an absent history is the present flag 0 (every history plane 0, as
  `absent_history`); what changes shapes or which channels exist (frame size, declared channels, output
  format) makes another program;
- the frame's noise is drawn by the caller into `x` and `hist_noise` before the program runs, from the
  session's own generator in the plain path's order, so a run is the same frame for frame.
Nothing here reads a device value back to the host or copies from the host.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from bridge.channels import ACTION_DIM
from neural_renderer.model.flow import add_noise
from neural_renderer.model.history import HISTORY_PLANES, history_planes, reproject
from neural_renderer.model.inputs import (COND_CHANNELS, CONDITIONING_GROUPS, GROUP_FLAG, INPUT_CHANNELS, PLANES,
                                          normalise_channel, world_features, world_periods)
from neural_renderer.model.world_position import CAMERA_FLOATS, positions
from neural_renderer.serving.staging import channel_view

VECTOR = ACTION_DIM + CAMERA_FLOATS + 1  # action | camera | history present: the float32 vector behind the channels
CAMERA_AT = ACTION_DIM
PRESENT_AT = ACTION_DIM + CAMERA_FLOATS


@dataclass(frozen=True)
class Layout:
    """What fixes a program's shapes: the frame size, each staged channel (name, wire dtype, shape, byte offset),
    the vector's byte offset, the output image (channels, dtype)."""
    size: tuple[int, int]
    channels: tuple[tuple[str, str, tuple[int, ...], int], ...]
    vector_at: int
    out_channels: int
    out_dtype: str

    def has(self, name: str) -> bool:
        return any(c[0] == name for c in self.channels)


class FrameProgram:
    def __init__(self, sampler, layout: Layout, world: bool):
        """`sampler` (StreamingSampler) holds the session's state the program reads and writes in place: KV
        cache, prompt, noise levels. `world`: the model reads the world group (then computed when depth is sent)."""
        s = self.sampler = sampler
        self.layout = layout
        H, W = layout.size
        dev, dt = s.device, s.dtype
        self.world = world and layout.has("depth")
        self.history = s.use_history and layout.has("motion")
        self.cond = torch.zeros(1, COND_CHANNELS, H, W, device=dev, dtype=dt)
        for g, chans in CONDITIONING_GROUPS.items():  # which groups are sent is the layout's: set once
            if any(layout.has(c) for c in chans if c in INPUT_CHANNELS):
                self.cond[0, GROUP_FLAG[g]] = 1.0
        self.x = torch.zeros(1, 3, H, W, device=dev, dtype=dt)  # this frame's noise (the caller draws it)
        self.hist_noise = torch.zeros(1, 3, H, W, device=dev, dtype=dt)  # the history's noise (likewise)
        self.prev = torch.zeros(1, 3, H, W, device=dev, dtype=dt)  # the last output: the next frame's history
        self.absent = torch.zeros(1, HISTORY_PLANES, H, W, device=dev, dtype=dt)
        self.periods = world_periods(dev)
        out_dtype = torch.uint8 if layout.out_dtype == "uint8" else torch.float16
        self.out = torch.empty(H, W, layout.out_channels, device=dev, dtype=out_dtype)
        if layout.out_channels == 4:
            self.out[..., 3] = 255 if out_dtype == torch.uint8 else 1.0

    # -- the pieces, each the plain path's --------------------------------------------------------

    def _views(self, raw: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        at = self.layout.vector_at
        chans = {name: channel_view(raw, off, wire, shape) for name, wire, shape, off in self.layout.channels}
        return chans, raw[at:at + 4 * VECTOR].view(torch.float32)

    def _conditioning(self, chans: dict[str, torch.Tensor], vec: torch.Tensor) -> torch.Tensor:
        """GeneratorSession's conditioning (inputs.engine_to_cond) into the static buffer."""
        for name, a in chans.items():
            if name in INPUT_CHANNELS:
                first, n = PLANES[name]
                self.cond[0, first:first + n] = normalise_channel(name, a)
        if self.world:
            d = chans["depth"].float()[..., 0]
            cam = vec[CAMERA_AT:PRESENT_AT]
            xyz, valid, known = positions(d, cam[:16].view(4, 4), cam[16:32].view(4, 4), cam[32], cam[33])
            first, n = PLANES["world"]
            self.cond[0, first:first + n] = world_features(xyz, valid, self.periods)
            self.cond[0, GROUP_FLAG["world"]] = known.float()
        return self.cond

    def _history(self, chans: dict[str, torch.Tensor], vec: torch.Tensor) -> torch.Tensor:
        """GeneratorSession._motion + StreamingSampler._history, the presence a device value."""
        if not self.history:
            return self.absent
        H, W = self.layout.size
        s = self.sampler
        motion = torch.nan_to_num(chans["motion"].float().permute(2, 0, 1)[None], nan=0.0, posinf=0.0, neginf=0.0)
        dis = chans.get("disocclusion")
        dis = None if dis is None else dis.float().reshape(1, 1, H, W).to(s.dtype)
        prev = self.prev
        if s.cfg.history_noise > 0:
            prev = add_noise(prev, self.hist_noise, s.h)
        warped, valid = reproject(prev, motion.to(s.dtype), dis)
        return history_planes(warped, valid, vec[PRESENT_AT:PRESENT_AT + 1])

    def _pack(self, y: torch.Tensor) -> None:
        """staging.pack into the static output (its alpha, when it has one, was filled once)."""
        img = ((y[0].float() + 1.0) * 0.5).clamp_(0.0, 1.0)
        img = (img * 255.0 + 0.5).to(torch.uint8) if self.out.dtype == torch.uint8 else img.to(torch.float16)
        self.out[..., :3] = img.permute(1, 2, 0)

    # -- the frame ---------------------------------------------------------------------------------

    @torch.no_grad()
    def __call__(self, raw: torch.Tensor, count: bool = True) -> torch.Tensor:
        """One frame from the staged bytes `raw` -> the packed output (the static `out`). count=False: inside a
        captured graph, where the caller counts the cache's frames."""
        s = self.sampler
        chans, vec = self._views(raw)
        cond = self._conditioning(chans, vec)
        hist = self._history(chans, vec)
        action = vec[:ACTION_DIM].to(s.dtype)[None]
        y = s._denoise(self.x, cond, hist, action, count=count)
        self.prev.copy_(y)
        self._pack(y)
        return self.out

