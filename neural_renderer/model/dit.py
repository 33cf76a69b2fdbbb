"""The causal generator: a DiT over raw pixel patches of the current frame (x-prediction, JiT style).

Two parts (the config and the size registry live in `registry.py`):
- the building blocks (timestep embedding, rotary tables, the adaLN-Zero `Block`, the final layer);
- `CausalDiT` with two entry points sharing every weight:
  `forward_clip` (training: a whole clip of L frames in one pass, each frame attending to exactly the
  frames it would see at inference) and `forward_frame` (streaming: the current frame against a
  `KVCache`).

Temporal context rule, identical in training and inference (so train == test):
frame i attends to the current frame, to the W frames before it (the window), and to the first S
frames of the run (sinks) when those are older than the window. Keys get a temporal rotary angle from
their *age* (0 = current, 1..W = window, W+1+s = sink s): relative to the current frame, bounded, so a
run can last forever. Queries get no temporal rotation, so no absolute frame index ever appears.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
import torch.nn as nn
import torch.nn.functional as F

from bridge.channels import ACTION_DIM
from neural_renderer.model.inputs import BASE_COND_CHANNELS, MATERIAL_BUCKETS, MATERIAL_CHANNEL

if TYPE_CHECKING:  # the registry builds this module's classes, so it is imported only for annotations
    from neural_renderer.model.registry import GeneratorConfig

PROMPT_DIM = 384  # all-MiniLM-L6-v2
HEAD_DIM = 64
MATERIAL_EMBED = 3




# ---------------------------------------------------------------------------------------------
# Small pieces


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale) + shift


def sinusoidal(v: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """(...,) -> (..., dim) sinusoidal features of a scalar (DiT's timestep embedding)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=v.device, dtype=torch.float32) / half)
    args = v.float()[..., None] * freqs
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class ScalarEmbedder(nn.Module):
    """A scalar in [0, 1] (noise level t, step size d) -> (…, dim)."""

    def __init__(self, dim: int, freq_dim: int = 128):
        super().__init__()
        self.freq_dim = freq_dim
        self.mlp = nn.Sequential(nn.Linear(freq_dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        return self.mlp(sinusoidal(v * 1000.0, self.freq_dim).to(self.mlp[0].weight.dtype))


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight.float()).to(x.dtype)


# Head dim 64 = 32 rotary pairs: 12 for x, 12 for y, 8 for the frame age.
ROPE_PAIRS_X, ROPE_PAIRS_Y, ROPE_PAIRS_T = 12, 12, 8


def rope_tables(grid_h: int, grid_w: int, slots_age: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rotary cos/sin tables for a grid_h x grid_w token grid (row-major tokens).

    Returns spatial (cos, sin) of shape (T, 24) applied to pairs 0..23 of q and k, and temporal
    (cos, sin) of shape (slots, 8) applied to pairs 24..31 of the keys only, by key age.
    """
    ys, xs = torch.meshgrid(torch.arange(grid_h), torch.arange(grid_w), indexing="ij")
    fx = 1.0 / (100.0 ** (torch.arange(ROPE_PAIRS_X) / ROPE_PAIRS_X))
    fy = 1.0 / (100.0 ** (torch.arange(ROPE_PAIRS_Y) / ROPE_PAIRS_Y))
    ang_s = torch.cat([xs.reshape(-1, 1).float() * fx, ys.reshape(-1, 1).float() * fy], dim=1)  # (T, 24)
    ft = 1.0 / (20.0 ** (torch.arange(ROPE_PAIRS_T) / ROPE_PAIRS_T))
    ang_t = slots_age.float()[:, None] * ft  # (slots, 8)
    return ang_s.cos(), ang_s.sin(), ang_t.cos(), ang_t.sin()


def rotate_pairs(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate consecutive pairs (x0, x1) of the last dim by the angles whose cos/sin are given."""
    x0, x1 = x[..., 0::2], x[..., 1::2]
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    return torch.stack([x0 * cos - x1 * sin, x0 * sin + x1 * cos], dim=-1).flatten(-2)


def apply_spatial_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x (..., T, 64): rotate pairs 0..23 by token position."""
    n = 2 * (ROPE_PAIRS_X + ROPE_PAIRS_Y)
    return torch.cat([rotate_pairs(x[..., :n], cos, sin), x[..., n:]], dim=-1)


def apply_temporal_rope(k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """k (..., slots, T, 64): rotate pairs 24..31 by the slot's age (cos/sin (slots, 8))."""
    n = 2 * (ROPE_PAIRS_X + ROPE_PAIRS_Y)
    return torch.cat([k[..., :n], rotate_pairs(k[..., n:], cos[:, None], sin[:, None])], dim=-1)


def slot_ages(window: int, sinks: int) -> torch.Tensor:
    """Each KV-cache slot's static age, in slot order (sinks, window oldest first, current): the temporal
    rotary angle of its keys. Sink s is W + 1 + s frames old, window slot a is a frames old, current 0."""
    return torch.tensor([window + 1 + s for s in range(sinks)] + list(range(window, 0, -1)) + [0])


def clip_context(L: int, window: int, sinks: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """The temporal context rule of training, identical to the KV cache's when streaming: for each
    query frame i of a clip, which frame fills each slot (L, slots), and whether it is present."""
    W, S = window, sinks
    slots = S + W + 1
    idx = torch.zeros(L, slots, dtype=torch.long)
    valid = torch.zeros(L, slots, dtype=torch.bool)
    for i in range(L):
        for s in range(S):  # a sink counts only once it has left the window
            idx[i, s], valid[i, s] = s, s < i - W
        for a in range(W, 0, -1):
            j = S + W - a
            idx[i, j], valid[i, j] = max(i - a, 0), i - a >= 0
        idx[i, -1], valid[i, -1] = i, True
    return idx.to(device), valid.to(device)


def cache_attention(cache, rope_cos_t: torch.Tensor, rope_sin_t: torch.Tensor):
    """Streaming context for either architecture's trunk: `attend_for_layer(i)` writes the current frame's
    k/v into layer i's current cache slot and attends over every slot (temporal rotary by slot age, slots
    not filled yet masked)."""
    T = cache.k.shape[-2]
    mask = cache.valid[:, None].expand(-1, T).reshape(1, 1, 1, -1)  # (1, 1, 1, slots*T)

    def attend_for_layer(i):
        def attend(q, k, v):  # (B, H, 1, T, 64)
            kc, vc = cache.layer(i)  # (B, H, slots, T, 64)
            kc[:, :, -1] = k[:, :, 0]
            vc[:, :, -1] = v[:, :, 0]
            B, H, slots, Tt, Dh = kc.shape
            kk = apply_temporal_rope(kc, rope_cos_t, rope_sin_t).reshape(B, H, slots * Tt, Dh)
            a = F.scaled_dot_product_attention(q[:, :, 0], kk, vc.reshape(B, H, slots * Tt, Dh), attn_mask=mask)
            return a[:, :, None]

        return attend

    return attend_for_layer


# ---------------------------------------------------------------------------------------------
# KERNEL CONTRACT: the block below is what kernels/ fuses. Shapes: x (B, F, T, D) with F frames
# of T tokens (F = 1 when streaming); c (B, F, D) one conditioning vector per frame. q, k: per-head
# RMSNorm (learned weight, eps 1e-6), then 2D rotary on pairs 0..23 (x: 0..11, y: 12..23, consecutive
# pairs (2i, 2i+1), tables rope_tables()). Streaming: the current k/v go into the cache's last slot;
# the keys of all S + W + 1 slots (B, H, slots, T, 64) get the temporal rotary of their slot's static
# age on pairs 24..31 (queries get none); slots not yet filled are masked by KVCache.valid.
# Attention over slots*T keys, no mask inside a frame, scale 1/sqrt(64).


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: int = 4):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.q_norm = RMSNorm(HEAD_DIM)
        self.k_norm = RMSNorm(HEAD_DIM)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.fc1 = nn.Linear(dim, mlp_ratio * dim)
        self.fc2 = nn.Linear(mlp_ratio * dim, dim)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))

    def forward(self, x: torch.Tensor, c: torch.Tensor, rope_s, attend) -> torch.Tensor:
        """x (B, F, T, D), c (B, F, D); `attend(q, k, v) -> (B, H, F, T, 64)` supplies the context
        (the clip's own frames in training, the KV cache when streaming)."""
        B, Fr, T, D = x.shape
        shift1, scale1, gate1, shift2, scale2, gate2 = self.adaLN_modulation(c)[:, :, None].chunk(6, dim=-1)
        h = modulate(self.norm1(x), shift1, scale1)
        q, k, v = self.qkv(h).view(B, Fr, T, 3, self.heads, HEAD_DIM).permute(3, 0, 4, 1, 2, 5)  # 3x (B, H, F, T, 64)
        q = apply_spatial_rope(self.q_norm(q), *rope_s)
        k = apply_spatial_rope(self.k_norm(k), *rope_s)
        a = attend(q, k, v)  # (B, H, F, T, 64)
        x = x + gate1 * self.proj(a.permute(0, 2, 3, 1, 4).reshape(B, Fr, T, D))
        h = modulate(self.norm2(x), shift2, scale2)
        return x + gate2 * self.fc2(F.gelu(self.fc1(h), approximate="tanh"))


class FinalLayer(nn.Module):
    def __init__(self, dim: int, patch: int, out_channels: int = 3):
        super().__init__()
        self.norm = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(dim, patch * patch * out_channels)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale = self.adaLN_modulation(c)[:, :, None].chunk(2, dim=-1)
        return self.linear(modulate(self.norm(x), shift, scale))


# ---------------------------------------------------------------------------------------------


class CausalDiT(nn.Module):
    def __init__(self, cfg: GeneratorConfig):
        super().__init__()
        assert cfg.dim == cfg.heads * HEAD_DIM, "head dim is 64"
        assert cfg.resolution % cfg.patch == 0
        assert not cfg.world_freqs, "the DiT reads no world group"
        self.cfg = cfg
        self.cond_planes = BASE_COND_CHANNELS  # the conditioning planes it reads; later ones are ignored
        p = cfg.patch
        self.grid = cfg.resolution // p
        self.material_embed = nn.Embedding(MATERIAL_BUCKETS, MATERIAL_EMBED)
        c_in = 3 + BASE_COND_CHANNELS - 1 + MATERIAL_EMBED  # noisy RGB + conditioning (material id -> embedding)
        self.patch_embed = nn.Linear(c_in * p * p, cfg.dim)
        self.t_embed = ScalarEmbedder(cfg.dim)
        self.d_embed = ScalarEmbedder(cfg.dim)
        self.action_embed = nn.Sequential(nn.Linear(ACTION_DIM, cfg.dim), nn.SiLU(), nn.Linear(cfg.dim, cfg.dim))
        self.prompt_embed = nn.Linear(PROMPT_DIM, cfg.dim)
        self.blocks = nn.ModuleList([Block(cfg.dim, cfg.heads, cfg.mlp_ratio) for _ in range(cfg.depth)])
        self.final = FinalLayer(cfg.dim, p)
        cs, ss, ct, st = rope_tables(self.grid, self.grid, slot_ages(cfg.window, cfg.sinks))
        for n, t in (("rope_cos_s", cs), ("rope_sin_s", ss), ("rope_cos_t", ct), ("rope_sin_t", st)):
            self.register_buffer(n, t, persistent=False)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        def _basic(m):
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

        self.apply(_basic)
        nn.init.normal_(self.material_embed.weight, std=0.5)
        for emb in (self.t_embed, self.d_embed):
            nn.init.normal_(emb.mlp[0].weight, std=0.02)
            nn.init.normal_(emb.mlp[2].weight, std=0.02)
        nn.init.zeros_(self.d_embed.mlp[2].weight)  # d carries nothing until shortcut training uses it
        for blk in self.blocks:
            nn.init.zeros_(blk.adaLN_modulation[-1].weight)
            nn.init.zeros_(blk.adaLN_modulation[-1].bias)
        nn.init.zeros_(self.final.adaLN_modulation[-1].weight)
        nn.init.zeros_(self.final.adaLN_modulation[-1].bias)
        nn.init.zeros_(self.final.linear.weight)
        nn.init.zeros_(self.final.linear.bias)

    # -- shared pieces -------------------------------------------------------------------------

    def conditioning(self, t, d, action, prompt) -> torch.Tensor:
        """t, d (B, F); action (B, F, A); prompt (B, 384) -> c (B, F, D)."""
        return self.t_embed(t) + self.d_embed(d) + self.action_embed(action) + self.prompt_embed(prompt)[:, None]

    def embed(self, x_noisy: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """x_noisy (B, F, 3, H, W) in [-1, 1], cond (B, F, COND_CHANNELS, H, W) -> tokens (B, F, T, D)."""
        B, Fr, _, H, W = x_noisy.shape
        cond = cond[:, :, : self.cond_planes]
        mat = cond[:, :, MATERIAL_CHANNEL].round().long().clamp_(0, MATERIAL_BUCKETS - 1)
        mat = self.material_embed(mat).permute(0, 1, 4, 2, 3).to(x_noisy.dtype)  # (B, F, 3, H, W)
        rest = torch.cat([cond[:, :, :MATERIAL_CHANNEL], cond[:, :, MATERIAL_CHANNEL + 1 :]], dim=2)
        x = torch.cat([x_noisy, rest.to(x_noisy.dtype), mat], dim=2)  # (B, F, C, H, W)
        p, g = self.cfg.patch, self.grid
        x = x.view(B, Fr, -1, g, p, g, p).permute(0, 1, 3, 5, 2, 4, 6).reshape(B, Fr, g * g, -1)
        return self.patch_embed(x)

    def unpatchify(self, y: torch.Tensor) -> torch.Tensor:
        B, Fr, T, _ = y.shape
        p, g = self.cfg.patch, self.grid
        return y.view(B, Fr, g, g, 3, p, p).permute(0, 1, 4, 2, 5, 3, 6).reshape(B, Fr, 3, g * p, g * p)

    def _run(self, x_noisy, cond, t, d, action, prompt, attend_for_layer) -> torch.Tensor:
        x = self.embed(x_noisy, cond)
        c = self.conditioning(t, d, action, prompt)
        rope_s = (self.rope_cos_s, self.rope_sin_s)
        for i, blk in enumerate(self.blocks):
            x = blk(x, c, rope_s, attend_for_layer(i))
        return self.unpatchify(self.final(x, c))

    # -- training: a clip in one pass ------------------------------------------------------------

    def clip_context(self, L: int, device) -> tuple[torch.Tensor, torch.Tensor]:
        return clip_context(L, self.cfg.window, self.cfg.sinks, device)

    def forward_clip(self, x_noisy, cond, t, d, action, prompt) -> torch.Tensor:
        """x_noisy (B, L, 3, H, W) in [-1, 1], cond (B, L, C, H, W), t/d (B, L), action (B, L, A),
        prompt (B, 384) -> predicted clean frames (B, L, 3, H, W). Frame i sees exactly the frames
        it would see streaming (`clip_context`)."""
        L, T, slots = x_noisy.shape[1], self.cfg.tokens, self.cfg.slots
        idx, valid = self.clip_context(L, x_noisy.device)
        mask = valid[:, None, :, None].expand(L, 1, slots, T).reshape(L, 1, slots * T)  # (L, 1, slots*T)

        def attend(q, k, v):  # q, k, v (B, H, L, T, 64)
            B, H, _, _, Dh = k.shape
            kk = apply_temporal_rope(k[:, :, idx], self.rope_cos_t, self.rope_sin_t).reshape(B, H * L, slots * T, Dh)
            vv = v[:, :, idx].reshape(B, H * L, slots * T, Dh)
            m = mask[None].expand(H, L, 1, slots * T).reshape(1, H * L, 1, slots * T)
            # 4-D (B, H*L, ...) so the memory-efficient kernel runs instead of the math fallback
            a = F.scaled_dot_product_attention(q.reshape(B, H * L, T, Dh), kk, vv, attn_mask=m)
            return a.view(B, H, L, T, Dh)

        return self._run(x_noisy, cond, t, d, action, prompt, lambda i: attend)

    def forward(self, x_noisy, cond, t, d, action, prompt) -> torch.Tensor:
        return self.forward_clip(x_noisy, cond, t, d, action, prompt)

    # -- streaming: the current frame against the KV cache ----------------------------------------

    def forward_frame(self, x_noisy, cond, t, d, action, prompt, cache) -> torch.Tensor:
        """x_noisy (B, 3, H, W), cond (B, C, H, W), t/d (B,), action (B, A), prompt (B, 384) ->
        predicted clean frame (B, 3, H, W). Writes this frame's K/V into the cache's current slot;
        `cache.advance()` afterwards keeps it as context."""
        attend_for_layer = cache_attention(cache, self.rope_cos_t, self.rope_sin_t)
        out = self._run(x_noisy[:, None], cond[:, None], t[:, None], d[:, None], action[:, None], prompt, attend_for_layer)
        return out[:, 0]
