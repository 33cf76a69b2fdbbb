"""`PlainFrame`: the plain per-frame path of a hourglass generator session, eager, step by step: one upload
(FrameIO), the conditioning (inputs.engine_to_cond, world group from depth and the camera constants), the
motion, the sampler's frame (history, noise, `steps` forwards through the serving arm, cache advance), the
output's packing and one download. The reference every other way of running a frame is checked against
(neural_renderer.serving.frame_path)."""
from __future__ import annotations

import numpy as np
import torch

from neural_renderer.model.inputs import COND_CHANNELS, INPUT_CHANNELS, engine_to_cond


class PlainFrame:
    def __init__(self, sampler, io, size: tuple[int, int], world: bool):
        """`world`: the model reads the world group (then computed from depth and the frame's constants)."""
        self.gen, self.io, self.size, self.world = sampler, io, size, world

    def _cond(self, chans: dict[str, torch.Tensor], constants) -> torch.Tensor:
        ours = {k: v for k, v in chans.items() if k in INPUT_CHANNELS}
        if not ours:
            return torch.zeros(1, COND_CHANNELS, *self.size, device=self.gen.device)
        return engine_to_cond(ours, constants=constants if self.world else None)[None]

    def _motion(self, chans: dict[str, torch.Tensor]) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """(1, 2, H, W) motion in pixels and (1, 1, H, W) disocclusion, or None where not sent."""
        if "motion" not in chans:
            return None, None
        mv = torch.nan_to_num(chans["motion"].float().permute(2, 0, 1)[None], nan=0.0, posinf=0.0, neginf=0.0)
        dis = chans.get("disocclusion")
        return mv, None if dis is None else dis.float().reshape(1, 1, *self.size)

    def prepare(self, pixels: dict[str, np.ndarray], constants, action: np.ndarray) -> tuple:
        """Upload, conditioning and the sampler's preparation -> what `StreamingSampler.run` takes."""
        chans, action_d = self.io.upload(pixels, action)
        return self.gen.prepare(self._cond(chans, constants), action_d[None], *self._motion(chans))

    def emit(self, y: torch.Tensor, out: np.ndarray) -> None:
        self.io.download(y, out)

    def render(self, pixels: dict[str, np.ndarray], constants, action: np.ndarray, out: np.ndarray) -> None:
        self.emit(self.gen.run(*self.prepare(pixels, constants, action)), out)
