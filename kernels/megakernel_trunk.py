"""`MegakernelTrunk`: the hourglass generator's transformer trunk as ONE persistent launch per denoising step.

The kernel is the DiT megakernel's (`kernels.megakernel._megakernel`, its task interpreter, counters, L2
prefetch of the next task's weight tile while the current tile computes) run over a schedule without the
patch embed and the final layer (`build_tasks(..., head=False)`): the adaLN vectors of every block, then per
block qkv, attention over the KV cache, out projection, fc1, fc2. The tokens come in from the conv encoder
through a copy into the kernel's activation buffer before the launch; the result stays in that buffer (static,
CUDA-graph friendly: the next call overwrites it), and the conv decoder reads it.

Weights and rotary tables are the fused trunk's (`kernels.fused_trunk.FusedTrunk`, which this class holds), so
the cache layout is the same (keys in kernel layout) and shapes the schedule cannot tile run the fused trunk's
ops instead, on the same weights and cache: a batch > 1 whose token count is not a multiple of the row block
(a row block's adaLN vectors are one batch's), or a batch above the 16 rows of the adaLN tile.

Same contract as `FusedTrunk`: pass as `HourglassGenerator.forward_frame(..., trunk=)`.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from kernels import tiles
from kernels.fused_trunk import HEAD_DIM, FusedTrunk
from kernels.megakernel import _megakernel, build_tasks, compile_checked

MOD_ROWS = 16  # rows of the adaLN tile (the kernel's MOD_BM): the largest batch one launch serves


@dataclass
class _Plan:
    """One (batch, tokens) shape: its schedule and the buffers its launches share. Counters, queue and
    generation only ever increase (kernels.megakernel says why), so a plan is never reset."""
    tasks: torch.Tensor
    counters: torch.Tensor
    queue: torch.Tensor
    gen: torch.Tensor
    err: torch.Tensor
    x: torch.Tensor      # (B * T, D) the tokens in, the trunk's output out
    q: torch.Tensor
    a: torch.Tensor
    h: torch.Tensor
    mod: torch.Tensor
    cvec: torch.Tensor
    valid: torch.Tensor
    checked: bool = False
    info: dict | None = None


class MegakernelTrunk:
    def __init__(self, model, block_m: int = 64, block_k: int = 64, attn_block_n: int = 64, att_split: int = 2,
                 num_warps: int = 4, n_programs: int | None = None, max_spin: int = 1 << 20, prefetch=None):
        self.ops = FusedTrunk(model)  # the packed weights, the rotary tables, and the fallback
        self.model, self.cfg, self.w = model, model.cfg, self.ops.w
        self.dtype = self.ops.dtype
        interp = tiles.DOT_UPCAST
        dev = self.w["wqkv"].device
        self.device = dev
        self.n_programs = 1 if interp else (n_programs or torch.cuda.get_device_properties(dev).multi_processor_count)
        self.prefetch = (not interp) if prefetch is None else prefetch
        self.block_m, self.att_split = block_m, att_split
        self.meta = dict(block_k=block_k, attn_block_n=attn_block_n, num_warps=num_warps, max_spin=max_spin)
        self._plans: dict[tuple, _Plan | None] = {}

    def _plan(self, B: int, T: int) -> _Plan | None:
        key = (B, T)
        if key not in self._plans:
            self._plans[key] = None
            c, dt, dev = self.cfg, self.dtype, self.device
            if B <= MOD_ROWS and (B == 1 or T % self.block_m == 0):
                s = build_tasks(c, B, self.block_m, att_split=self.att_split, tokens=T, head=False)
                z = lambda n, dtype=torch.int64: torch.zeros(n, dtype=dtype, device=dev)  # noqa: E731
                self._plans[key] = _Plan(
                    s.tasks.to(dev), z(s.n_counters), z(1), z(1), z(1, torch.int32),
                    x=torch.empty(B * T, c.dim, device=dev, dtype=dt),
                    q=torch.empty(B, c.heads, T, HEAD_DIM, device=dev, dtype=dt),
                    a=torch.empty(B * T, c.dim, device=dev, dtype=dt),
                    h=torch.empty(B * T, c.mlp_ratio * c.dim, device=dev, dtype=dt),
                    mod=torch.empty(B, self.w["wmod"].shape[0], device=dev, dtype=dt),
                    cvec=torch.empty(B, c.dim, device=dev, dtype=dt),
                    valid=torch.empty(c.slots, dtype=torch.int32, device=dev))
        return self._plans[key]

    def _args(self, p: _Plan, cache, rope, B: int, T: int) -> tuple:
        c, w, k = self.cfg, self.w, cache.k
        cos, sin, slot_cos, slot_sin = rope
        unused = p.x  # the patch embed's and final layer's operands: no task of this schedule reads them
        return (p.tasks, p.tasks.shape[0], p.counters, p.queue, p.gen, p.err,
                p.cvec, unused, unused, unused, unused,
                w["wmod"], w["bmod"], unused, unused, w["wqkv"], w["bqkv"], w["qknorm"], w["wo"], w["bo"],
                w["w1"], w["b1"], w["w2"], w["b2"], unused, unused, cos, sin, slot_cos, slot_sin, p.valid,
                cache.k, cache.v, k.stride(0), k.stride(1), k.stride(2), k.stride(3), k.stride(4),
                p.x, p.q, p.a, p.h, p.mod, B, w["wmod"].shape[0], 1.0 / HEAD_DIM ** 0.5, 1e-6,
                # D, HEADS, T, SLOTS, then the head's geometry (TOK_W, C_REST, MAT_AT, NB, NMAT): unused
                c.dim, c.heads, T, c.slots, 1, 0, 0, 1, 1, c.mlp_ratio * c.dim, 1, self.n_programs)

    def _kw(self) -> dict:
        m = self.meta
        return dict(num_warps=m["num_warps"], P=self.cfg.patch, BLOCK_M=self.block_m, BLOCK_K=m["block_k"],
                    ATT_BM=self.block_m // self.att_split, ATT_BN=m["attn_block_n"], MOD_BM=MOD_ROWS,
                    MAX_SPIN=m["max_spin"], PREFETCH=self.prefetch, DOT_UPCAST=tiles.DOT_UPCAST)

    @torch.no_grad()
    def __call__(self, z: torch.Tensor, c: torch.Tensor, grid: tuple[int, int], cache) -> torch.Tensor:
        """z (B, 1, T, D), c (B, 1, D) -> (B, 1, T, D); `cache` holds keys in kernel layout."""
        B, Fr, T, D = z.shape
        if Fr != 1:
            raise ValueError(f"the megakernel trunk streams one frame at a time, got {Fr}")
        if cache.k.shape[1] != B or cache.k.dtype != self.dtype or not cache.k.is_contiguous():
            raise ValueError("cache batch/dtype/layout does not match the megakernel trunk")
        p = self._plan(B, T)
        if p is None:
            return self.ops(z, c, grid, cache)
        p.cvec.copy_(c[:, 0])
        p.x.copy_(z.reshape(B * T, D))
        p.valid.copy_(cache.valid)
        args = self._args(p, cache, self.ops.tables(grid, z.device), B, T)
        if not p.checked and not tiles.DOT_UPCAST:  # on the GPU the first launch checks co-residency first
            p.info = compile_checked(args, self.n_programs, self.device, **self._kw())
        p.checked = True
        p.gen += 1
        _megakernel[(self.n_programs,)](*args, **self._kw())
        return p.x.view(B, 1, T, D)

    # -- for checks and benchmarks -------------------------------------------------------------------

    def spin_flag(self) -> int:
        """Nonzero when a wait of any launch so far timed out (its output is then wrong); reads the device."""
        return max((int(p.err.item()) for p in self._plans.values() if p is not None), default=0)

    def poison(self) -> None:
        """NaN into every activation buffer: a launch that skipped work cannot match from stale values."""
        for p in self._plans.values():
            if p is not None:
                for b in (p.x, p.q, p.a, p.h, p.mod):
                    b.fill_(float("nan"))

    def build_info(self) -> dict:
        """Registers, spills, shared memory and programs per SM of the compiled launches (GPU only)."""
        return {f"{B}x{T}": p.info for (B, T), p in self._plans.items() if p is not None and p.info}
