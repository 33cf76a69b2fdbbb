"""`CPUStep`: the hourglass generator's denoising step the way a CPU runs it fastest, computing what the model's
own `forward_frame` computes up to float rounding.

What it does differently (each measured by benchmarks/cpu_frame_profile.py):
- Once per frame instead of once per step: the stem is a linear map of its concatenated input planes, so
  its convolution splits exactly into the noisy-RGB columns and the rest (engine conditioning, material
  embedding, history, world planes); the rest does not change between the denoising steps of a frame and
  is convolved once. The same holds for the conditioning vector's terms other than the noise level t.
  A step is known to belong to the frame before it by its inputs: the same tensors (by identity) at the
  same version (no in-place write since).
- The convolutions run in channels-last (oneDNN's direct NHWC kernels are faster on CPU than NCHW).
- Attention reads only the cache slots that hold a frame, without a mask: in the steady state every slot
  is filled and the mask is all true; before it the filled slots are sliced out (a masked key has zero
  weight, so leaving it out is the same softmax).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from neural_renderer.model.dit import apply_temporal_rope


class CPUStep:
    """`HourglassGenerator.forward_frame`'s contract. Converts `model` in place to channels-last."""

    def __init__(self, model):
        self.model = model.to(memory_format=torch.channels_last)
        self._frame: tuple | None = None  # (inputs, their versions, stem part, conditioning part)

    # -- what a frame shares between its steps --------------------------------------------------------

    @staticmethod
    def _same(held: tuple, versions: tuple, now: tuple) -> bool:
        return all(a is b for a, b in zip(held, now)) and versions == tuple(t._version for t in now)

    def _per_frame(self, cond, history, d, h, action, prompt, pad: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """(the stem's convolution of every plane but the noisy RGB, with its bias; the conditioning vector
        without the t term), computed at the first step of a frame and reused by the others."""
        now = (cond, history, d, h, action, prompt)
        if self._frame is not None and self._frame[3] == pad and self._same(self._frame[0], self._frame[1], now):
            return self._frame[2]
        m = self.model
        if pad[0] or pad[1]:
            cond = F.pad(cond, (0, pad[1], 0, pad[0]), mode="replicate")
            history = F.pad(history, (0, pad[1], 0, pad[0]), mode="replicate")
        planes = m._stem_input(cond.new_zeros(cond.shape[0], 0, *cond.shape[-2:]), cond, history)
        planes = planes.contiguous(memory_format=torch.channels_last)
        stem_rest = F.conv2d(planes, m.stem.weight[:, 3:], m.stem.bias, padding=1)
        c_rest = (m.d_embed(d[:, None]) + m.h_embed(h[:, None]) + m.action_embed(action[:, None])
                  + m.prompt_embed(prompt)[:, None])
        shared = (stem_rest, c_rest)
        self._frame = (now, tuple(t._version for t in now), shared, pad)
        return shared

    # -- one step ---------------------------------------------------------------------------------------

    def __call__(self, x_noisy, cond, history, t, d, h, action, prompt, cache) -> torch.Tensor:
        m = self.model
        H0, W0 = x_noisy.shape[-2:]
        pad = ((-H0) % m.down, (-W0) % m.down)
        stem_rest, c_rest = self._per_frame(cond, history, d, h, action, prompt, pad)
        x = x_noisy.to(stem_rest.dtype)
        if pad[0] or pad[1]:
            x = F.pad(x, (0, pad[1], 0, pad[0]), mode="replicate")
        x = x.contiguous(memory_format=torch.channels_last)
        stem = F.silu(F.conv2d(x, m.stem.weight[:, :3], None, padding=1) + stem_rest)
        c = m.t_embed(t[:, None]) + c_rest  # (B, 1, D)
        y = m._from_stem(stem, c, filled_slot_attention(cache, m.rope_cos_t, m.rope_sin_t))
        return y[:, :, :H0, :W0].contiguous()


def filled_slot_attention(cache, rope_cos_t: torch.Tensor, rope_sin_t: torch.Tensor):
    """`neural_renderer.model.dit.cache_attention` over the filled slots only, with no mask (see the module's
    docstring); the cache's validity is read on the host, which on CPU costs no synchronisation."""
    valid = cache.valid.tolist()
    filled = None if all(valid) else torch.tensor([s for s, ok in enumerate(valid) if ok], device=cache.k.device)

    def attend_for_layer(i):
        def attend(q, k, v):  # (B, H, 1, T, 64)
            kc, vc = cache.layer(i)  # (B, H, slots, T, 64)
            kc[:, :, -1] = k[:, :, 0]
            vc[:, :, -1] = v[:, :, 0]
            kk = apply_temporal_rope(kc, rope_cos_t, rope_sin_t)
            if filled is not None:
                kk, vc = kk.index_select(2, filled), vc.index_select(2, filled)
            B, H, slots, T, Dh = kk.shape
            a = F.scaled_dot_product_attention(q[:, :, 0], kk.reshape(B, H, slots * T, Dh), vc.reshape(B, H, slots * T, Dh))
            return a[:, :, None]

        return attend

    return attend_for_layer
