"""Triton device functions shared by the standalone fused ops and the megakernel.

One matrix-product tile (`linear_tile`) covers every linear layer of a denoising step: its A
operand is read plainly, through a fused adaLN prologue (LayerNorm without affine, then
`* (1 + scale) + shift`), through SiLU (the adaLN modulation linear), or gathered straight from
the pixel tensors (patch embed with the conditioning concat, no unfold in memory). Its epilogue
adds a bias and then either stores, applies GELU-tanh, does the gated residual add
`res + gate * y`, does the attention prologue (per-head RMSNorm of q and k + rotary, scattered to
(3, B, H, T, 64)), or folds the patches back into an image.

The tile computes its BLOCK_N columns as two halves of BLOCK_N // 2 so rotary (rotate-half
pairing: column i with column i + 32 of a head) needs no register shuffles.

`attention_tile` is one (batch, head, query block) of the current frame's queries over the cached
keys/values followed by the current frame's keys/values, online softmax in fp32.

Triton 3.9's interpreter computes bf16 `tl.dot` wrongly, so under TRITON_INTERPRET the operands
are upcast to fp32 first (exact: a bf16 x bf16 product is exact in fp32, accumulation is fp32 as
on the GPU). `DOT_UPCAST` below is that switch, passed to every kernel as a constexpr.
"""
from __future__ import annotations

import os

import triton
import triton.language as tl

DOT_UPCAST = os.environ.get("TRITON_INTERPRET", "0") == "1"

# A-operand modes
A_PLAIN, A_LNMOD, A_SILU, A_PATCH = 0, 1, 2, 3
# epilogues
E_BIAS, E_GELU, E_GATED, E_QKV, E_FOLD = 0, 1, 2, 3, 4


@triton.jit
def gelu_tanh(x):
    # 0.5 * (1 + tanh(u)) == sigmoid(2u): no tanh intrinsic needed, and both tails are exact limits
    u = 0.7978845608028654 * (x + 0.044715 * x * x * x)
    return x / (1.0 + tl.exp(-2.0 * u))


@triton.jit
def ln_stats(a_ptr, rows, M, K, stride_am, stride_ak, eps,
             BLOCK_M: tl.constexpr, BLOCK_K: tl.constexpr, CACHE: tl.constexpr):
    """Mean and 1/std of each row of A in one pass, shifted by the row's first element so the
    sum-of-squares form does not cancel when |mean| >> std."""
    rmask = rows < M
    x0 = tl.load(a_ptr + rows * stride_am, mask=rmask, other=0.0, cache_modifier=CACHE).to(tl.float32)
    s1 = tl.zeros([BLOCK_M], dtype=tl.float32)
    s2 = tl.zeros([BLOCK_M], dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        ks = k0 + tl.arange(0, BLOCK_K)
        x = tl.load(a_ptr + rows[:, None] * stride_am + ks[None, :] * stride_ak,
                    mask=rmask[:, None] & (ks[None, :] < K), other=0.0, cache_modifier=CACHE)
        d = tl.where(ks[None, :] < K, x.to(tl.float32) - x0[:, None], 0.0)
        s1 += tl.sum(d, axis=1)
        s2 += tl.sum(d * d, axis=1)
    m1 = s1 / K
    var = tl.maximum(s2 / K - m1 * m1, 0.0)
    return x0 + m1, 1.0 / tl.sqrt(var + eps)


@triton.jit
def linear_tile(
    m0, n0, M, N, K,
    a_ptr, stride_am, stride_ak,
    w_ptr, stride_wn, stride_wk,            # W is (N, K): nn.Linear layout
    bias_ptr, stride_bias_b,                # bias (N,) or per batch (B, N) with stride_bias_b
    out_ptr, stride_om, stride_on,
    mod_ptr, stride_mod_b, shift_off, scale_off, gate_off,   # adaLN vectors: mod[b, off + col]
    res_ptr, stride_rm, stride_rn,          # gated residual source (may alias out)
    T,                                      # tokens per image: row r belongs to batch r // T
    # attention prologue (E_QKV): q/k RMSNorm weights (2, HD), rotary cos/sin per pair (T, HD/2);
    # q goes to out_ptr (B, H, T, HD), k and v to k_dst/v_dst (B, H, T, HD) (the cache's current slot)
    qknorm_ptr, cos_ptr, sin_ptr, stride_cs_t, stride_qb, stride_qh, stride_qt,
    k_dst_ptr, v_dst_ptr, stride_kb, stride_kh, stride_kt,
    # pixel geometry (A_PATCH reads these two images, E_FOLD writes the first): A_PATCH's channels
    # are [img (C0), cond without plane MAT_AT (C_REST), embedding of cond[MAT_AT] (table (NB, NMAT))]
    img_ptr, s_ib, s_ic, s_ih, s_iw,
    cond_ptr, s_cb, s_cc, s_ch, s_cw,
    C0, C_REST, MAT_AT, NB, NMAT, mat_ptr, TOK_W,
    eps,
    P: tl.constexpr, A_MODE: tl.constexpr, EPI: tl.constexpr, UNIFORM_B: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    CACHE: tl.constexpr, DOT_UPCAST: tl.constexpr,
):
    HALF: tl.constexpr = BLOCK_N // 2
    rows = m0 + tl.arange(0, BLOCK_M)
    rmask = rows < M
    bidx = rows // T                                   # batch of each row
    b0 = m0 // T                                       # the batch of every row when UNIFORM_B (T % BLOCK_M == 0)
    cols_lo = n0 + tl.arange(0, HALF)
    cols_hi = cols_lo + HALF
    if A_MODE == 1:
        mean, rstd = ln_stats(a_ptr, rows, M, K, stride_am, stride_ak, eps, BLOCK_M, BLOCK_K, CACHE)
    acc_lo = tl.zeros([BLOCK_M, HALF], dtype=tl.float32)
    acc_hi = tl.zeros([BLOCK_M, HALF], dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        ks = k0 + tl.arange(0, BLOCK_K)
        kmask = ks < K
        amask = rmask[:, None] & kmask[None, :]
        if A_MODE == 3:
            # implicit im2col: k = c * P * P + py * P + px over the concatenated channels
            t = rows % T
            yy = (t // TOK_W)[:, None] * P + ((ks // P) % P)[None, :]
            xx = (t % TOK_W)[:, None] * P + (ks % P)[None, :]
            if (P * P) % BLOCK_K == 0:
                # the whole chunk is one channel: one source, chosen by a scalar branch
                ch = k0 // (P * P)
                rc = ch - C0
                if ch < C0:
                    a = tl.load(img_ptr + bidx[:, None] * s_ib + ch * s_ic + yy * s_ih + xx * s_iw,
                                mask=amask, other=0.0).to(tl.float32)
                elif rc < C_REST:
                    src = tl.where(rc >= MAT_AT, rc + 1, rc)   # skip the material-id plane
                    a = tl.load(cond_ptr + bidx[:, None] * s_cb + src * s_cc + yy * s_ch + xx * s_cw,
                                mask=amask, other=0.0).to(tl.float32)
                else:
                    mid = tl.load(cond_ptr + bidx[:, None] * s_cb + MAT_AT * s_cc + yy * s_ch + xx * s_cw,
                                  mask=amask, other=0.0).to(tl.float32)
                    mid = tl.minimum(tl.maximum(tl.floor(mid + 0.5), 0.0), NB - 1.0).to(tl.int32)
                    a = tl.load(mat_ptr + mid * NMAT + (rc - C_REST), mask=amask, other=0.0).to(tl.float32)
                a = a.to(w_ptr.dtype.element_ty)
            else:
                ch = (ks // (P * P))[None, :]
                rc = ch - C0
                from_img = ch < C0
                from_rest = (rc >= 0) & (rc < C_REST)
                src = tl.where(rc >= MAT_AT, rc + 1, rc)
                cbase = cond_ptr + bidx[:, None] * s_cb + yy * s_ch + xx * s_cw
                a_img = tl.load(img_ptr + bidx[:, None] * s_ib + ch * s_ic + yy * s_ih + xx * s_iw,
                                mask=amask & from_img, other=0.0).to(tl.float32)
                a_rst = tl.load(cbase + src * s_cc, mask=amask & from_rest, other=0.0).to(tl.float32)
                is_mat = rc >= C_REST
                mid = tl.load(cbase + MAT_AT * s_cc, mask=amask & is_mat, other=0.0).to(tl.float32)
                mid = tl.minimum(tl.maximum(tl.floor(mid + 0.5), 0.0), NB - 1.0).to(tl.int32)
                a_mat = tl.load(mat_ptr + mid * NMAT + (rc - C_REST), mask=amask & is_mat, other=0.0).to(tl.float32)
                a = tl.where(from_img, a_img, tl.where(from_rest, a_rst, a_mat)).to(w_ptr.dtype.element_ty)
        else:
            a = tl.load(a_ptr + rows[:, None] * stride_am + ks[None, :] * stride_ak, mask=amask, other=0.0,
                        cache_modifier=CACHE)
            if A_MODE == 1:
                if UNIFORM_B:  # one batch per row block: the adaLN vectors are 1-D, broadcast over rows
                    sh = tl.load(mod_ptr + b0 * stride_mod_b + shift_off + ks, mask=kmask, other=0.0,
                                 cache_modifier=CACHE).to(tl.float32)[None, :]
                    sc = tl.load(mod_ptr + b0 * stride_mod_b + scale_off + ks, mask=kmask, other=0.0,
                                 cache_modifier=CACHE).to(tl.float32)[None, :]
                else:
                    sh = tl.load(mod_ptr + bidx[:, None] * stride_mod_b + shift_off + ks[None, :], mask=amask,
                                 other=0.0, cache_modifier=CACHE).to(tl.float32)
                    sc = tl.load(mod_ptr + bidx[:, None] * stride_mod_b + scale_off + ks[None, :], mask=amask,
                                 other=0.0, cache_modifier=CACHE).to(tl.float32)
                a = ((a.to(tl.float32) - mean[:, None]) * rstd[:, None] * (1.0 + sc) + sh).to(w_ptr.dtype.element_ty)
            elif A_MODE == 2:
                af = a.to(tl.float32)
                a = (af / (1.0 + tl.exp(-af))).to(w_ptr.dtype.element_ty)
        w_lo = tl.load(w_ptr + cols_lo[None, :] * stride_wn + ks[:, None] * stride_wk,
                       mask=(cols_lo[None, :] < N) & kmask[:, None], other=0.0)
        w_hi = tl.load(w_ptr + cols_hi[None, :] * stride_wn + ks[:, None] * stride_wk,
                       mask=(cols_hi[None, :] < N) & kmask[:, None], other=0.0)
        if DOT_UPCAST:
            a = a.to(tl.float32)
            w_lo = w_lo.to(tl.float32)
            w_hi = w_hi.to(tl.float32)
        acc_lo = tl.dot(a, w_lo, acc_lo)
        acc_hi = tl.dot(a, w_hi, acc_hi)

    # ---- epilogue ----
    nm_lo = cols_lo < N
    nm_hi = cols_hi < N
    b_lo = tl.load(bias_ptr + bidx[:, None] * stride_bias_b + cols_lo[None, :],
                   mask=rmask[:, None] & nm_lo[None, :], other=0.0).to(tl.float32)
    b_hi = tl.load(bias_ptr + bidx[:, None] * stride_bias_b + cols_hi[None, :],
                   mask=rmask[:, None] & nm_hi[None, :], other=0.0).to(tl.float32)
    y_lo = acc_lo + b_lo
    y_hi = acc_hi + b_hi
    m_lo = rmask[:, None] & nm_lo[None, :]
    m_hi = rmask[:, None] & nm_hi[None, :]
    if EPI == 1:
        y_lo = gelu_tanh(y_lo)
        y_hi = gelu_tanh(y_hi)
    if EPI == 2:
        if UNIFORM_B:
            g_lo = tl.load(mod_ptr + b0 * stride_mod_b + gate_off + cols_lo, mask=nm_lo, other=0.0,
                           cache_modifier=CACHE).to(tl.float32)[None, :]
            g_hi = tl.load(mod_ptr + b0 * stride_mod_b + gate_off + cols_hi, mask=nm_hi, other=0.0,
                           cache_modifier=CACHE).to(tl.float32)[None, :]
        else:
            g_lo = tl.load(mod_ptr + bidx[:, None] * stride_mod_b + gate_off + cols_lo[None, :], mask=m_lo,
                           other=0.0, cache_modifier=CACHE).to(tl.float32)
            g_hi = tl.load(mod_ptr + bidx[:, None] * stride_mod_b + gate_off + cols_hi[None, :], mask=m_hi,
                           other=0.0, cache_modifier=CACHE).to(tl.float32)
        r_lo = tl.load(res_ptr + rows[:, None] * stride_rm + cols_lo[None, :] * stride_rn, mask=m_lo, other=0.0,
                       cache_modifier=CACHE).to(tl.float32)
        r_hi = tl.load(res_ptr + rows[:, None] * stride_rm + cols_hi[None, :] * stride_rn, mask=m_hi, other=0.0,
                       cache_modifier=CACHE).to(tl.float32)
        y_lo = r_lo + g_lo * y_lo
        y_hi = r_hi + g_hi * y_hi
    if EPI == 3:
        # BLOCK_N == head dim, n0 is a head boundary: section 0 = q, 1 = k, 2 = v
        D = N // 3
        sec = n0 // D
        head = (n0 % D) // BLOCK_N
        if sec < 2:
            ms = (tl.sum(y_lo * y_lo, axis=1) + tl.sum(y_hi * y_hi, axis=1)) / BLOCK_N
            r = 1.0 / tl.sqrt(ms + eps)
            dl = tl.arange(0, HALF)
            gw_lo = tl.load(qknorm_ptr + sec * BLOCK_N + dl).to(tl.float32)
            gw_hi = tl.load(qknorm_ptr + sec * BLOCK_N + HALF + dl).to(tl.float32)
            u_lo = y_lo * r[:, None] * gw_lo[None, :]
            u_hi = y_hi * r[:, None] * gw_hi[None, :]
            tt = rows % T
            cmask = rmask[:, None]
            c = tl.load(cos_ptr + tt[:, None] * stride_cs_t + dl[None, :], mask=cmask, other=1.0)
            sn = tl.load(sin_ptr + tt[:, None] * stride_cs_t + dl[None, :], mask=cmask, other=0.0)
            y_lo = u_lo * c - u_hi * sn
            y_hi = u_hi * c + u_lo * sn
        tt = rows % T
        dl2 = tl.arange(0, HALF)
        if sec == 0:
            dst = out_ptr + bidx[:, None] * stride_qb + head * stride_qh + tt[:, None] * stride_qt
        elif sec == 1:
            dst = k_dst_ptr + bidx[:, None] * stride_kb + head * stride_kh + tt[:, None] * stride_kt
        else:
            dst = v_dst_ptr + bidx[:, None] * stride_kb + head * stride_kh + tt[:, None] * stride_kt
        tl.store(dst + dl2[None, :], y_lo.to(out_ptr.dtype.element_ty), mask=rmask[:, None])
        tl.store(dst + HALF + dl2[None, :], y_hi.to(out_ptr.dtype.element_ty), mask=rmask[:, None])
    elif EPI == 4:
        # fold: column n = c * P * P + py * P + px of token t lands at pixel (t // TOK_W * P + py, t % TOK_W * P + px)
        tt = rows % T
        ty = (tt // TOK_W)[:, None] * P
        tx = (tt % TOK_W)[:, None] * P
        base = img_ptr + bidx[:, None] * s_ib
        tl.store(base + (cols_lo // (P * P))[None, :] * s_ic + (ty + ((cols_lo // P) % P)[None, :]) * s_ih
                 + (tx + (cols_lo % P)[None, :]) * s_iw, y_lo.to(img_ptr.dtype.element_ty), mask=m_lo)
        tl.store(base + (cols_hi // (P * P))[None, :] * s_ic + (ty + ((cols_hi // P) % P)[None, :]) * s_ih
                 + (tx + (cols_hi % P)[None, :]) * s_iw, y_hi.to(img_ptr.dtype.element_ty), mask=m_hi)
    else:
        tl.store(out_ptr + rows[:, None] * stride_om + cols_lo[None, :] * stride_on,
                 y_lo.to(out_ptr.dtype.element_ty), mask=m_lo)
        tl.store(out_ptr + rows[:, None] * stride_om + cols_hi[None, :] * stride_on,
                 y_hi.to(out_ptr.dtype.element_ty), mask=m_hi)


@triton.jit
def attention_tile(
    b, h, m0, T, SLOTS,
    q_ptr, s_qb, s_qh, s_qt,                 # current queries (B, H, T, HD), already normed + rotated
    kc_ptr, vc_ptr, s_cb, s_ch, s_cs, s_cn,  # keys/values (B, H, SLOTS, T, HD); the last slot is the current frame
    valid_ptr,                               # (SLOTS,) nonzero where the slot holds a frame
    rc_ptr, rs_ptr,                          # (SLOTS, HD/2) rotation of each slot's keys (rotate-half pairs)
    o_ptr, s_ob, s_ot,                       # output (B, T, H * HD): row-major for the out projection
    sm_scale,
    HD: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    CACHE: tl.constexpr, DOT_UPCAST: tl.constexpr,
):
    HALF: tl.constexpr = HD // 2
    rows = m0 + tl.arange(0, BLOCK_M)
    rmask = rows < T
    dh = tl.arange(0, HALF)
    qb = q_ptr + b * s_qb + h * s_qh + rows[:, None] * s_qt
    q_lo = tl.load(qb + dh[None, :], mask=rmask[:, None], other=0.0, cache_modifier=CACHE).to(tl.float32)
    q_hi = tl.load(qb + HALF + dh[None, :], mask=rmask[:, None], other=0.0, cache_modifier=CACHE).to(tl.float32)
    qk_scale = sm_scale * 1.4426950408889634  # softmax in base 2
    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, HD], dtype=tl.float32)
    dd = tl.arange(0, HD)
    for slot in range(0, SLOTS):
        if tl.load(valid_ptr + slot) != 0:
            # q . (R k) == (R^T q) . k: rotate the queries once per slot instead of every cached key
            c = tl.load(rc_ptr + slot * HALF + dh)[None, :]
            sn = tl.load(rs_ptr + slot * HALF + dh)[None, :]
            qs_lo = q_lo * c + q_hi * sn
            qs_hi = q_hi * c - q_lo * sn
            if DOT_UPCAST:
                qs_lo_d = qs_lo
                qs_hi_d = qs_hi
            else:
                qs_lo_d = qs_lo.to(kc_ptr.dtype.element_ty)
                qs_hi_d = qs_hi.to(kc_ptr.dtype.element_ty)
            kb = kc_ptr + b * s_cb + h * s_ch + slot * s_cs
            vb = vc_ptr + b * s_cb + h * s_ch + slot * s_cs
            for n0 in range(0, T, BLOCK_N):
                cols = n0 + tl.arange(0, BLOCK_N)
                cm = cols < T
                k_lo = tl.load(kb + cols[None, :] * s_cn + dh[:, None], mask=cm[None, :], other=0.0,
                               cache_modifier=CACHE)
                k_hi = tl.load(kb + cols[None, :] * s_cn + HALF + dh[:, None], mask=cm[None, :], other=0.0,
                               cache_modifier=CACHE)
                v = tl.load(vb + cols[:, None] * s_cn + dd[None, :], mask=cm[:, None], other=0.0,
                            cache_modifier=CACHE)
                if DOT_UPCAST:
                    k_lo = k_lo.to(tl.float32)
                    k_hi = k_hi.to(tl.float32)
                    v = v.to(tl.float32)
                s = tl.dot(qs_lo_d, k_lo) + tl.dot(qs_hi_d, k_hi)
                s = tl.where(cm[None, :], s * qk_scale, float("-inf"))
                m_new = tl.maximum(m_i, tl.max(s, axis=1))
                alpha = tl.exp2(m_i - m_new)
                p = tl.exp2(s - m_new[:, None])
                l_i = l_i * alpha + tl.sum(p, axis=1)
                acc = acc * alpha[:, None]
                acc = tl.dot(p.to(v.dtype), v, acc)
                m_i = m_new
    out = acc / l_i[:, None]
    tl.store(o_ptr + b * s_ob + rows[:, None] * s_ot + h * HD + dd[None, :], out.to(o_ptr.dtype.element_ty),
             mask=rmask[:, None])
