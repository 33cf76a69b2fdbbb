"""`HourglassGenerator`: sharp pixels at any frame size.

A full-resolution convolutional encoder over the inputs, with skip connections into a convolutional
decoder, and the causal transformer trunk of the DiT (adaLN-Zero blocks, 2-D rotary positions, the
same KV cache over earlier frames) at 1/`down` of the resolution. x-prediction flow matching: the
network returns the clean frame.

Inputs per frame, concatenated into the stem (`in_planes`):
  noisy RGB (3) | engine conditioning without the material id (BASE_COND_CHANNELS - 1) | material embedding
  (MATERIAL_EMBED) | reprojected history (HISTORY_PLANES: previous output warped by the engine's motion,
  its valid mask, a presence flag) | with cfg.world_freqs, the world group (its flag and WORLD_PLANES).
The world group comes last so that a checkpoint from before it widens by zero stem columns at the end
(`widen_stem`) and computes exactly what it did.
One conditioning vector per frame (noise level t, step size d, history noise level h, action, prompt)
drives adaLN in the trunk and FiLM in every convolutional block.

Any frame size whose sides are multiples of `down` runs as is (the rotary tables and the KV cache are
sized per frame size); other sizes are edge-padded up to the next multiple and cropped back.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn as nn
import torch.nn.functional as F

from bridge.channels import ACTION_DIM
from neural_renderer.model.inputs import (BASE_COND_CHANNELS, COND_CHANNELS, MATERIAL_BUCKETS, MATERIAL_CHANNEL,
                                          WORLD_PERIODS)
from neural_renderer.model.history import HISTORY_PLANES
from neural_renderer.model.dit import (HEAD_DIM, MATERIAL_EMBED, PROMPT_DIM, Block, ScalarEmbedder, apply_temporal_rope,
                                       cache_attention, clip_context, rope_tables, slot_ages)

if TYPE_CHECKING:  # the registry builds this module's model, so it is imported only for annotations
    from neural_renderer.model.registry import GeneratorConfig


def _groups(ch: int) -> int:
    return next(g for g in (8, 4, 2, 1) if ch % g == 0)


class FiLMResBlock(nn.Module):
    """GroupNorm -> FiLM(c) -> SiLU -> conv3x3 -> GroupNorm -> SiLU -> conv3x3 (zero-init), residual."""

    def __init__(self, ch: int, cdim: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(_groups(ch), ch, affine=False)
        self.film = nn.Linear(cdim, 2 * ch)
        self.conv1 = nn.Conv2d(ch, ch, 3, padding=1)
        self.norm2 = nn.GroupNorm(_groups(ch), ch)
        self.conv2 = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """x (N, C, H, W), c (N, cdim)."""
        scale, shift = self.film(c)[:, :, None, None].chunk(2, dim=1)
        h = F.silu(self.norm1(x) * (1 + scale) + shift)
        h = F.silu(self.norm2(self.conv1(h)))
        return x + self.conv2(h)


class HourglassGenerator(nn.Module):
    def __init__(self, cfg: GeneratorConfig):
        super().__init__()
        assert cfg.dim == cfg.heads * HEAD_DIM, "head dim is 64"
        assert len(cfg.widths) == len(cfg.enc_blocks) == len(cfg.dec_blocks)
        self.cfg = cfg
        self.down = 2 ** len(cfg.widths)
        assert cfg.patch == self.down, "patch is the trunk's downsampling factor"
        w, D = cfg.widths, cfg.dim
        self.material_embed = nn.Embedding(MATERIAL_BUCKETS, MATERIAL_EMBED)
        assert cfg.world_freqs in (0, len(WORLD_PERIODS)), f"world_freqs {cfg.world_freqs}: 0 or {len(WORLD_PERIODS)}"
        self.cond_planes = COND_CHANNELS if cfg.world_freqs else BASE_COND_CHANNELS  # the conditioning planes read
        self.in_planes = 3 + self.cond_planes - 1 + MATERIAL_EMBED + HISTORY_PLANES
        self.t_embed = ScalarEmbedder(D)
        self.d_embed = ScalarEmbedder(D)
        self.h_embed = ScalarEmbedder(D)
        self.action_embed = nn.Sequential(nn.Linear(ACTION_DIM, D), nn.SiLU(), nn.Linear(D, D))
        self.prompt_embed = nn.Linear(PROMPT_DIM, D)
        # encoder: stem at full resolution, then level l (1/2^l) blocks and a stride-2 conv to level l+1
        self.stem = nn.Conv2d(self.in_planes, w[0], 3, padding=1)
        self.enc = nn.ModuleList([nn.ModuleList([FiLMResBlock(w[l], D) for _ in range(n)])
                                  for l, n in enumerate(cfg.enc_blocks)])
        self.downs = nn.ModuleList([nn.Conv2d(w[l], w[l + 1], 3, stride=2, padding=1) for l in range(len(w) - 1)])
        self.to_tokens = nn.Conv2d(w[-1], D, 2, stride=2)  # level n-1 -> tokens at 1/down
        self.blocks = nn.ModuleList([Block(D, cfg.heads, cfg.mlp_ratio) for _ in range(cfg.depth)])
        self.token_norm = nn.LayerNorm(D, elementwise_affine=False, eps=1e-6)
        self.from_tokens = nn.Conv2d(D, w[-1], 1)
        # decoder: from the bottom up, bilinear x2 + 1x1 to the level's width, add the skip, blocks
        self.ups = nn.ModuleList([nn.Conv2d(w[l + 1], w[l], 1) for l in range(len(w) - 1)])
        self.dec = nn.ModuleList([nn.ModuleList([FiLMResBlock(w[l], D) for _ in range(n)])
                                  for l, n in enumerate(cfg.dec_blocks)])
        self.out_norm = nn.GroupNorm(_groups(w[0]), w[0])
        self.out = nn.Conv2d(w[0], 3, 3, padding=1)
        _, _, ct, st = rope_tables(1, 1, slot_ages(cfg.window, cfg.sinks))
        self.register_buffer("rope_cos_t", ct, persistent=False)
        self.register_buffer("rope_sin_t", st, persistent=False)
        self._rope_s: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}
        self.initialize_weights()

    def initialize_weights(self) -> None:
        def _basic(m):
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

        self.apply(_basic)
        nn.init.normal_(self.material_embed.weight, std=0.5)
        for emb in (self.t_embed, self.d_embed, self.h_embed):
            nn.init.normal_(emb.mlp[0].weight, std=0.02)
            nn.init.normal_(emb.mlp[2].weight, std=0.02)
        nn.init.zeros_(self.d_embed.mlp[2].weight)  # d carries nothing until shortcut training uses it
        for blk in self.blocks:
            nn.init.zeros_(blk.adaLN_modulation[-1].weight)
            nn.init.zeros_(blk.adaLN_modulation[-1].bias)
        for level in list(self.enc) + list(self.dec):
            for rb in level:
                nn.init.zeros_(rb.film.weight)
                nn.init.zeros_(rb.film.bias)
                nn.init.zeros_(rb.conv2.weight)
                nn.init.zeros_(rb.conv2.bias)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    # -- shared pieces -------------------------------------------------------------------------

    def rope_spatial(self, gh: int, gw: int, device) -> tuple[torch.Tensor, torch.Tensor]:
        key = (gh, gw, str(device))
        if key not in self._rope_s:
            cs, ss, _, _ = rope_tables(gh, gw, torch.zeros(1))
            self._rope_s[key] = (cs.to(device), ss.to(device))
        return self._rope_s[key]

    def tokens_for(self, height: int, width: int) -> int:
        return (-(-height // self.down)) * (-(-width // self.down))

    def conditioning(self, t, d, h, action, prompt) -> torch.Tensor:
        """t, d, h (B, F); action (B, F, A); prompt (B, 384) -> c (B, F, D)."""
        return (self.t_embed(t) + self.d_embed(d) + self.h_embed(h) + self.action_embed(action)
                + self.prompt_embed(prompt)[:, None])

    def _stem_input(self, x_noisy, cond, history) -> torch.Tensor:
        """(N, 3 | COND | HISTORY_PLANES, H, W) -> (N, in_planes, H, W)."""
        mat = cond[:, MATERIAL_CHANNEL].round().long().clamp_(0, MATERIAL_BUCKETS - 1)
        mat = self.material_embed(mat).permute(0, 3, 1, 2).to(x_noisy.dtype)  # (N, 3, H, W)
        rest = torch.cat([cond[:, :MATERIAL_CHANNEL], cond[:, MATERIAL_CHANNEL + 1 : BASE_COND_CHANNELS]], dim=1)
        world = [cond[:, BASE_COND_CHANNELS : self.cond_planes].to(x_noisy.dtype)] if self.cfg.world_freqs else []
        return torch.cat([x_noisy, rest.to(x_noisy.dtype), mat, history.to(x_noisy.dtype), *world], dim=1)

    def _run(self, x_noisy, cond, history, c, attend_for_layer, trunk=None) -> torch.Tensor:
        """x_noisy (B, F, 3, H, W), cond (B, F, C, H, W), history (B, F, HISTORY_PLANES, H, W), c (B, F, D)
        -> (B, F, 3, H, W). `attend_for_layer(i)` supplies the temporal context of trunk layer i; `trunk`,
        when given, replaces the whole block loop: `trunk(z (B, F, T, D), c, (gh, gw)) -> z` (another
        implementation of the same blocks, e.g. kernels.fused_trunk)."""
        B, Fr, _, H0, W0 = x_noisy.shape
        flat = lambda a: a.reshape(B * Fr, *a.shape[2:])
        x, cond, history = flat(x_noisy), flat(cond), flat(history)
        pad_h, pad_w = (-H0) % self.down, (-W0) % self.down
        if pad_h or pad_w:  # any size: edge-pad to a multiple of the trunk's factor, crop at the end
            x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
            cond = F.pad(cond, (0, pad_w, 0, pad_h), mode="replicate")
            history = F.pad(history, (0, pad_w, 0, pad_h), mode="replicate")
        h = F.silu(self.stem(self._stem_input(x, cond, history)))  # (N, w0, H, W)
        y = self._from_stem(h, c, attend_for_layer, trunk)[:, :, :H0, :W0]
        return y.reshape(B, Fr, 3, H0, W0)

    def encode(self, h, cf) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The conv encoder: h (N, w0, H, W) after the stem, cf (N, D) -> (the coarsest level's activation, the
        skip of every level, finest first)."""
        skips = []
        for l, level in enumerate(self.enc):
            for rb in level:
                h = rb(h, cf)
            skips.append(h)
            if l < len(self.downs):
                h = F.silu(self.downs[l](h))
        return h, skips

    def _from_stem(self, h, c, attend_for_layer, trunk=None) -> torch.Tensor:
        """Everything after the stem: h (N, w0, H, W) the stem's activation at a padded size, c (B, F, D)
        -> (N, 3, H, W). Split from `_run` so that a serving arm may compute the stem its own way."""
        B, Fr = c.shape[:2]
        cf = c.reshape(B * Fr, -1)  # (N, D)
        h, skips = self.encode(h, cf)
        tok = self.to_tokens(h)  # (N, D, gh, gw)
        gh, gw = tok.shape[-2:]
        rope_s = self.rope_spatial(gh, gw, tok.device)
        z = tok.flatten(2).transpose(1, 2).reshape(B, Fr, gh * gw, -1)  # (B, F, T, D)
        if trunk is not None:
            z = trunk(z, c, (gh, gw))
        else:
            for i, blk in enumerate(self.blocks):
                z = blk(z, c, rope_s, attend_for_layer(i))
        z = self.token_norm(z).reshape(B * Fr, gh, gw, -1).permute(0, 3, 1, 2)  # (N, D, gh, gw)
        h = self.from_tokens(z)
        for l in range(len(self.dec) - 1, -1, -1):
            h = F.interpolate(h, scale_factor=2.0, mode="bilinear", align_corners=False)
            if l < len(self.ups):
                h = self.ups[l](h)
            h = h + skips[l]
            for rb in self.dec[l]:
                h = rb(h, cf)
        return self.out(F.silu(self.out_norm(h)))  # (N, 3, H, W)

    # -- training: a clip in one pass ------------------------------------------------------------

    def forward_clip(self, x_noisy, cond, history, t, d, h, action, prompt) -> torch.Tensor:
        """x_noisy (B, L, 3, H, W) in [-1, 1], cond (B, L, C, H, W), history (B, L, HISTORY_PLANES, H, W),
        t/d/h (B, L), action (B, L, A), prompt (B, 384) -> predicted clean frames (B, L, 3, H, W).
        Frame i attends to exactly the frames it would see streaming (`clip_context`)."""
        L, slots = x_noisy.shape[1], self.cfg.slots
        idx, valid = clip_context(L, self.cfg.window, self.cfg.sinks, x_noisy.device)

        def attend(q, k, v):  # q, k, v (B, H, L, T, 64)
            B, Hh, _, T, Dh = k.shape
            mask = valid[:, None, :, None].expand(L, 1, slots, T).reshape(L, 1, slots * T)  # (L, 1, slots*T)
            kk = apply_temporal_rope(k[:, :, idx], self.rope_cos_t, self.rope_sin_t).reshape(B, Hh * L, slots * T, Dh)
            vv = v[:, :, idx].reshape(B, Hh * L, slots * T, Dh)
            m = mask[None].expand(Hh, L, 1, slots * T).reshape(1, Hh * L, 1, slots * T)
            a = F.scaled_dot_product_attention(q.reshape(B, Hh * L, T, Dh), kk, vv, attn_mask=m)
            return a.view(B, Hh, L, T, Dh)

        c = self.conditioning(t, d, h, action, prompt)
        return self._run(x_noisy, cond, history, c, lambda i: attend)

    def forward(self, x_noisy, cond, history, t, d, h, action, prompt) -> torch.Tensor:
        return self.forward_clip(x_noisy, cond, history, t, d, h, action, prompt)

    # -- streaming: the current frame against the KV cache ----------------------------------------

    def forward_frame(self, x_noisy, cond, history, t, d, h, action, prompt, cache, trunk=None) -> torch.Tensor:
        """x_noisy (B, 3, H, W), cond (B, C, H, W), history (B, HISTORY_PLANES, H, W), t/d/h (B,),
        action (B, A), prompt (B, 384) -> predicted clean frame (B, 3, H, W). Writes this frame's K/V
        into the cache's current slot; `cache.advance()` afterwards keeps it as context. `trunk(z, c, grid,
        cache)` replaces the PyTorch blocks (a fused trunk keeps its own key layout in `cache`)."""
        attend_for_layer = cache_attention(cache, self.rope_cos_t, self.rope_sin_t)
        c = self.conditioning(t[:, None], d[:, None], h[:, None], action[:, None], prompt)
        run_trunk = None if trunk is None else (lambda z, cc, grid: trunk(z, cc, grid, cache))
        out = self._run(x_noisy[:, None], cond[:, None], history[:, None], c, attend_for_layer, run_trunk)
        return out[:, 0]
