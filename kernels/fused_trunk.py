"""The adaLN-Zero transformer blocks (`neural_renderer.model.dit.Block`) from the fused Triton ops: the
one block loop both architectures' fused paths run.

    pack_blocks(blocks, dim, heads)      every block's weights in kernel layout, stacked per layer
    rope_tables_for_kernels(...)         the model's rotary tables as the kernels take them
    run_blocks(x, mod, w, cache, ...)    5 launches per block, in place on x (B, T, D)
    FusedTrunk(model)                    `HourglassGenerator.forward_frame(..., trunk=)`'s contract

Key layout: the model rotates interleaved pairs (2j, 2j+1); the kernels rotate rotate-half pairs
(j, j + 32). Permuting the rows of Wq and Wk (and their biases and RMSNorm weights) by `ROPE_PERM`
turns one into the other and leaves every q . k unchanged, so attention output is identical while the
kernels need no register shuffles. A cache written by these blocks therefore holds keys in that
permuted layout: one run must use them for every forward (`import_cache` / `export_keys` convert).
"""
from __future__ import annotations

import torch

from kernels.attention import cached_attention
from kernels.linear import fused_linear, fused_qkv

HEAD_DIM = 64
# new dim j <- model dim ROPE_PERM[j]: pair j = (2j, 2j+1) becomes (j, j + 32)
ROPE_PERM = torch.cat([torch.arange(0, HEAD_DIM, 2), torch.arange(1, HEAD_DIM, 2)])
ROPE_INV = torch.argsort(ROPE_PERM)


def _permute_heads(t: torch.Tensor, heads: int) -> torch.Tensor:
    """Permute the head-dim rows of a (heads * 64, ...) weight or (heads * 64,) bias."""
    shp = t.shape
    return t.reshape(heads, HEAD_DIM, *shp[1:])[:, ROPE_PERM.to(t.device)].reshape(shp)


@torch.no_grad()
def pack_blocks(blocks, dim: int, heads: int) -> dict[str, torch.Tensor]:
    """Stacked (L, ...) weights of `blocks` in kernel layout; wmod/bmod are every block's adaLN linear
    concatenated, (L * 6D, D), so one product per step gives all the modulation vectors."""
    D = dim

    def qkv(t):
        return torch.cat([_permute_heads(t[:D], heads), _permute_heads(t[D:2 * D], heads), t[2 * D:]])

    perm = ROPE_PERM.to(blocks[0].qkv.weight.device)
    stack = lambda f: torch.stack([f(b).detach() for b in blocks]).contiguous()  # noqa: E731
    return dict(
        wqkv=stack(lambda b: qkv(b.qkv.weight)), bqkv=stack(lambda b: qkv(b.qkv.bias)),          # (L, 3D, D)
        qknorm=stack(lambda b: torch.stack([b.q_norm.weight[perm], b.k_norm.weight[perm]])).float(),  # (L, 2, 64)
        wo=stack(lambda b: b.proj.weight), bo=stack(lambda b: b.proj.bias),                        # (L, D, D)
        w1=stack(lambda b: b.fc1.weight), b1=stack(lambda b: b.fc1.bias),                          # (L, 4D, D)
        w2=stack(lambda b: b.fc2.weight), b2=stack(lambda b: b.fc2.bias),                          # (L, D, 4D)
        wmod=torch.cat([b.adaLN_modulation[-1].weight.detach() for b in blocks]).contiguous(),
        bmod=torch.cat([b.adaLN_modulation[-1].bias.detach() for b in blocks]).contiguous(),
    )


def rope_tables_for_kernels(cos_s, sin_s, cos_t, sin_t):
    """The model's spatial (T, 24) and temporal (slots, 8) tables -> (cos, sin) (T, 32) per rotate-half pair
    for q and k, and (slot_cos, slot_sin) (slots, 32) per key slot; fp32, identity where a table is silent."""
    n_s, dev = cos_s.shape[1], cos_s.device
    T, S = cos_s.shape[0], cos_t.shape[0]
    cos, sin = torch.ones(T, HEAD_DIM // 2, device=dev), torch.zeros(T, HEAD_DIM // 2, device=dev)
    cos[:, :n_s], sin[:, :n_s] = cos_s.float(), sin_s.float()
    slot_cos, slot_sin = torch.ones(S, HEAD_DIM // 2, device=dev), torch.zeros(S, HEAD_DIM // 2, device=dev)
    slot_cos[:, n_s:], slot_sin[:, n_s:] = cos_t.float().to(dev), sin_t.float().to(dev)
    return cos, sin, slot_cos, slot_sin


def run_blocks(x, mod, w: dict, cache, rope, heads: int, bufs: dict, block_m: int = 64, attn_block_n: int = 128):
    """Every block on x (B, T, D) in place. mod (B, >= L * 6D): block i's adaLN vectors at [i * 6D, (i+1) * 6D).
    rope = (cos, sin, slot_cos, slot_sin) from `rope_tables_for_kernels`; bufs: q (B, H, T, 64), a (B, T, D),
    h (B, T, mlp * D) scratch. Each block writes its k/v into the cache's current slot (kernel layout)."""
    D = x.shape[-1]
    cos, sin, slot_cos, slot_sin = rope
    for i in range(w["wqkv"].shape[0]):
        m = mod[:, i * 6 * D:(i + 1) * 6 * D]
        kc, vc = cache.layer(i)                                                           # (B, H, S, T, 64)
        fused_qkv(x, m, 0, D, w["wqkv"][i], w["bqkv"][i], w["qknorm"][i, 0], w["qknorm"][i, 1], cos, sin, heads,
                  q_out=bufs["q"], k_dst=kc[:, :, -1], v_dst=vc[:, :, -1], block_m=block_m)
        cached_attention(bufs["q"], kc, vc, cache.valid, slot_cos, slot_sin, out=bufs["a"], block_m=block_m,
                         block_n=attn_block_n)
        fused_linear(bufs["a"], w["wo"][i], w["bo"][i], epilogue="gated", mod=m, gate_off=2 * D, res=x, out=x,
                     block_m=block_m)
        fused_linear(x, w["w1"][i], w["b1"][i], prologue="adaln", mod=m, shift_off=3 * D, scale_off=4 * D,
                     epilogue="gelu", out=bufs["h"], block_m=block_m)
        fused_linear(bufs["h"], w["w2"][i], w["b2"][i], epilogue="gated", mod=m, gate_off=5 * D, res=x, out=x,
                     block_m=block_m)
    return x


def block_buffers(B: int, T: int, dim: int, heads: int, mlp_ratio: int, device, dtype) -> dict:
    return dict(x=torch.empty(B, T, dim, device=device, dtype=dtype),
                q=torch.empty(B, heads, T, HEAD_DIM, device=device, dtype=dtype),
                a=torch.empty(B, T, dim, device=device, dtype=dtype),
                h=torch.empty(B, T, mlp_ratio * dim, device=device, dtype=dtype))


class FusedTrunk:
    """The hourglass generator's transformer trunk as fused ops: pass as `forward_frame(..., trunk=)`.
    Works at any token grid (rotary tables and scratch buffers are made once per grid and batch) and
    returns a static buffer the next call overwrites (CUDA-graph friendly)."""

    def __init__(self, model, block_m: int = 64, attn_block_n: int = 128):
        cfg = model.cfg
        self.model, self.heads, self.mlp_ratio = model, cfg.heads, cfg.mlp_ratio
        self.w = pack_blocks(model.blocks, cfg.dim, cfg.heads)
        self.dtype = self.w["wqkv"].dtype
        self.block_m, self.attn_block_n = block_m, attn_block_n
        self._rope: dict = {}
        self._bufs: dict = {}

    def tables(self, grid, device):
        """The kernels' rotary tables (cos, sin, slot_cos, slot_sin) for a token grid, made once per grid."""
        if grid not in self._rope:
            cs, ss = self.model.rope_spatial(*grid, device)
            self._rope[grid] = rope_tables_for_kernels(cs, ss, self.model.rope_cos_t, self.model.rope_sin_t)
        return self._rope[grid]

    def __call__(self, z: torch.Tensor, c: torch.Tensor, grid: tuple[int, int], cache) -> torch.Tensor:
        """z (B, 1, T, D), c (B, 1, D) -> (B, 1, T, D); `cache` holds keys in kernel layout."""
        B, Fr, T, D = z.shape
        if Fr != 1:
            raise ValueError(f"the fused trunk streams one frame at a time, got {Fr}")
        key = (B, T, str(z.device))
        if key not in self._bufs:
            self._bufs[key] = block_buffers(B, T, D, self.heads, self.mlp_ratio, z.device, self.dtype)
            self._bufs[key]["mod"] = torch.empty(B, 1, self.w["wmod"].shape[0], device=z.device, dtype=self.dtype)
        buf = self._bufs[key]
        x = buf["x"]
        x.copy_(z.reshape(B, T, D))
        fused_linear(c.to(self.dtype), self.w["wmod"], self.w["bmod"], prologue="silu", out=buf["mod"], block_m=16)
        run_blocks(x, buf["mod"][:, 0], self.w, cache, self.tables(grid, z.device), self.heads, buf,
                   self.block_m, self.attn_block_n)
        return x.view(B, 1, T, D)


def import_cache(model_cache, into=None):
    """A copy of a model-layout KVCache with keys in kernel layout (or copied into `into`)."""
    import copy

    dst = into if into is not None else copy.copy(model_cache)
    if into is None:
        dst.k, dst.v = model_cache.k.clone(), model_cache.v.clone()
        dst.valid = model_cache.valid.clone()
    dst.k.copy_(model_cache.k[..., ROPE_PERM.to(model_cache.k.device)])
    dst.v.copy_(model_cache.v)
    dst.valid.copy_(model_cache.valid)
    return dst


def export_keys(k: torch.Tensor) -> torch.Tensor:
    """Kernel-layout keys (..., 64) -> the model's layout."""
    return k[..., ROPE_INV.to(k.device)]
