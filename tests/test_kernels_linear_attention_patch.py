"""Each fused op against its plain PyTorch reference, over a grid of shapes, under TRITON_INTERPRET.

Tolerance (kernels.selfcheck.tolerance): |kernel - fp32_ref| <= 2 * |torch_same_dtype - fp32_ref| + atol, in max norm.
Shapes include sizes that are not tile multiples (masking) and batch > 1 (per-batch modulation).
"""
import _kernels_helpers as H  # noqa: F401  (sets TRITON_INTERPRET before triton is imported)

import pytest  # noqa: E402
import torch  # noqa: E402

from kernels import tiles  # noqa: E402
from kernels.adaln import adaln_modulate  # noqa: E402
from kernels.attention import cached_attention, cached_attention_ref  # noqa: E402
from kernels.linear import adaln_ref, fused_linear, fused_qkv, linear_ref, qkv_ref  # noqa: E402
from kernels.patch import patch_embed, patch_embed_ref, unpatchify, unpatchify_ref  # noqa: E402

DTYPES = [torch.float32, torch.bfloat16]


def test_interpreter_is_on():
    assert tiles.DOT_UPCAST, "TRITON_INTERPRET was not set before kernels were imported"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("B,T,K,N", [(1, 32, 64, 128), (2, 16, 128, 64), (1, 40, 96, 160)])
@pytest.mark.parametrize("pro,epi", [(None, "bias"), ("adaln", "gelu"), (None, "gated"), ("silu", "bias"),
                                     ("adaln", "bias")])
def test_fused_linear(dtype, B, T, K, N, pro, epi):
    g = torch.Generator().manual_seed(B * 1000 + T + K + N)
    D = max(K, N)
    a = torch.randn(B, T, K, generator=g)
    w = torch.randn(N, K, generator=g) / K ** 0.5
    b = torch.randn(N, generator=g)
    mod = torch.randn(B, 6 * D, generator=g) * 0.5
    res = torch.randn(B, T, N, generator=g)
    kw = dict(prologue=pro, mod=mod, shift_off=3 * D, scale_off=4 * D, epilogue=epi, gate_off=5 * D)
    ref32 = linear_ref(a, w, b, res=res, **kw)
    c = lambda t: t.to(dtype)  # noqa: E731
    kw_d = dict(kw, mod=c(mod))
    ref_same = linear_ref(c(a), c(w), c(b), res=c(res), **kw_d)
    res_d = c(res)
    out = fused_linear(c(a), c(w), c(b), res=res_d if epi == "gated" else None,
                       out=res_d if epi == "gated" else None, block_m=16, block_k=32, **kw_d)
    if epi == "gated":
        assert out.data_ptr() == res_d.data_ptr()  # in-place residual update
    H.assert_rule(f"linear {pro}/{epi}", out, ref32, ref_same, H.atol_for(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("B,T,heads", [(1, 32, 2), (2, 24, 1)])
def test_fused_qkv_writes_cache_slot(dtype, B, T, heads):
    g = torch.Generator().manual_seed(T + heads)
    D = 64 * heads
    x = torch.randn(B, T, D, generator=g)
    mod = torch.randn(B, 6 * D, generator=g) * 0.5
    w = torch.randn(3 * D, D, generator=g) / D ** 0.5
    b = torch.randn(3 * D, generator=g)
    qn, kn = 1 + 0.2 * torch.randn(64, generator=g), 1 + 0.2 * torch.randn(64, generator=g)
    ang = torch.rand(T, 32, generator=g) * 6
    ang[:, 24:] = 0  # the model leaves its temporal pairs unrotated spatially
    cos, sin = ang.cos(), ang.sin()
    ref32 = qkv_ref(x, mod, 0, D, w, b, qn, kn, cos, sin, heads)
    c = lambda t: t.to(dtype)  # noqa: E731
    ref_same = qkv_ref(c(x), c(mod), 0, D, c(w), c(b), c(qn), c(kn), cos, sin, heads)
    cache_k = torch.full((B, heads, 3, T, 64), 7.0, dtype=dtype)
    cache_v = torch.full((B, heads, 3, T, 64), 7.0, dtype=dtype)
    q, k, v = fused_qkv(c(x), c(mod), 0, D, c(w), c(b), c(qn), c(kn), cos, sin, heads,
                        k_dst=cache_k[:, :, -1], v_dst=cache_v[:, :, -1], block_m=16)
    for i, (name, o) in enumerate((("q", q), ("k", k), ("v", v))):
        H.assert_rule(f"qkv {name}", o, ref32[i], ref_same[i], H.atol_for(dtype))
    assert (cache_k[:, :, :-1] == 7.0).all() and (cache_v[:, :, :-1] == 7.0).all(), "wrote outside the current slot"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("B,heads,S,T,valid", [(1, 1, 2, 32, [1, 1]), (2, 2, 3, 24, [0, 1, 1]),
                                                (1, 2, 4, 40, [1, 0, 1, 1])])
def test_cached_attention(dtype, B, heads, S, T, valid):
    g = torch.Generator().manual_seed(S * T)
    q = torch.randn(B, heads, T, 64, generator=g)
    kc = torch.randn(B, heads, S, T, 64, generator=g)
    vc = torch.randn(B, heads, S, T, 64, generator=g)
    ang = torch.rand(S, 32, generator=g) * 6
    valid = torch.tensor(valid, dtype=torch.bool)
    kc[:, :, ~valid] = 1e4  # invalid slots must not be read: poison them
    ref32 = cached_attention_ref(q, kc, vc, valid, ang.cos(), ang.sin())
    c = lambda t: t.to(dtype)  # noqa: E731
    ref_same = cached_attention_ref(c(q), c(kc), c(vc), valid, ang.cos(), ang.sin())
    out = cached_attention(c(q), c(kc), c(vc), valid, ang.cos(), ang.sin(), block_m=16, block_n=16)
    H.assert_rule("attention", out, ref32, ref_same, H.atol_for(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("B,p,grid,D", [(1, 4, 4, 64), (2, 8, 2, 128)])
def test_patch_embed_and_unpatchify(dtype, B, p, grid, D):
    g = torch.Generator().manual_seed(p * grid + D)
    R = p * grid
    xn = torch.randn(B, 3, R, R, generator=g)
    cond = torch.randn(B, 13, R, R, generator=g)
    cond[:, 10] = torch.randint(-3, 40, (B, R, R), generator=g).float()  # ids outside the table get clamped
    tab = torch.randn(32, 3, generator=g)
    w = torch.randn(D, 18 * p * p, generator=g) / (18 * p * p) ** 0.5
    b = torch.randn(D, generator=g)
    c = lambda t: t.to(dtype)  # noqa: E731
    ref32 = patch_embed_ref(xn, cond, tab, w, b, p, 10)
    ref_same = patch_embed_ref(c(xn), c(cond), c(tab), c(w), c(b), p, 10)
    out = patch_embed(c(xn), c(cond), c(tab), c(w), c(b), p, 10, block_m=16, block_k=32)
    H.assert_rule("patch embed", out, ref32, ref_same, H.atol_for(dtype))

    x = torch.randn(B, grid * grid, D, generator=g)
    mod = torch.randn(B, 2 * D, generator=g) * 0.5
    wf = torch.randn(3 * p * p, D, generator=g) / D ** 0.5
    bf = torch.randn(3 * p * p, generator=g)
    ref32 = unpatchify_ref(x, mod, wf, bf, p, grid)
    ref_same = unpatchify_ref(c(x), c(mod), c(wf), c(bf), p, grid)
    out = unpatchify(c(x), c(mod), c(wf), c(bf), p, grid, block_m=16)
    H.assert_rule("unpatchify", out, ref32, ref_same, H.atol_for(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("B,T,D", [(1, 8, 64), (2, 5, 192)])
def test_adaln(dtype, B, T, D):
    g = torch.Generator().manual_seed(T * D)
    x = torch.randn(B, T, D, generator=g) * 3 + 1
    mod = torch.randn(B, 2 * D, generator=g)
    c = lambda t: t.to(dtype)  # noqa: E731
    ref32 = adaln_ref(x, mod[:, :D], mod[:, D:])
    ref_same = adaln_ref(c(x), c(mod)[:, :D], c(mod)[:, D:])
    out = adaln_modulate(c(x), c(mod)[:, :D], c(mod)[:, D:])
    H.assert_rule("adaln", out, ref32, ref_same, H.atol_for(dtype))


def test_bad_inputs_raise_clear_errors():
    """Tried: wrong weight shape, unknown epilogue, gated without res, non-contiguous out, wrong cos/sin
    shape, attention with mismatched cache shape / valid length / rotation tables, patch not dividing
    the image, material plane out of range, wrong final-layer mod width."""
    x = torch.randn(1, 16, 64)
    w, b = torch.randn(32, 64), torch.randn(32)
    with pytest.raises(ValueError, match="w must be"):
        fused_linear(x, torch.randn(32, 48), b)
    with pytest.raises(ValueError, match="unknown epilogue"):
        fused_linear(x, w, b, epilogue="relu")
    with pytest.raises(ValueError, match="gated needs res"):
        fused_linear(x, w, b, epilogue="gated", mod=torch.randn(1, 6 * 64))
    with pytest.raises(ValueError, match="contiguous"):
        fused_linear(x, w, b, out=torch.empty(1, 32, 16).transpose(1, 2))
    with pytest.raises(ValueError, match="cos/sin"):
        fused_qkv(x, torch.randn(1, 384), 0, 64, torch.randn(192, 64), torch.randn(192), torch.ones(64),
                  torch.ones(64), torch.ones(16, 64), torch.zeros(16, 64), 1)
    q = torch.randn(1, 1, 16, 64)
    kc = torch.randn(1, 1, 2, 16, 64)
    rc, rs = torch.ones(2, 32), torch.zeros(2, 32)
    with pytest.raises(ValueError, match="k_cache/v_cache"):
        cached_attention(q, torch.randn(1, 1, 2, 8, 64), torch.randn(1, 1, 2, 8, 64), torch.ones(2), rc, rs)
    with pytest.raises(ValueError, match="valid"):
        cached_attention(q, kc, kc.clone(), torch.ones(3), rc, rs)
    with pytest.raises(ValueError, match="rot_cos"):
        cached_attention(q, kc, kc.clone(), torch.ones(2), torch.ones(2, 64), torch.zeros(2, 64))
    with pytest.raises(ValueError, match="not divisible"):
        patch_embed(torch.randn(1, 3, 10, 10), torch.randn(1, 13, 10, 10), torch.randn(32, 3),
                    torch.randn(64, 18 * 16), torch.randn(64), 4, 10)
    with pytest.raises(ValueError, match="material plane"):
        patch_embed(torch.randn(1, 3, 8, 8), torch.randn(1, 13, 8, 8), torch.randn(32, 3),
                    torch.randn(64, 18 * 16), torch.randn(64), 4, 13)
    with pytest.raises(ValueError, match="mod must be"):
        unpatchify(torch.randn(1, 4, 64), torch.randn(1, 64), torch.randn(48, 64), torch.randn(48), 4, 2)


def test_hf_kernels_probe_ignores_this_package():
    """`kernels` is also Hugging Face's package name; transformers must not
    mistake ours for it (it would import hub-kernel symbols from it and break the prompt encoder)."""
    import importlib.util

    from transformers.utils import import_utils

    assert importlib.util.find_spec("kernels") is not None  # ours is importable...
    assert not import_utils.is_kernels_available()          # ...and transformers does not take it for HF's
