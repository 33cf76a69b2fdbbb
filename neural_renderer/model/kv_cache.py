"""`KVCache`: the keys/values of the frames the current frame attends to, for every layer.

Slots per layer, in this order: S sink slots (the first S frames of the run, kept forever), W window
slots (the last W frames, oldest first) and one current slot (the frame being generated; written by
every forward, kept only when `advance()` is called after the cache-write pass). Slot ages are
therefore static, which is what makes the model's temporal rotary exact forever.

Everything lives in fixed-shape device tensors (CUDA-graph friendly): `advance()` is one copy of the
window plus at most one sink copy, and the validity mask comes from a precomputed table by a
device-to-device copy; the host only keeps the frame counter, which it knows without a sync.

Inference-only sink options (no retraining; the slot ages stay static):
- `sink_every=N` (N > 0): the sinks are refreshed every N frames instead of holding the run's first frames
  forever. Before frame m (m >= S + W + 1, m % N == 0) `refresh_sink()` copies the window's oldest slot (frame
  m - W, the frame this frame's advance drops) into sink 0 (older sinks move up one) and masks the sinks for frame m
  alone, so that frame sees the window only (the layout of the run's frame W) and frame m + 1 on see the new sink at
  its true age W + 1, the layout training saw: a sink is never also in the window. The caller runs it outside any
  captured graph (plain device copies, nothing read back); the graph's own advance restores the steady mask.
- `use_sinks=False`: the sinks are masked on every frame (the model attends to the window alone).
"""
from __future__ import annotations

import torch


class KVCache:
    def __init__(self, n_layers: int, batch: int, heads: int, tokens: int, window: int, sinks: int,
                 head_dim: int = 64, device=None, dtype=torch.float32, sink_every: int = 0, use_sinks: bool = True):
        if isinstance(sink_every, bool) or not isinstance(sink_every, int) or sink_every < 0:
            raise ValueError(f"sink_every must be an integer >= 0 (0: the first frames stay the sinks), got {sink_every!r}")
        self.window, self.sinks = window, sinks
        self.sink_every, self.use_sinks = sink_every, use_sinks
        self.slots = sinks + window + 1
        shape = (n_layers, batch, heads, self.slots, tokens, head_dim)  # (L, B, H, slots, T, D)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        # valid_table[n]: which slots hold a frame when the run's n-th frame (0-based) is generated
        n_states = sinks + window + 2
        table = torch.zeros(n_states, self.slots, dtype=torch.bool)
        for n in range(n_states):
            for s in range(sinks):  # a sink counts only once it has left the window (no duplicates)
                table[n, s] = s < n - window
            for a in range(window, 0, -1):
                table[n, sinks + window - a] = n - a >= 0
            table[n, -1] = True
        if not use_sinks:
            table[:, :sinks] = False
        self.valid_table = table.to(device)
        self.refresh_valid = table[window].to(device)  # a refreshing frame's mask: the window only
        self.valid = self.valid_table[0].clone()  # (slots,)
        self.frames = 0  # frames kept since the last reset (host int, known without a sync)

    @classmethod
    def for_model(cls, model, batch: int = 1, device=None, dtype=torch.float32) -> "KVCache":
        c = model.cfg
        return cls(c.depth, batch, c.heads, c.tokens, c.window, c.sinks, device=device, dtype=dtype)

    def reset(self) -> None:
        self.k.zero_()
        self.v.zero_()
        self.frames = 0
        self.valid.copy_(self.valid_table[0])

    def layer(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Views (B, H, slots, T, D) of layer i; the model writes the current frame into slot -1."""
        return self.k[i], self.v[i]

    @property
    def steady(self) -> bool:
        """From here on every advance() does the same device work (no sink write, same mask),
        so it can live inside a CUDA graph."""
        return self.frames >= len(self.valid_table) - 1

    @property
    def refresh_due(self) -> bool:
        """Whether the frame about to be generated (the run's frame `frames`) refreshes the sinks first."""
        n, E = self.frames, self.sink_every
        return E > 0 and self.use_sinks and self.sinks > 0 and n > self.sinks + self.window and n % E == 0

    def refresh_sink(self) -> None:
        """The window's oldest frame becomes sink 0 (older sinks move up one); the sinks are masked for this
        frame. Device copies only: call it before the frame's forwards, outside a captured graph."""
        S, W = self.sinks, self.window
        for buf in (self.k, self.v):
            if S > 1:
                buf[:, :, :, 1:S].copy_(buf[:, :, :, : S - 1].clone())
            buf[:, :, :, 0].copy_(buf[:, :, :, S if W > 0 else -1])
        self.valid.copy_(self.refresh_valid)

    def maybe_refresh(self) -> bool:
        """refresh_sink() if this frame is due (host arithmetic only); returns whether it ran."""
        if self.refresh_due:
            self.refresh_sink()
            return True
        return False

    def advance(self, count: bool = True) -> None:
        """Keep the current slot as context: shift the window by one, fill a sink while n < S.
        count=False does only the device work (inside a captured graph the caller counts frames)."""
        S, W, n = self.sinks, self.window, self.frames
        for buf in (self.k, self.v):
            if n < S:
                buf[:, :, :, n].copy_(buf[:, :, :, -1])
            if W > 0:
                buf[:, :, :, S : S + W].copy_(buf[:, :, :, S + 1 :].clone())
        self.valid.copy_(self.valid_table[min(n + 1, len(self.valid_table) - 1)])
        if count:
            self.frames = n + 1
