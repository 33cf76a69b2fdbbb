"""Matrix products with fused prologues/epilogues, and their plain PyTorch references.

    fused_linear(a, w, b, prologue=..., epilogue=...)   y = epi(pro(a) @ w.T + b)
        prologue: None | "adaln" (LN(a) * (1 + scale) + shift, LN eps 1e-6 no affine) | "silu"
        epilogue: "bias" | "gelu" (GELU-tanh) | "gated" (res + gate * y, res may be `out` itself)
    fused_qkv(x, mod, ...)   adaLN prologue, qkv projection, per-head RMSNorm of q, k and rotary,
                             written as (3, B, H, T, 64) for the attention kernel

`mod` is the block's adaLN output (B, 6 * dim) = [shift1, scale1, gate1, shift2, scale2, gate2]; the
kernels read the chunk they need through an offset, never a copy.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
import triton
import triton.language as tl

from kernels import tiles

_PROLOGUES = {None: tiles.A_PLAIN, "adaln": tiles.A_LNMOD, "silu": tiles.A_SILU}
_EPILOGUES = {"bias": tiles.E_BIAS, "gelu": tiles.E_GELU, "gated": tiles.E_GATED}


# ----------------------------------------------------------------------------- references
def rotate_half_rope(u: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary with rotate-half pairing (dim j with j + HD/2); cos/sin (..., HD/2) per pair."""
    lo, hi = u.float().chunk(2, dim=-1)
    return torch.cat([lo * cos - hi * sin, hi * cos + lo * sin], dim=-1).to(u.dtype)


def rms_norm_ref(u: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    return u * torch.rsqrt(u.pow(2).mean(-1, keepdim=True) + eps) * weight


def adaln_ref(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """LN(x) * (1 + scale) + shift; x (B, T, D), shift/scale (B, D)."""
    h = F.layer_norm(x, (x.shape[-1],), eps=eps)
    return h * (1 + scale[:, None, :]) + shift[:, None, :]


def linear_ref(a, w, b, *, prologue=None, mod=None, shift_off=0, scale_off=0, epilogue="bias",
               gate_off=0, res=None, eps=1e-6):
    """Same math as `fused_linear`, plain PyTorch, computed in a's dtype. a (B, T, K)."""
    D_k = a.shape[-1]
    if prologue == "adaln":
        a = adaln_ref(a, mod[:, shift_off:shift_off + D_k], mod[:, scale_off:scale_off + D_k], eps)
    elif prologue == "silu":
        a = F.silu(a)
    y = F.linear(a, w, b)
    if epilogue == "gelu":
        y = F.gelu(y, approximate="tanh")
    elif epilogue == "gated":
        y = res + mod[:, None, gate_off:gate_off + w.shape[0]] * y
    return y


def qkv_ref(x, mod, shift_off, scale_off, wqkv, bqkv, qnorm, knorm, cos, sin, heads, eps=1e-6):
    """(3, B, H, T, HD): q and k RMS-normed per head then rotated (cos/sin (T, HD/2)); v as projected."""
    B, T, D = x.shape
    qkv = linear_ref(x, wqkv, bqkv, prologue="adaln", mod=mod, shift_off=shift_off, scale_off=scale_off, eps=eps)
    q, k, v = qkv.view(B, T, 3, heads, D // heads).permute(2, 0, 3, 1, 4)
    q = rotate_half_rope(rms_norm_ref(q, qnorm, eps), cos, sin)
    k = rotate_half_rope(rms_norm_ref(k, knorm, eps), cos, sin)
    return torch.stack([q, k, v])


# ----------------------------------------------------------------------------- kernel
@triton.jit
def _linear_kernel(
    M, N, K, a_ptr, stride_am, stride_ak, w_ptr, stride_wn, stride_wk, bias_ptr, stride_bias_b,
    out_ptr, stride_om, stride_on, mod_ptr, stride_mod_b, shift_off, scale_off, gate_off,
    res_ptr, stride_rm, stride_rn, T,
    qknorm_ptr, cos_ptr, sin_ptr, stride_cs_t, stride_qb, stride_qh, stride_qt,
    k_dst_ptr, v_dst_ptr, stride_kb, stride_kh, stride_kt,
    img_ptr, s_ib, s_ic, s_ih, s_iw, cond_ptr, s_cb, s_cc, s_ch, s_cw, C0, C_REST, MAT_AT, NB, NMAT, mat_ptr,
    TOK_W, eps,
    P: tl.constexpr, A_MODE: tl.constexpr, EPI: tl.constexpr, UNIFORM_B: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, DOT_UPCAST: tl.constexpr,
):
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    tiles.linear_tile(
        pid_m * BLOCK_M, pid_n * BLOCK_N, M, N, K, a_ptr, stride_am, stride_ak, w_ptr, stride_wn, stride_wk,
        bias_ptr, stride_bias_b, out_ptr, stride_om, stride_on, mod_ptr, stride_mod_b, shift_off, scale_off,
        gate_off, res_ptr, stride_rm, stride_rn, T,
        qknorm_ptr, cos_ptr, sin_ptr, stride_cs_t, stride_qb, stride_qh, stride_qt,
        k_dst_ptr, v_dst_ptr, stride_kb, stride_kh, stride_kt,
        img_ptr, s_ib, s_ic, s_ih, s_iw, cond_ptr, s_cb, s_cc, s_ch, s_cw, C0, C_REST, MAT_AT, NB, NMAT, mat_ptr,
        TOK_W, eps,
        P, A_MODE, EPI, UNIFORM_B, BLOCK_M, BLOCK_N, BLOCK_K, "", DOT_UPCAST)


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise ValueError(msg)


def launch_linear(*, M, N, K, a=None, a_strides=(0, 0), w, bias, bias_b_stride=0, out=None, out_strides=(0, 0),
                  mod=None, shift_off=0, scale_off=0, gate_off=0, res=None, res_strides=(0, 0), T=1,
                  qk=None, img=None, cond=None, patch_geom=(0, 0, 0, 1, 1), mat=None, tok_w=1, p=1, eps=1e-6,
                  a_mode=tiles.A_PLAIN, epi=tiles.E_BIAS, block_m=64, block_n=64, block_k=64, num_warps=4,
                  num_stages=None):
    """Low-level launcher shared by every fused linear: unused pointers get a dummy (never read).

    qk = (qknorm (2, HD) fp32, cos (T, HD/2), sin, q_out (B, H, T, HD), k_dst, v_dst (B, H, T, HD) views)."""
    dummy = w
    if qk is not None:
        qknorm, cos, sin, q_out, k_dst, v_dst = qk
        if k_dst.stride() != v_dst.stride():
            raise ValueError("k and v destinations must share strides")
        q_s, kv_s, cs = q_out.stride()[:3], k_dst.stride()[:3], cos.stride(0)
        out = q_out
    else:
        qknorm = cos = sin = k_dst = v_dst = dummy
        q_s, kv_s, cs = (0, 0, 0), (0, 0, 0), 0
    img_s = img.stride() if img is not None else (0, 0, 0, 0)
    cond_s = cond.stride() if cond is not None else (0, 0, 0, 0)
    grid = (triton.cdiv(M, block_m), triton.cdiv(N, block_n))
    _linear_kernel[grid](
        M, N, K, a if a is not None else dummy, a_strides[0], a_strides[1], w, w.stride(0), w.stride(1),
        bias, bias_b_stride, out if out is not None else dummy, out_strides[0], out_strides[1],
        mod if mod is not None else dummy, mod.stride(0) if mod is not None else 0, shift_off, scale_off, gate_off,
        res if res is not None else dummy, res_strides[0], res_strides[1], T,
        qknorm, cos, sin, cs, *q_s, k_dst, v_dst, *kv_s,
        img if img is not None else dummy, *img_s, cond if cond is not None else dummy, *cond_s,
        *patch_geom, mat if mat is not None else dummy, tok_w, eps,
        P=p, A_MODE=a_mode, EPI=epi, UNIFORM_B=(T % block_m == 0), BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_K=block_k,
        DOT_UPCAST=tiles.DOT_UPCAST, num_warps=num_warps, **({} if num_stages is None else {"num_stages": num_stages}))


def fused_linear(a, w, b, *, prologue=None, mod=None, shift_off=0, scale_off=0, epilogue="bias", gate_off=0,
                 res=None, out=None, eps=1e-6, block_m=64, block_n=64, block_k=64, num_warps=4, num_stages=None):
    """a (B, T, K) contiguous rows, w (N, K), b (N,) -> (B, T, N). `out` may be `res` (in-place residual)."""
    _check(prologue in _PROLOGUES, f"unknown prologue {prologue!r}")
    _check(epilogue in _EPILOGUES, f"unknown epilogue {epilogue!r}")
    _check(a.dim() == 3 and a.stride(-1) == 1, f"a must be (B, T, K) with unit last stride, got {tuple(a.shape)}")
    B, T, K = a.shape
    N = w.shape[0]
    _check(w.shape == (N, K), f"w must be ({N}, {K}), got {tuple(w.shape)}")
    _check(b.shape == (N,), f"b must be ({N},), got {tuple(b.shape)}")
    _check(block_n % 32 == 0, "block_n must be a multiple of 32 (two halves of >= 16)")
    if prologue == "adaln" or epilogue == "gated":
        _check(mod is not None and mod.dim() == 2 and mod.shape[0] == B and mod.stride(1) == 1,
               "adaln/gated need mod (B, n * D) with unit last stride")
    if epilogue == "gated":
        _check(res is not None and res.shape == (B, T, N), f"gated needs res of shape {(B, T, N)}")
    a2 = a.reshape(B * T, K)
    if out is None:
        out = torch.empty(B, T, N, device=a.device, dtype=a.dtype)
    _check(out.shape == (B, T, N) and out.is_contiguous(), f"out must be a contiguous {(B, T, N)} tensor")
    res2 = res.reshape(B * T, N) if res is not None else None
    launch_linear(M=B * T, N=N, K=K, a=a2, a_strides=a2.stride(), w=w, bias=b, out=out,
                  out_strides=(N, 1),
                  mod=mod, shift_off=shift_off, scale_off=scale_off, gate_off=gate_off, res=res2,
                  res_strides=res2.stride() if res2 is not None else (0, 0), T=T, eps=eps,
                  a_mode=_PROLOGUES[prologue], epi=_EPILOGUES[epilogue], block_m=block_m, block_n=block_n,
                  block_k=block_k, num_warps=num_warps, num_stages=num_stages)
    return out


def fused_qkv(x, mod, shift_off, scale_off, wqkv, bqkv, qnorm, knorm, cos, sin, heads, *, eps=1e-6,
              q_out=None, k_dst=None, v_dst=None, block_m=64, block_k=64):
    """x (B, T, D) -> q, k, v (B, H, T, HD) with adaLN prologue, bias, per-head RMSNorm + rotary of q, k.

    cos/sin (T, HD/2) per rotate-half pair (fp32). k_dst/v_dst may be views into a KV cache slot."""
    B, T, D = x.shape
    _check(D % heads == 0, f"dim {D} not divisible by heads {heads}")
    HD = D // heads
    _check(HD in (32, 64, 128), f"head dim {HD} unsupported")
    _check(wqkv.shape == (3 * D, D) and bqkv.shape == (3 * D,), "wqkv must be (3D, D), bqkv (3D,)")
    _check(cos.shape == (T, HD // 2) and sin.shape == (T, HD // 2), f"cos/sin must be ({T}, {HD // 2})")
    _check(cos.dtype == torch.float32 and sin.dtype == torch.float32, "cos/sin must be float32")
    qk = torch.stack([qnorm, knorm]).to(torch.float32).contiguous()
    new = lambda: torch.empty(B, heads, T, HD, device=x.device, dtype=x.dtype)  # noqa: E731
    q_out = new() if q_out is None else q_out
    k_dst = new() if k_dst is None else k_dst
    v_dst = new() if v_dst is None else v_dst
    for name, t in (("q_out", q_out), ("k_dst", k_dst), ("v_dst", v_dst)):
        _check(t.shape == (B, heads, T, HD) and t.stride(-1) == 1, f"{name} must be {(B, heads, T, HD)}, unit last stride")
    x2 = x.reshape(B * T, D)
    launch_linear(M=B * T, N=3 * D, K=D, a=x2, a_strides=x2.stride(), w=wqkv, bias=bqkv, mod=mod,
                  shift_off=shift_off, scale_off=scale_off, T=T,
                  qk=(qk, cos.contiguous(), sin.contiguous(), q_out, k_dst, v_dst),
                  eps=eps, a_mode=tiles.A_LNMOD, epi=tiles.E_QKV, block_m=block_m, block_n=HD, block_k=block_k)
    return q_out, k_dst, v_dst
