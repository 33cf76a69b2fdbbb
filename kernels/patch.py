"""Patch embed with the conditioning concat, and the unpatchify head, fused; plain references beside.

    patch_embed(x_noisy, cond, mat_table, w, b, p)  -> tokens (B, T, D)
        the per-pixel input is concat[x_noisy (3), cond without its material-id plane, embedding of the
        material id (rounded, clamped to the table)], unfolded p x p (channel-major within a patch, tokens
        row-major) and projected. The kernel gathers straight from the two images: no concat, no unfold
        in memory.
    unpatchify(x, mod, w, b, p, grid)  -> image (B, 3, grid * p, grid * p)
        adaLN final layer (LN no affine, * (1 + scale) + shift with mod = [shift, scale]), linear to
        3 * p * p, folded back into pixels by the epilogue's store addresses.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from kernels import tiles
from kernels.linear import _check, launch_linear, linear_ref


def patch_embed_ref(x_noisy, cond, mat_table, w, b, p: int, mat_at: int):
    B, _, H, W = x_noisy.shape
    mat = cond[:, mat_at].round().long().clamp(0, mat_table.shape[0] - 1)
    mat = mat_table[mat].permute(0, 3, 1, 2).to(x_noisy.dtype)
    rest = torch.cat([cond[:, :mat_at], cond[:, mat_at + 1:]], dim=1).to(x_noisy.dtype)
    x = torch.cat([x_noisy, rest, mat], dim=1)
    gh, gw = H // p, W // p
    x = x.view(B, -1, gh, p, gw, p).permute(0, 2, 4, 1, 3, 5).reshape(B, gh * gw, -1)
    return F.linear(x, w, b)


def unpatchify_ref(x, mod, w, b, p: int, grid: int):
    B, T, D = x.shape
    y = linear_ref(x, w, b, prologue="adaln", mod=mod, shift_off=0, scale_off=D)
    return y.view(B, grid, grid, 3, p, p).permute(0, 3, 1, 4, 2, 5).reshape(B, 3, grid * p, grid * p)


def patch_embed(x_noisy, cond, mat_table, w, b, p: int, mat_at: int, *, out=None, block_m=64, block_n=64,
                block_k=64):
    _check(x_noisy.dim() == 4 and x_noisy.shape[1] == 3, f"x_noisy must be (B, 3, H, W), got {tuple(x_noisy.shape)}")
    B, _, H, W = x_noisy.shape
    _check(cond.dim() == 4 and cond.shape[0] == B and cond.shape[2:] == (H, W),
           f"cond must be (B={B}, C, {H}, {W}), got {tuple(cond.shape)}")
    _check(H % p == 0 and W % p == 0, f"image {H}x{W} not divisible by patch {p}")
    _check(0 <= mat_at < cond.shape[1], f"material plane {mat_at} outside cond's {cond.shape[1]} planes")
    n_mat = mat_table.shape[1]
    c_rest = cond.shape[1] - 1
    c_in = 3 + c_rest + n_mat
    D = w.shape[0]
    _check(w.shape == (D, c_in * p * p), f"w must be ({D}, {c_in * p * p}), got {tuple(w.shape)}")
    T = (H // p) * (W // p)
    if out is None:
        out = torch.empty(B, T, D, device=x_noisy.device, dtype=w.dtype)
    _check(out.shape == (B, T, D) and out.is_contiguous(), f"out must be a contiguous {(B, T, D)} tensor")
    launch_linear(M=B * T, N=D, K=c_in * p * p, w=w, bias=b, out=out, out_strides=(D, 1), T=T,
                  img=x_noisy, cond=cond, patch_geom=(3, c_rest, mat_at, mat_table.shape[0], n_mat),
                  mat=mat_table.contiguous(), tok_w=W // p, p=p, a_mode=tiles.A_PATCH, epi=tiles.E_BIAS,
                  block_m=block_m, block_n=block_n, block_k=block_k)
    return out


def unpatchify(x, mod, w, b, p: int, grid: int, *, out=None, block_m=64, block_n=64, block_k=64):
    _check(x.dim() == 3 and x.shape[1] == grid * grid, f"x must be (B, {grid * grid}, D), got {tuple(x.shape)}")
    B, T, D = x.shape
    _check(w.shape == (3 * p * p, D), f"w must be ({3 * p * p}, {D}), got {tuple(w.shape)}")
    _check(mod.shape == (B, 2 * D) and mod.stride(1) == 1, f"mod must be (B, {2 * D}) = [shift, scale]")
    if out is None:
        out = torch.empty(B, 3, grid * p, grid * p, device=x.device, dtype=x.dtype)
    _check(out.shape == (B, 3, grid * p, grid * p), f"out must be {(B, 3, grid * p, grid * p)}")
    x2 = x.reshape(B * T, D)
    launch_linear(M=B * T, N=3 * p * p, K=D, a=x2, a_strides=x2.stride(), w=w, bias=b, mod=mod, shift_off=0,
                  scale_off=D, T=T, img=out, tok_w=grid, p=p, a_mode=tiles.A_LNMOD, epi=tiles.E_FOLD,
                  block_m=block_m, block_n=block_n, block_k=block_k)
    return out
