"""FusedStep (the fused Triton ops assembled from a CausalDiT's weights) against the model's own
PyTorch `forward_frame`, including the keys/values it writes into the cache's current slot."""
import _kernels_helpers as H  # noqa: F401  (sets TRITON_INTERPRET before triton is imported)

import pytest  # noqa: E402
import torch  # noqa: E402

from kernels.fused_model import FusedStep, export_keys, import_cache  # noqa: E402
from neural_renderer.model.inputs import COND_CHANNELS, MATERIAL_CHANNEL  # noqa: E402
from neural_renderer.model.kv_cache import KVCache  # noqa: E402
from neural_renderer.model.dit import CausalDiT  # noqa: E402


def _inputs(cfg, B, g):
    R = cfg.resolution
    cond = torch.randn(B, COND_CHANNELS, R, R, generator=g)
    cond[:, MATERIAL_CHANNEL] = torch.randint(0, 32, (B, R, R), generator=g).float()
    return (torch.randn(B, 3, R, R, generator=g), cond, torch.rand(B, generator=g), torch.rand(B, generator=g),
            torch.randn(B, 9, generator=g), torch.randn(B, 384, generator=g))


def _cache(model, B, frames, g, dtype):
    cache = KVCache.for_model(model, B, dtype=dtype)
    cache.k.copy_(torch.randn(cache.k.shape, generator=g))
    cache.v.copy_(torch.randn(cache.v.shape, generator=g))
    cache.frames = frames
    cache.valid.copy_(cache.valid_table[min(frames, len(cache.valid_table) - 1)])
    return cache


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("B,frames,kw", [(1, 3, {}), (2, 1, dict(window=2, sinks=1))])
def test_fused_step_matches_forward_frame(dtype, B, frames, kw):
    cfg = H.tiny_cfg(**kw)
    model32 = H.randomize_(CausalDiT(cfg).eval(), seed=B + frames)
    g = torch.Generator().manual_seed(7)
    inp = _inputs(cfg, B, g)
    cache32 = _cache(model32, B, frames, torch.Generator().manual_seed(3), torch.float32)
    cache_same = _cache(model32, B, frames, torch.Generator().manual_seed(3), dtype)
    with torch.no_grad():
        ref32 = model32.forward_frame(*inp, cache32)
        model_d = H.randomize_(CausalDiT(cfg).eval(), seed=B + frames).to(dtype)
        ref_same = model_d.forward_frame(inp[0].to(dtype), inp[1].to(dtype), *inp[2:4], inp[4].to(dtype),
                                         inp[5].to(dtype), cache_same)
    kcache = import_cache(_cache(model_d, B, frames, torch.Generator().manual_seed(3), dtype))
    out = FusedStep(model_d, block_m=16, attn_block_n=16)(inp[0].to(dtype), inp[1].to(dtype), *inp[2:4],
                                                          inp[4].to(dtype), inp[5].to(dtype), kcache)
    H.assert_rule("step output", out, ref32, ref_same, H.atol_for(dtype))
    H.assert_rule("current-slot keys", export_keys(kcache.k[:, :, :, -1]), cache32.k[:, :, :, -1],
                  cache_same.k[:, :, :, -1], H.atol_for(dtype))
    H.assert_rule("current-slot values", kcache.v[:, :, :, -1], cache32.v[:, :, :, -1], cache_same.v[:, :, :, -1],
                  H.atol_for(dtype))
    # older slots untouched
    assert torch.equal(export_keys(kcache.k[:, :, :, :-1]), cache_same.k[:, :, :, :-1])
