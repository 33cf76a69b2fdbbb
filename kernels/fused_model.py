"""`FusedStep`: one denoising step of a `neural_renderer.model.CausalDiT` from the fused Triton ops.

Same inputs and output as `CausalDiT.forward_frame(x_noisy, cond, t, d, action, prompt, cache)`:
it writes this frame's keys/values into the cache's current slot, reads every valid slot, and
returns the predicted clean frame. Launches per step: 1 (all adaLN vectors of every block and the
final layer in one product) + 1 (patch embed) + 5 per block + 1 (unpatchify), plus the small
conditioning MLPs, which stay in PyTorch.

Key layout: the model rotates interleaved pairs (2j, 2j+1); the kernels rotate rotate-half pairs
(j, j + 32). Permuting the rows of Wq and Wk (and their biases and RMSNorm weights) by
`ROPE_PERM` turns one into the other and leaves every q . k unchanged, so attention output is
identical while the kernels need no register shuffles. The cache this class writes therefore holds
keys in that permuted layout: `import_cache` / `export_keys` convert to and from the model's.
"""
from __future__ import annotations

import torch

from kernels.attention import cached_attention
from kernels.linear import fused_linear, fused_qkv
from kernels.patch import patch_embed, unpatchify

HEAD_DIM = 64
# new dim j <- model dim ROPE_PERM[j]: pair j = (2j, 2j+1) becomes (j, j + 32)
ROPE_PERM = torch.cat([torch.arange(0, HEAD_DIM, 2), torch.arange(1, HEAD_DIM, 2)])
ROPE_INV = torch.argsort(ROPE_PERM)


def _permute_heads(t: torch.Tensor, heads: int) -> torch.Tensor:
    """Permute the head-dim rows of a (heads * 64, ...) weight or (heads * 64,) bias."""
    shp = t.shape
    return t.reshape(heads, HEAD_DIM, *shp[1:])[:, ROPE_PERM.to(t.device)].reshape(shp)


class PackedWeights:
    """Every weight of a step in kernel layout, stacked per layer (the megakernel indexes by layer)."""

    def __init__(self, model):
        cfg = model.cfg
        D, H, L = cfg.dim, cfg.heads, cfg.depth
        blocks = model.blocks
        self.cfg = cfg
        dev = next(model.parameters()).device
        self.dtype = next(model.parameters()).dtype
        with torch.no_grad():
            def qkv_w(b):
                w = b.qkv.weight.detach()
                return torch.cat([_permute_heads(w[:D], H), _permute_heads(w[D:2 * D], H), w[2 * D:]])

            def qkv_b(b):
                v = b.qkv.bias.detach()
                return torch.cat([_permute_heads(v[:D], H), _permute_heads(v[D:2 * D], H), v[2 * D:]])

            self.wqkv = torch.stack([qkv_w(b) for b in blocks]).contiguous()            # (L, 3D, D)
            self.bqkv = torch.stack([qkv_b(b) for b in blocks]).contiguous()            # (L, 3D)
            perm = ROPE_PERM.to(dev)
            self.qknorm = torch.stack([torch.stack([b.q_norm.weight.detach()[perm], b.k_norm.weight.detach()[perm]])
                                       for b in blocks]).float().contiguous()          # (L, 2, 64)
            self.wo = torch.stack([b.proj.weight.detach() for b in blocks]).contiguous()  # (L, D, D)
            self.bo = torch.stack([b.proj.bias.detach() for b in blocks]).contiguous()
            self.w1 = torch.stack([b.fc1.weight.detach() for b in blocks]).contiguous()   # (L, 4D, D)
            self.b1 = torch.stack([b.fc1.bias.detach() for b in blocks]).contiguous()
            self.w2 = torch.stack([b.fc2.weight.detach() for b in blocks]).contiguous()   # (L, D, 4D)
            self.b2 = torch.stack([b.fc2.bias.detach() for b in blocks]).contiguous()
            # every adaLN linear, blocks then final layer: one (L * 6D + 2D, D) product per step
            self.wmod = torch.cat([b.adaLN_modulation[-1].weight.detach() for b in blocks]
                                  + [model.final.adaLN_modulation[-1].weight.detach()]).contiguous()
            self.bmod = torch.cat([b.adaLN_modulation[-1].bias.detach() for b in blocks]
                                  + [model.final.adaLN_modulation[-1].bias.detach()]).contiguous()
            self.w_embed = model.patch_embed.weight.detach().contiguous()
            self.b_embed = model.patch_embed.bias.detach().contiguous()
            self.mat_table = model.material_embed.weight.detach().to(self.dtype).contiguous()
            self.w_final = model.final.linear.weight.detach().contiguous()
            self.b_final = model.final.linear.bias.detach().contiguous()
            # rotary tables per rotate-half pair (fp32): spatial (T, 32) for q and k, temporal (slots, 32) per key slot
            n_s = model.rope_cos_s.shape[1]
            T, S = model.rope_cos_s.shape[0], model.rope_cos_t.shape[0]
            self.rope_cos = torch.ones(T, HEAD_DIM // 2, device=dev)
            self.rope_sin = torch.zeros(T, HEAD_DIM // 2, device=dev)
            self.rope_cos[:, :n_s] = model.rope_cos_s.float()
            self.rope_sin[:, :n_s] = model.rope_sin_s.float()
            self.slot_cos = torch.ones(S, HEAD_DIM // 2, device=dev)
            self.slot_sin = torch.zeros(S, HEAD_DIM // 2, device=dev)
            self.slot_cos[:, n_s:] = model.rope_cos_t.float()
            self.slot_sin[:, n_s:] = model.rope_sin_t.float()

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in vars(self).values() if torch.is_tensor(t))


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


class FusedStep:
    def __init__(self, model, block_m: int = 64, attn_block_n: int = 128):
        self.model = model
        self.cfg = model.cfg
        self.w = PackedWeights(model)
        self.block_m, self.attn_block_n = block_m, attn_block_n
        self._bufs: dict = {}

    def _buffers(self, B, device):
        if B not in self._bufs:
            c, dt = self.cfg, self.w.dtype
            T, D = c.tokens, c.dim
            self._bufs[B] = dict(
                x=torch.empty(B, T, D, device=device, dtype=dt),
                q=torch.empty(B, c.heads, T, HEAD_DIM, device=device, dtype=dt),
                a=torch.empty(B, T, D, device=device, dtype=dt),
                h=torch.empty(B, T, c.mlp_ratio * D, device=device, dtype=dt),
                mod=torch.empty(B, 1, self.w.wmod.shape[0], device=device, dtype=dt),
                out=torch.empty(B, 3, c.resolution, c.resolution, device=device, dtype=dt),
            )
        return self._bufs[B]

    @torch.no_grad()
    def __call__(self, x_noisy, cond, t, d, action, prompt, cache) -> torch.Tensor:
        """Same contract as CausalDiT.forward_frame; `cache` holds keys in kernel layout (import_cache)."""
        from neural_renderer.model.inputs import MATERIAL_CHANNEL

        c, w = self.cfg, self.w
        B = x_noisy.shape[0]
        D, L, bm = c.dim, c.depth, self.block_m
        buf = self._buffers(B, x_noisy.device)
        cvec = self.model.conditioning(t[:, None], d[:, None], action[:, None], prompt)   # (B, 1, D)
        fused_linear(cvec.to(w.dtype), w.wmod, w.bmod, prologue="silu", out=buf["mod"], block_m=16)
        mod = buf["mod"][:, 0]                                                            # (B, L*6D + 2D)
        x = buf["x"]
        patch_embed(x_noisy.to(w.dtype), cond[:, : self.model.cond_planes].to(w.dtype), w.mat_table, w.w_embed, w.b_embed, c.patch,
                    MATERIAL_CHANNEL, out=x, block_m=bm)
        for i in range(L):
            m = mod[:, i * 6 * D:(i + 1) * 6 * D]
            kc, vc = cache.layer(i)                                                       # (B, H, S, T, 64)
            fused_qkv(x, m, 0, D, w.wqkv[i], w.bqkv[i], w.qknorm[i, 0], w.qknorm[i, 1], w.rope_cos, w.rope_sin,
                      c.heads, q_out=buf["q"], k_dst=kc[:, :, -1], v_dst=vc[:, :, -1], block_m=bm)
            cached_attention(buf["q"], kc, vc, cache.valid, w.slot_cos, w.slot_sin, out=buf["a"], block_m=bm,
                             block_n=self.attn_block_n)
            fused_linear(buf["a"], w.wo[i], w.bo[i], epilogue="gated", mod=m, gate_off=2 * D, res=x, out=x, block_m=bm)
            fused_linear(x, w.w1[i], w.b1[i], prologue="adaln", mod=m, shift_off=3 * D, scale_off=4 * D,
                         epilogue="gelu", out=buf["h"], block_m=bm)
            fused_linear(buf["h"], w.w2[i], w.b2[i], epilogue="gated", mod=m, gate_off=5 * D, res=x, out=x,
                         block_m=bm)
        return unpatchify(x, mod[:, L * 6 * D:], w.w_final, w.b_final, c.patch, c.resolution // c.patch,
                          out=buf["out"], block_m=bm)
