"""Attention of the current frame's queries over the KV cache, whose last slot is the current frame.

    cached_attention(q, k_cache, v_cache, valid, rot_cos, rot_sin) -> (B, T, H * HD)

q: (B, H, T, HD) of the current frame (RMS-normed, spatially rotated). k_cache/v_cache:
(B, H, SLOTS, T, HD), the layer view of `neural_renderer.model.kv_cache.KVCache`: sinks, window, and the
current frame in the last slot (written there by the QKV epilogue). `valid` (SLOTS,) marks slots that
hold a frame (a device tensor, so a CUDA graph replays as the cache fills). Each slot's keys are
used rotated by that slot's temporal angle: rot_cos/rot_sin (SLOTS, HD/2) per rotate-half pair. The
kernel applies the transpose rotation to the queries, once per slot, instead of rotating every key.
No mask inside a frame; scale 1/sqrt(HD). Output (B, T, H * HD), ready for the out projection.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
import triton
import triton.language as tl

from kernels import tiles
from kernels.linear import rotate_half_rope


def cached_attention_ref(q, k_cache, v_cache, valid, rot_cos, rot_sin):
    """Plain PyTorch in q's dtype: rotate every key by its slot's angle, SDPA with a slot mask."""
    B, H, S, T, HD = k_cache.shape
    kk = rotate_half_rope(k_cache, rot_cos[:, None], rot_sin[:, None]).reshape(B, H, S * T, HD)
    vv = v_cache.reshape(B, H, S * T, HD)
    mask = valid.bool()[:, None].expand(S, T).reshape(1, S * T)
    o = F.scaled_dot_product_attention(q, kk, vv, attn_mask=mask, scale=1.0 / math.sqrt(HD))
    return o.transpose(1, 2).reshape(B, T, H * HD)


@triton.jit
def _attention_kernel(
    T, SLOTS, q_ptr, s_qb, s_qh, s_qt, kc_ptr, vc_ptr, s_cb, s_ch, s_cs, s_cn, valid_ptr, rc_ptr, rs_ptr,
    o_ptr, s_ob, s_ot, sm_scale, H,
    HD: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, DOT_UPCAST: tl.constexpr,
):
    pid = tl.program_id(0)
    bh = tl.program_id(1)
    tiles.attention_tile(bh // H, bh % H, pid * BLOCK_M, T, SLOTS, q_ptr, s_qb, s_qh, s_qt, kc_ptr, vc_ptr,
                         s_cb, s_ch, s_cs, s_cn, valid_ptr, rc_ptr, rs_ptr, o_ptr, s_ob, s_ot, sm_scale,
                         HD, BLOCK_M, BLOCK_N, "", DOT_UPCAST)


def cached_attention(q, k_cache, v_cache, valid, rot_cos, rot_sin, *, out=None, block_m=64, block_n=64,
                     num_warps=4, num_stages=None):
    if q.dim() != 4:
        raise ValueError(f"q must be (B, H, T, HD), got {tuple(q.shape)}")
    B, H, T, HD = q.shape
    if k_cache.dim() != 5 or k_cache.shape != v_cache.shape or k_cache.shape[:2] != (B, H) \
            or k_cache.shape[3:] != (T, HD):
        raise ValueError(f"k_cache/v_cache must be (B={B}, H={H}, SLOTS, T={T}, HD={HD}), got "
                         f"{tuple(k_cache.shape)} / {tuple(v_cache.shape)}")
    S = k_cache.shape[2]
    if k_cache.stride() != v_cache.stride():
        raise ValueError("k_cache and v_cache must have matching strides")
    if q.stride(-1) != 1 or k_cache.stride(-1) != 1:
        raise ValueError("q and the cache need a unit last stride")
    if HD not in (32, 64, 128):
        raise ValueError(f"head dim {HD} unsupported")
    if valid.shape != (S,):
        raise ValueError(f"valid must be ({S},), got {tuple(valid.shape)}")
    if rot_cos.shape != (S, HD // 2) or rot_sin.shape != (S, HD // 2):
        raise ValueError(f"rot_cos/rot_sin must be ({S}, {HD // 2})")
    if out is None:
        out = torch.empty(B, T, H * HD, device=q.device, dtype=q.dtype)
    if out.shape != (B, T, H * HD) or out.stride(-1) != 1:
        raise ValueError(f"out must be {(B, T, H * HD)} with unit last stride")
    valid_i = valid if valid.dtype == torch.int32 else valid.to(torch.int32)
    grid = (triton.cdiv(T, block_m), B * H)
    _attention_kernel[grid](
        T, S, q, q.stride(0), q.stride(1), q.stride(2), k_cache, v_cache, *k_cache.stride()[:4], valid_i,
        rot_cos.float().contiguous(), rot_sin.float().contiguous(), out, out.stride(0), out.stride(1),
        1.0 / math.sqrt(HD), H, HD=HD, BLOCK_M=block_m, BLOCK_N=block_n, DOT_UPCAST=tiles.DOT_UPCAST,
        num_warps=num_warps, **({} if num_stages is None else {"num_stages": num_stages}))
    return out
