"""`FusedStep`: one denoising step of a `neural_renderer.model.CausalDiT` from the fused Triton ops.

Same inputs and output as `CausalDiT.forward_frame(x_noisy, cond, t, d, action, prompt, cache)`:
it writes this frame's keys/values into the cache's current slot, reads every valid slot, and
returns the predicted clean frame. Launches per step: 1 (all adaLN vectors of every block and the
final layer in one product) + 1 (patch embed) + 5 per block + 1 (unpatchify), plus the small
conditioning MLPs, which stay in PyTorch.

Key layout: the blocks keep keys in the kernels' rotate-half layout (kernels.fused_trunk says why), so
the cache this class writes holds keys in that layout: `import_cache` / `export_keys` convert.
"""
from __future__ import annotations

import torch

from kernels.fused_trunk import (HEAD_DIM, block_buffers, export_keys, import_cache, pack_blocks,  # noqa: F401
                                 rope_tables_for_kernels, run_blocks)
from kernels.linear import fused_linear
from kernels.patch import patch_embed, unpatchify


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
            for name, t in pack_blocks(blocks, D, H).items():
                setattr(self, name, t)
            # the final layer's adaLN linear joins the blocks': one (L * 6D + 2D, D) product per step
            self.wmod = torch.cat([self.wmod, model.final.adaLN_modulation[-1].weight.detach()]).contiguous()
            self.bmod = torch.cat([self.bmod, model.final.adaLN_modulation[-1].bias.detach()]).contiguous()
            self.w_embed = model.patch_embed.weight.detach().contiguous()
            self.b_embed = model.patch_embed.bias.detach().contiguous()
            self.mat_table = model.material_embed.weight.detach().to(self.dtype).contiguous()
            self.w_final = model.final.linear.weight.detach().contiguous()
            self.b_final = model.final.linear.bias.detach().contiguous()
            self.rope_cos, self.rope_sin, self.slot_cos, self.slot_sin = rope_tables_for_kernels(
                model.rope_cos_s, model.rope_sin_s, model.rope_cos_t, model.rope_sin_t)

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in vars(self).values() if torch.is_tensor(t))


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
            self._bufs[B] = dict(**block_buffers(B, c.tokens, c.dim, c.heads, c.mlp_ratio, device, dt),
                                 mod=torch.empty(B, 1, self.w.wmod.shape[0], device=device, dtype=dt),
                                 out=torch.empty(B, 3, c.resolution, c.resolution, device=device, dtype=dt))
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
        run_blocks(x, mod, vars(w), cache, (w.rope_cos, w.rope_sin, w.slot_cos, w.slot_sin), c.heads, buf, bm,
                   self.attn_block_n)
        return unpatchify(x, mod[:, L * 6 * D:], w.w_final, w.b_final, c.patch, c.resolution // c.patch,
                          out=buf["out"], block_m=bm)
