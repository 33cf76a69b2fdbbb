"""The hourglass's transformer trunk for the CPU arm (neural_renderer.serving.cpu_step): the blocks of
`neural_renderer.model.dit.Block` against the KV cache, computing the same values in fewer, larger operations.
At 1/8 of a 128x128 frame the trunk's tensors are small (256 tokens), so there each PyTorch operation costs
more in dispatch than in arithmetic, and the trunk was the largest part of a CPU frame.

- Rotary embeddings as x * cos + pairswap(x) * sin over the whole head (tables with cos 1, sin 0 on the pairs
  a rotation leaves alone, and the sign of the first member's sine folded in): the same products and sums
  as `rotate_pairs`, in three operations instead of about ten.
- The keys of the cached frames get their temporal rotation once per frame, not once per step: between the
  steps of a frame only the current slot changes, and its age is 0 (the identity rotation), so a layer's
  rotated keys are a buffer whose older slots are filled at the frame's first step. Whether the cache changed
  since is told by its keys' version counter (advance, reset, a copy from a batch all write it), recorded
  after this trunk's own write of the current slot.
- Attention reads only the slots that hold a frame, without a mask (a masked key has zero weight).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from neural_renderer.model.dit import HEAD_DIM, ROPE_PAIRS_X, ROPE_PAIRS_Y, modulate


def version(t: torch.Tensor) -> int | None:
    """The in-place write counter of `t`; None for a tensor that keeps none (made under inference_mode)."""
    try:
        return t._version
    except RuntimeError:
        return None


def full_tables(cos: torch.Tensor, sin: torch.Tensor, first_pair: int) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin (..., n) of pairs first_pair.. first_pair + n - 1 -> (cos, signed sin) (..., HEAD_DIM) for
    `rotate`: 1 and 0 on the other pairs; the sine negative on each pair's first member."""
    n = cos.shape[-1]
    c = torch.ones(*cos.shape[:-1], HEAD_DIM // 2, 2, dtype=torch.float32)
    s = torch.zeros(*cos.shape[:-1], HEAD_DIM // 2, 2, dtype=torch.float32)
    c[..., first_pair : first_pair + n, :] = cos[..., None].float()
    s[..., first_pair : first_pair + n, 0] = -sin.float()
    s[..., first_pair : first_pair + n, 1] = sin.float()
    return c.flatten(-2), s.flatten(-2)


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """`rotate_pairs` on the pairs the tables rotate: (x0 cos - x1 sin, x1 cos + x0 sin) per pair."""
    swapped = x.unflatten(-1, (-1, 2)).flip(-1).flatten(-2)
    return x * cos + swapped * sin


class CPUTrunk:
    """The trunk of one model. Holds the rotary tables per token grid and, per layer, the rotated keys of the
    cache it last ran against."""

    def __init__(self, model):
        self.model = model
        self.temporal = full_tables(model.rope_cos_t, model.rope_sin_t, ROPE_PAIRS_X + ROPE_PAIRS_Y)  # (slots, 64)
        self._spatial: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]] = {}
        self._keys: dict[int, torch.Tensor] = {}  # layer -> (B, H, slots, T, 64) rotated keys
        self._cache, self._version = None, None

    def spatial(self, gh: int, gw: int, dtype) -> tuple[torch.Tensor, torch.Tensor]:
        if (gh, gw) not in self._spatial:
            cs, ss = self.model.rope_spatial(gh, gw, "cpu")
            self._spatial[(gh, gw)] = full_tables(cs, ss, 0)
        return tuple(t.to(dtype) for t in self._spatial[(gh, gw)])

    def __call__(self, z: torch.Tensor, c: torch.Tensor, grid: tuple[int, int], cache) -> torch.Tensor:
        """z (B, 1, T, D), c (B, 1, D) -> z after every block, the current frame's k/v written into the cache."""
        rope = self.spatial(*grid, z.dtype)
        valid = cache.valid.tolist()  # on CPU a host read costs no synchronisation
        filled = None if all(valid) else torch.tensor([s for s, ok in enumerate(valid) if ok])
        fresh = cache is not self._cache or version(cache.k) is None or version(cache.k) != self._version
        if fresh:
            self._keys, self._cache = {}, cache
        for i, blk in enumerate(self.model.blocks):
            z = self._block(i, blk, z, c, rope, cache, filled)
        self._version = version(cache.k)
        return z

    def _block(self, i, blk, x, c, rope, cache, filled) -> torch.Tensor:
        B, Fr, T, D = x.shape
        shift1, scale1, gate1, shift2, scale2, gate2 = blk.adaLN_modulation(c)[:, :, None].chunk(6, dim=-1)
        h = modulate(F.layer_norm(x, (D,), eps=blk.norm1.eps), shift1, scale1)
        q, k, v = blk.qkv(h).view(B, Fr, T, 3, blk.heads, HEAD_DIM).permute(3, 0, 4, 1, 2, 5)  # 3x (B, H, 1, T, 64)
        q = rotate(F.rms_norm(q, (HEAD_DIM,), blk.q_norm.weight, blk.q_norm.eps), *rope)
        k = rotate(F.rms_norm(k, (HEAD_DIM,), blk.k_norm.weight, blk.k_norm.eps), *rope)
        a = self._attend(i, q[:, :, 0], k[:, :, 0], v[:, :, 0], cache, filled)  # (B, H, T, 64)
        x = x + gate1 * blk.proj(a.transpose(1, 2).reshape(B, Fr, T, D))
        h = modulate(F.layer_norm(x, (D,), eps=blk.norm2.eps), shift2, scale2)
        return x + gate2 * blk.fc2(F.gelu(blk.fc1(h), approximate="tanh"))

    def _attend(self, i, q, k, v, cache, filled) -> torch.Tensor:
        kc, vc = cache.layer(i)  # (B, H, slots, T, 64)
        kc[:, :, -1] = k
        vc[:, :, -1] = v
        cos, sin = (t.to(kc.dtype)[:, None] for t in self.temporal)  # (slots, 1, 64)
        if filled is not None:  # filling frames: rotate what is there, read the filled slots
            kk = rotate(kc, cos, sin).index_select(2, filled)
            vv = vc.index_select(2, filled)
        else:
            kk = self._keys.get(i)
            if kk is None:  # the frame's first step: the older slots' rotation, kept for the other steps
                kk = self._keys[i] = rotate(kc, cos, sin)
            else:
                kk[:, :, -1] = k  # age 0: no rotation
            vv = vc
        B, H, slots, T, Dh = kk.shape
        return F.scaled_dot_product_attention(q, kk.reshape(B, H, slots * T, Dh), vv.reshape(B, H, slots * T, Dh))
