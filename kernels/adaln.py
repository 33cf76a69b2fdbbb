"""adaLN: LayerNorm (eps 1e-6, no affine) then `* (1 + scale) + shift`, one row per program.

The linears of a block fuse this into their prologue (`kernels.linear`, prologue="adaln"); this
standalone op is for callers that need the modulated activations themselves.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from kernels.linear import adaln_ref  # noqa: F401  (the reference lives with the other linear references)


@triton.jit
def _adaln_kernel(x_ptr, out_ptr, shift_ptr, scale_ptr, stride_mod_b, T, D, eps, BLOCK_D: tl.constexpr):
    row = tl.program_id(0)
    b = row // T
    cols = tl.arange(0, BLOCK_D)
    m = cols < D
    x = tl.load(x_ptr + row * D + cols, mask=m, other=0.0).to(tl.float32)
    mean = tl.sum(x, axis=0) / D
    d = tl.where(m, x - mean, 0.0)
    rstd = 1.0 / tl.sqrt(tl.sum(d * d, axis=0) / D + eps)
    sh = tl.load(shift_ptr + b * stride_mod_b + cols, mask=m, other=0.0).to(tl.float32)
    sc = tl.load(scale_ptr + b * stride_mod_b + cols, mask=m, other=0.0).to(tl.float32)
    tl.store(out_ptr + row * D + cols, (d * rstd * (1.0 + sc) + sh).to(out_ptr.dtype.element_ty), mask=m)


def adaln_modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """x (B, T, D) contiguous, shift/scale (B, D) (views into the block's mod vector are fine)."""
    if x.dim() != 3 or not x.is_contiguous():
        raise ValueError(f"x must be a contiguous (B, T, D) tensor, got {tuple(x.shape)}")
    B, T, D = x.shape
    for name, t in (("shift", shift), ("scale", scale)):
        if t.shape != (B, D) or t.stride(1) != 1:
            raise ValueError(f"{name} must be ({B}, {D}) with unit last stride, got {tuple(t.shape)}")
    if shift.stride(0) != scale.stride(0):
        raise ValueError("shift and scale must share their batch stride")
    out = torch.empty_like(x)
    _adaln_kernel[(B * T,)](x, out, shift, scale, shift.stride(0), T, D, eps, BLOCK_D=triton.next_power_of_2(D))
    return out
