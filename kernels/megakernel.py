"""The megakernel: a whole denoising step of a CausalDiT in one persistent Triton launch (and, with the
same kernel and a schedule without the patch embed and final layer, the hourglass generator's trunk:
kernels.megakernel_trunk).

Schedule. `build_tasks` lists every tile of the step in a topological order (adaLN vectors of every
block, patch embed, then per block: qkv, attention, out projection, fc1, fc2; then the unpatchify
head). Each row of the table is

    (type, layer, a0, a1, wait0, count0, wait1, count1, signal)

A program grabs the next task index from a global queue counter (in list order), waits until
counter[wait0] >= gen * count0 and counter[wait1] >= gen * count1, computes the tile and adds 1 to
counter[signal]. Why this cannot deadlock: all programs are co-resident (checked at launch, below),
tasks are grabbed in list order, and every dependency points to an earlier task; so the smallest
unfinished task is always some program's current task and all it waits on is done.

Counters are int64, monotonic and never reset: launch number `gen` (a device scalar the step
increments before the launch, so a CUDA graph replays it) waits for gen * count; a step never
needs to clear anything, so there is no reset race between consecutive launches. The queue counter
is likewise monotonic: every launch draws exactly n_tasks + n_programs indices from it.

Dependencies per row block mb of BLOCK_M tokens (per layer l):
    qkv(l, mb, n)  waits  mod[l] complete, x_ready[l][mb] (embed or fc2 of l-1: all D/64 column tiles)
    attn(l, mb, h) waits  qkv[l][h] complete (q, k, v tiles of head h over every row block)
    oproj(l, mb,n) waits  attn[l][mb] (all heads)      -> x rows mb updated in place (gated residual)
    fc1(l, mb, n)  waits  oproj[l][mb] (all columns)   -> LN of the full row needs every column
    fc2(l, mb, n)  waits  fc1[l][mb] (all columns)     -> signals x_ready[l + 1][mb]
Write-after-read hazards on the shared activation buffers (x, q, attention output, hidden) are
covered by the same edges (see the notes in `build_tasks`).

Hang-proofing: the grid is exactly the number of SMs and is launched only if the compiled kernel's
registers/shared memory let at least one program per SM be resident (and as a cooperative launch
where Triton supports it, which errors instead of hanging). Every spin is also bounded: past
`max_spin` polls the program sets an error flag and moves on (wrong output, never a hang); the
self-check reads that flag.

While the current tile computes, the weight tile of the task grabbed next is prefetched into L2
(`prefetch.global.L2`, GPU only), the part of the Hazy/Mirage megakernel recipe that actually buys
time.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from kernels import tiles
from kernels.fused_model import HEAD_DIM, PackedWeights

T_MOD, T_EMBED, T_QKV, T_ATTN, T_OPROJ, T_FC1, T_FC2, T_FINAL = range(8)
TASK_NAMES = ("mod", "embed", "qkv", "attn", "oproj", "fc1", "fc2", "final")
FIELDS = 9


@dataclass
class Schedule:
    tasks: torch.Tensor      # (n_tasks, FIELDS) int32 (CPU)
    n_counters: int
    block_m: int
    block_n: int
    att_split: int


def build_tasks(cfg, B: int, block_m: int = 64, block_n: int = 64, att_split: int = 1, tokens: int | None = None,
                head: bool = True) -> Schedule:
    """att_split: attention query tiles per row block (block_m // att_split rows each), for more tasks
    than SMs when heads x row blocks is small. `tokens`: tokens per frame (default: the config's square
    frame). `head=False`: the blocks alone (the hourglass generator's trunk): no patch embed and no final
    layer; the caller puts the tokens into x before the launch, so the first layer waits only for its adaLN.

    Batch 1 takes any token count (the last row block is part empty: every tile masks rows >= B * T); a
    larger batch needs tokens a multiple of block_m, since a row block's adaLN vectors are one batch's."""
    D, L, H = cfg.dim, cfg.depth, cfg.heads
    T = tokens or cfg.tokens
    if (B > 1 and T % block_m) or D % block_n or block_n != HEAD_DIM:
        raise ValueError(f"tokens {T} must be a multiple of block_m {block_m} at batch {B} > 1, dim {D} of "
                         f"block_n {block_n} == 64")
    if block_m % att_split or block_m // att_split < 16:
        raise ValueError(f"att_split {att_split} must divide block_m {block_m} into tiles of >= 16 rows")
    MB = triton.cdiv(B * T, block_m)
    ND, NH = D // block_n, cfg.mlp_ratio * D // block_n
    n_final = triton.cdiv(3 * cfg.patch * cfg.patch, block_n) if head else 0
    att_bm = block_m // att_split
    # attention query tiles of row block mb: those that start before the last row
    n_att = [sum(1 for sub in range(att_split) if (mb * att_split + sub) * att_bm < B * T) for mb in range(MB)]
    mod_tiles_block = 6 * D // block_n
    mod_tiles_final = 2 * D // block_n
    # counters: 0 = always zero (no wait), 1 = sink (no one waits), then named groups
    nxt = [2]

    def group(*shape):
        n = 1
        for s in shape:
            n *= s
        base = nxt[0]
        nxt[0] += n
        return base

    c_mod = group(L + 1)            # per layer (+ final): adaLN tiles done
    c_x = group(L + 1, MB)          # x rows ready as input of layer l (l = L: input of the final layer)
    c_qkv = group(L, H)             # q/k/v tiles of head h, all row blocks
    c_att = group(L, MB)            # attention tiles of row block mb, all heads
    c_o = group(L, MB)              # out-projection column tiles of row block mb
    c_h = group(L, MB)              # fc1 column tiles of row block mb
    rows = []

    def add(typ, layer, a0, a1, w0=0, n0=0, w1=0, n1=0, sig=1):
        rows.append((typ, layer, a0, a1, w0, n0, w1, n1, sig))

    for l in range(L + 1 if head else L):
        for n in range(mod_tiles_block if l < L else mod_tiles_final):
            add(T_MOD, l, 0, l * mod_tiles_block + n, sig=c_mod + l)
    if head:
        for mb in range(MB):
            for n in range(ND):
                add(T_EMBED, 0, mb, n, sig=c_x + mb)
    for l in range(L):
        # q, k, v tiles head by head so the first heads' attention can start early
        for h in range(H):
            for sec in range(3):
                for mb in range(MB):
                    x_wait = (c_x + l * MB + mb, ND) if head or l else (0, 0)  # trunk: layer 0's x is there
                    add(T_QKV, l, mb, sec * ND + h, c_mod + l, mod_tiles_block, *x_wait, sig=c_qkv + l * H + h)
        # hazard note: q/attention-output buffers are shared across layers; qkv(l+1, mb) waits for
        # fc2(l, mb) <- fc1 <- oproj(l, mb) <- attn(l, mb, all heads), the only readers of those rows.
        for mb in range(MB):
            for h in range(H):
                for sub in range(n_att[mb]):
                    add(T_ATTN, l, mb * att_split + sub, h, c_qkv + l * H + h, 3 * MB, sig=c_att + l * MB + mb)
        for mb in range(MB):
            for n in range(ND):
                add(T_OPROJ, l, mb, n, c_att + l * MB + mb, H * n_att[mb], sig=c_o + l * MB + mb)
        for mb in range(MB):
            for n in range(NH):
                add(T_FC1, l, mb, n, c_o + l * MB + mb, ND, sig=c_h + l * MB + mb)
        for mb in range(MB):
            for n in range(ND):
                add(T_FC2, l, mb, n, c_h + l * MB + mb, NH, sig=c_x + (l + 1) * MB + mb)
    for mb in range(MB if head else 0):
        for n in range(n_final):
            add(T_FINAL, L, mb, n, c_x + L * MB + mb, ND, c_mod + L, mod_tiles_final)
    return Schedule(torch.tensor(rows, dtype=torch.int32), nxt[0], block_m, block_n, att_split)


def check_schedule(s: Schedule) -> None:
    """Every wait is on counters whose producers all come earlier in the list, in exactly that number.

    Together with in-order grabbing and co-residency this is the no-deadlock argument; a miscount here
    would be a hang (too high) or a race (too low)."""
    produced: dict[int, int] = {}
    total: dict[int, int] = {}
    for row in s.tasks.tolist():
        total[row[8]] = total.get(row[8], 0) + 1
    for i, row in enumerate(s.tasks.tolist()):
        for w, n in ((row[4], row[5]), (row[6], row[7])):
            if w == 0:
                assert n == 0, f"task {i}: count on the zero counter"
                continue
            assert produced.get(w, 0) == n == total.get(w, 0), (
                f"task {i} ({TASK_NAMES[row[0]]}) waits for {n} on counter {w}: "
                f"{produced.get(w, 0)} produced before it, {total.get(w, 0)} in all")
        produced[row[8]] = produced.get(row[8], 0) + 1


# ----------------------------------------------------------------------------------------------- kernel
@triton.jit
def _wait(ctr_ptr, idx, count, gen, err_ptr, MAX_SPIN: tl.constexpr):
    # Poll with plain volatile loads: atomic read-modify-writes from ~100 spinning SMs on one address
    # serialise in L2 and starve the producer's own increment (measured: 2.6 ms per step instead of
    # the compute time). One acquire RMW once the target is seen orders the loads that follow.
    target = gen * count
    cur = tl.load(ctr_ptr + idx, volatile=True)
    spins = 0
    while (cur < target) & (spins < MAX_SPIN):
        cur = tl.load(ctr_ptr + idx, volatile=True)
        spins += 1
        if spins % 4096 == 0:  # once any wait has timed out, the others give up fast: seconds, not hours
            if tl.load(err_ptr, volatile=True) != 0:
                spins = MAX_SPIN
    cur = tl.atomic_add(ctr_ptr + idx, 0, sem="acquire")
    if cur < target:
        tl.atomic_or(err_ptr, 1)  # never a hang: flag it, the self-check fails


@triton.jit
def _prefetch_l2(base_ptr, n_elems, BLOCK: tl.constexpr):
    # one prefetch per 128-byte line of a contiguous weight tile (2-byte elements: 64 per line)
    for off in range(0, n_elems, BLOCK * 64):
        o = off + tl.arange(0, BLOCK) * 64
        tl.inline_asm_elementwise("prefetch.global.L2 [$1]; mov.u32 $0, 0;", "=r,l", [(base_ptr + o).to(tl.int64)],
                                  dtype=tl.int32, is_pure=False, pack=1)


@triton.jit(do_not_specialize=["n_tasks", "B", "HEADS", "SLOTS", "TOK_W", "C_REST", "MAT_AT", "NB", "NMAT",
                               "NFIN", "NPROG"])
def _megakernel(
    tasks_ptr, n_tasks, ctr_ptr, queue_ptr, gen_ptr, err_ptr,
    cvec_ptr, xin_ptr, cond_ptr, mat_ptr, out_img_ptr,
    wmod_ptr, bmod_ptr, wemb_ptr, bemb_ptr, wqkv_ptr, bqkv_ptr, qkn_ptr, wo_ptr, bo_ptr,
    w1_ptr, b1_ptr, w2_ptr, b2_ptr, wfin_ptr, bfin_ptr,
    rcos_ptr, rsin_ptr, scos_ptr, ssin_ptr, valid_ptr,
    kc_ptr, vc_ptr, s_kl, s_kb, s_kh, s_ks, s_kt,
    x_ptr, q_ptr, a_ptr, h_ptr, mod_ptr,
    B, NMOD, sm_scale, eps,
    D, HEADS, T, SLOTS, TOK_W, C_REST, MAT_AT, NB, NMAT, HID, NFIN, NPROG,
    P: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_K: tl.constexpr, ATT_BM: tl.constexpr, ATT_BN: tl.constexpr, MOD_BM: tl.constexpr,
    MAX_SPIN: tl.constexpr, PREFETCH: tl.constexpr, DOT_UPCAST: tl.constexpr,
):
    BN: tl.constexpr = 64
    HD: tl.constexpr = 64
    CG: tl.constexpr = ".cg"  # activations written by other SMs in this launch: read through L2
    M = B * T
    KIN = (3 + C_REST + NMAT) * P * P
    gen = tl.load(gen_ptr)
    base = (gen - 1) * (n_tasks + NPROG)
    cur = tl.atomic_add(queue_ptr, 1) - base
    while cur < n_tasks:
        nxt = tl.atomic_add(queue_ptr, 1) - base
        row = tasks_ptr + cur * 9
        typ = tl.load(row)
        layer = tl.load(row + 1)
        a0 = tl.load(row + 2)
        a1 = tl.load(row + 3)
        _wait(ctr_ptr, tl.load(row + 4), tl.load(row + 5).to(tl.int64), gen, err_ptr, MAX_SPIN)
        _wait(ctr_ptr, tl.load(row + 6), tl.load(row + 7).to(tl.int64), gen, err_ptr, MAX_SPIN)
        tl.debug_barrier()
        if PREFETCH:
            if nxt < n_tasks:
                nrow = tasks_ptr + nxt * 9
                ntyp = tl.load(nrow)
                nl = tl.load(nrow + 1).to(tl.int64)
                nn0 = tl.load(nrow + 3).to(tl.int64) * BN
                if ntyp == 2:
                    _prefetch_l2(wqkv_ptr + nl * 3 * D * D + nn0 * D, BN * D, 128)
                elif ntyp == 4:
                    _prefetch_l2(wo_ptr + nl * D * D + nn0 * D, BN * D, 128)
                elif ntyp == 5:
                    _prefetch_l2(w1_ptr + nl * HID * D + nn0 * D, BN * D, 128)
                elif ntyp == 6:
                    _prefetch_l2(w2_ptr + nl * D * HID + nn0 * HID, BN * HID, 128)
        lm = layer.to(tl.int64) * 6 * D  # this layer's adaLN chunk inside the mod buffer
        if typ == 0:
            tiles.linear_tile(
                0, a1 * BN, B, NMOD, D, cvec_ptr, D, 1, wmod_ptr, D, 1, bmod_ptr, 0, mod_ptr, NMOD, 1,
                mod_ptr, 0, 0, 0, 0, mod_ptr, 0, 0, 1,
                qkn_ptr, rcos_ptr, rsin_ptr, 0, 0, 0, 0, kc_ptr, vc_ptr, 0, 0, 0,
                xin_ptr, 0, 0, 0, 0, cond_ptr, 0, 0, 0, 0, 3, C_REST, MAT_AT, NB, NMAT, mat_ptr, TOK_W, eps,
                P, 2, 0, True, MOD_BM, BN, BLOCK_K, CG, DOT_UPCAST)
        elif typ == 1:
            tiles.linear_tile(
                a0 * BLOCK_M, a1 * BN, M, D, KIN, xin_ptr, 0, 0, wemb_ptr, KIN, 1, bemb_ptr, 0, x_ptr, D, 1,
                mod_ptr, 0, 0, 0, 0, x_ptr, 0, 0, T,
                qkn_ptr, rcos_ptr, rsin_ptr, 0, 0, 0, 0, kc_ptr, vc_ptr, 0, 0, 0,
                xin_ptr, 3 * T * P * P, T * P * P, TOK_W * P, 1,
                cond_ptr, (C_REST + 1) * T * P * P, T * P * P, TOK_W * P, 1,
                3, C_REST, MAT_AT, NB, NMAT, mat_ptr, TOK_W, eps,
                P, 3, 0, True, BLOCK_M, BN, BLOCK_K, CG, DOT_UPCAST)
        elif typ == 2:
            kl = layer.to(tl.int64) * s_kl + (SLOTS - 1) * s_ks
            tiles.linear_tile(
                a0 * BLOCK_M, a1 * BN, M, 3 * D, D, x_ptr, D, 1, wqkv_ptr + layer.to(tl.int64) * 3 * D * D, D, 1,
                bqkv_ptr + layer * 3 * D, 0, q_ptr, 0, 0,
                mod_ptr, NMOD, lm, lm + D, 0, x_ptr, 0, 0, T,
                qkn_ptr + layer * 2 * HD, rcos_ptr, rsin_ptr, HD // 2, HEADS * T * HD, T * HD, HD,
                kc_ptr + kl, vc_ptr + kl, s_kb, s_kh, s_kt,
                xin_ptr, 0, 0, 0, 0, cond_ptr, 0, 0, 0, 0, 3, C_REST, MAT_AT, NB, NMAT, mat_ptr, TOK_W, eps,
                P, 1, 3, True, BLOCK_M, BN, BLOCK_K, CG, DOT_UPCAST)
        elif typ == 3:
            r0 = a0 * ATT_BM
            kl = layer.to(tl.int64) * s_kl
            tiles.attention_tile(
                r0 // T, a1, r0 % T, T, SLOTS, q_ptr, HEADS * T * HD, T * HD, HD,
                kc_ptr + kl, vc_ptr + kl, s_kb, s_kh, s_ks, s_kt, valid_ptr, scos_ptr, ssin_ptr,
                a_ptr, T * D, D, sm_scale, HD, ATT_BM, ATT_BN, CG, DOT_UPCAST)
        elif typ == 4:
            tiles.linear_tile(
                a0 * BLOCK_M, a1 * BN, M, D, D, a_ptr, D, 1, wo_ptr + layer.to(tl.int64) * D * D, D, 1,
                bo_ptr + layer * D, 0, x_ptr, D, 1, mod_ptr, NMOD, 0, 0, lm + 2 * D, x_ptr, D, 1, T,
                qkn_ptr, rcos_ptr, rsin_ptr, 0, 0, 0, 0, kc_ptr, vc_ptr, 0, 0, 0,
                xin_ptr, 0, 0, 0, 0, cond_ptr, 0, 0, 0, 0, 3, C_REST, MAT_AT, NB, NMAT, mat_ptr, TOK_W, eps,
                P, 0, 2, True, BLOCK_M, BN, BLOCK_K, CG, DOT_UPCAST)
        elif typ == 5:
            tiles.linear_tile(
                a0 * BLOCK_M, a1 * BN, M, HID, D, x_ptr, D, 1, w1_ptr + layer.to(tl.int64) * HID * D, D, 1,
                b1_ptr + layer * HID, 0, h_ptr, HID, 1, mod_ptr, NMOD, lm + 3 * D, lm + 4 * D, 0, x_ptr, 0, 0, T,
                qkn_ptr, rcos_ptr, rsin_ptr, 0, 0, 0, 0, kc_ptr, vc_ptr, 0, 0, 0,
                xin_ptr, 0, 0, 0, 0, cond_ptr, 0, 0, 0, 0, 3, C_REST, MAT_AT, NB, NMAT, mat_ptr, TOK_W, eps,
                P, 1, 1, True, BLOCK_M, BN, BLOCK_K, CG, DOT_UPCAST)
        elif typ == 6:
            tiles.linear_tile(
                a0 * BLOCK_M, a1 * BN, M, D, HID, h_ptr, HID, 1, w2_ptr + layer.to(tl.int64) * D * HID, HID, 1,
                b2_ptr + layer * D, 0, x_ptr, D, 1, mod_ptr, NMOD, 0, 0, lm + 5 * D, x_ptr, D, 1, T,
                qkn_ptr, rcos_ptr, rsin_ptr, 0, 0, 0, 0, kc_ptr, vc_ptr, 0, 0, 0,
                xin_ptr, 0, 0, 0, 0, cond_ptr, 0, 0, 0, 0, 3, C_REST, MAT_AT, NB, NMAT, mat_ptr, TOK_W, eps,
                P, 0, 2, True, BLOCK_M, BN, BLOCK_K, CG, DOT_UPCAST)
        else:
            tiles.linear_tile(
                a0 * BLOCK_M, a1 * BN, M, NFIN, D, x_ptr, D, 1, wfin_ptr, D, 1, bfin_ptr, 0, x_ptr, 0, 0,
                mod_ptr, NMOD, lm, lm + D, 0, x_ptr, 0, 0, T,
                qkn_ptr, rcos_ptr, rsin_ptr, 0, 0, 0, 0, kc_ptr, vc_ptr, 0, 0, 0,
                out_img_ptr, 3 * T * P * P, T * P * P, TOK_W * P, 1, cond_ptr, 0, 0, 0, 0,
                3, C_REST, MAT_AT, NB, NMAT, mat_ptr, TOK_W, eps,
                P, 1, 4, True, BLOCK_M, BN, BLOCK_K, CG, DOT_UPCAST)
        tl.debug_barrier()  # every thread's stores of this tile are issued before the release below
        tl.atomic_add(ctr_ptr + tl.load(row + 8), 1, sem="release")
        cur = nxt


# ----------------------------------------------------------------------------------------------- launcher
def programs_per_sm(n_regs: int, num_warps: int, shared_bytes: int, regs_per_sm: int = 65536,
                    smem_per_sm: int = 228 * 1024, threads_per_sm: int = 2048) -> int:
    """How many programs of a compiled kernel can be resident on one SM at once."""
    threads = 32 * num_warps
    by_regs = regs_per_sm // (max(1, n_regs) * threads)
    by_smem = smem_per_sm // shared_bytes if shared_bytes else 1 << 30
    return min(by_regs, by_smem, threads_per_sm // threads)


def require_co_residency(n_programs: int, per_sm: int, n_sm: int) -> None:
    """Refuse a launch whose programs could not all be resident: a spin-wait would then hang."""
    if per_sm < 1 or n_programs > per_sm * n_sm:
        raise RuntimeError(f"megakernel: {n_programs} programs cannot all be resident ({per_sm} per SM x {n_sm} SMs)"
                           " - refusing to launch")


def compile_checked(args, n_programs: int, device, **kw) -> dict:
    """Compile `_megakernel` for `args` without launching it and refuse (RuntimeError) unless all
    `n_programs` programs can be resident at once; returns the build's registers, spills, shared memory."""
    compiled = _megakernel.warmup(*args, grid=(n_programs,), **kw)
    if hasattr(compiled, "_init_handles"):
        compiled._init_handles()  # loads the binary: n_regs / n_spills are known only after this
    props = torch.cuda.get_device_properties(device)
    per_sm = programs_per_sm(compiled.n_regs, compiled.metadata.num_warps, compiled.metadata.shared,
                             getattr(props, "regs_per_multiprocessor", 65536),
                             getattr(props, "shared_memory_per_multiprocessor", 228 * 1024),
                             getattr(props, "max_threads_per_multi_processor", 2048))
    require_co_residency(n_programs, per_sm, props.multi_processor_count)
    return dict(n_regs=compiled.n_regs, n_spills=compiled.n_spills, shared=compiled.metadata.shared, per_sm=per_sm)


class MegakernelStep:
    """One launch per denoising step. Same call contract as FusedStep / CausalDiT.forward_frame (keys
    in kernel layout, see kernels.fused_model.import_cache). Inputs are copied into static buffers so
    the whole step (conditioning MLPs + one launch) can be captured in a CUDA graph."""

    def __init__(self, model, batch: int = 1, block_m: int = 64, block_k: int = 64, attn_block_n: int = 64,
                 att_split: int = 2, num_warps: int = 4, n_programs: int | None = None, max_spin: int = 1 << 20,
                 prefetch=None):
        from neural_renderer.model.inputs import MATERIAL_CHANNEL

        self.model, self.cfg = model, model.cfg
        c = self.cfg
        self.w = PackedWeights(model)
        dev = self.w.wqkv.device
        self.device, self.B = dev, batch
        self.sched = build_tasks(c, batch, block_m, att_split=att_split)
        self.tasks = self.sched.tasks.to(dev)
        self.counters = torch.zeros(self.sched.n_counters, dtype=torch.int64, device=dev)
        self.queue = torch.zeros(1, dtype=torch.int64, device=dev)
        self.gen = torch.zeros(1, dtype=torch.int64, device=dev)
        self.err = torch.zeros(1, dtype=torch.int32, device=dev)
        dt = self.w.dtype
        T, D, R = c.tokens, c.dim, c.resolution
        self.x = torch.empty(batch * T, D, device=dev, dtype=dt)
        self.q = torch.empty(batch, c.heads, T, HEAD_DIM, device=dev, dtype=dt)
        self.a = torch.empty(batch * T, D, device=dev, dtype=dt)
        self.h = torch.empty(batch * T, c.mlp_ratio * D, device=dev, dtype=dt)
        self.mod = torch.empty(batch, self.w.wmod.shape[0], device=dev, dtype=dt)
        self.cvec = torch.empty(batch, D, device=dev, dtype=dt)
        self.xin = torch.empty(batch, 3, R, R, device=dev, dtype=dt)
        self.cond = torch.empty(batch, model.cond_planes, R, R, device=dev, dtype=dt)  # planes the DiT reads
        self.out = torch.empty(batch, 3, R, R, device=dev, dtype=dt)
        self.valid = torch.empty(c.slots, dtype=torch.int32, device=dev)
        self.mat_at, self.c_rest = MATERIAL_CHANNEL, model.cond_planes - 1
        interp = tiles.DOT_UPCAST
        self.n_programs = 1 if interp else (n_programs or torch.cuda.get_device_properties(dev).multi_processor_count)
        self.prefetch = (not interp) if prefetch is None else prefetch
        self.meta = dict(block_m=block_m, block_k=block_k, attn_block_n=attn_block_n, att_bm=block_m // att_split,
                         num_warps=num_warps, max_spin=max_spin)
        self.cooperative = False
        self._checked = interp  # on the GPU the first launch checks co-residency first

    def _args(self, cache):
        c, w = self.cfg, self.w
        k = cache.k
        return (self.tasks, self.tasks.shape[0], self.counters, self.queue, self.gen, self.err,
                self.cvec, self.xin, self.cond, w.mat_table, self.out,
                w.wmod, w.bmod, w.w_embed, w.b_embed, w.wqkv, w.bqkv, w.qknorm, w.wo, w.bo, w.w1, w.b1, w.w2, w.b2,
                w.w_final, w.b_final, w.rope_cos, w.rope_sin, w.slot_cos, w.slot_sin, self.valid,
                cache.k, cache.v, k.stride(0), k.stride(1), k.stride(2), k.stride(3), k.stride(4),
                self.x, self.q, self.a, self.h, self.mod, self.B, w.wmod.shape[0], 1.0 / HEAD_DIM ** 0.5, 1e-6,
                *self._dims())

    def _dims(self):
        c = self.cfg
        return (c.dim, c.heads, c.tokens, c.slots, c.resolution // c.patch, self.c_rest, self.mat_at,
                self.w.mat_table.shape[0], self.w.mat_table.shape[1], c.mlp_ratio * c.dim, 3 * c.patch * c.patch,
                self.n_programs)

    def _constexprs(self):
        m = self.meta
        return dict(P=self.cfg.patch, BLOCK_M=m["block_m"], BLOCK_K=m["block_k"], ATT_BM=m["att_bm"], ATT_BN=m["attn_block_n"],
                    MOD_BM=16, MAX_SPIN=m["max_spin"], PREFETCH=self.prefetch, DOT_UPCAST=tiles.DOT_UPCAST)

    def check_co_residency(self, cache) -> int:
        """Compile without launching; refuse (RuntimeError) unless one program per SM fits."""
        self.compiled_info = compile_checked(self._args(cache), self.n_programs, self.device,
                                             num_warps=self.meta["num_warps"], **self._constexprs())
        self._checked = True
        return self.compiled_info["per_sm"]

    def launch(self, cache) -> None:
        if not self._checked:
            self.check_co_residency(cache)
        self.gen += 1
        kw = dict(num_warps=self.meta["num_warps"], **self._constexprs())
        if self.cooperative:
            kw["launch_cooperative_grid"] = True
        _megakernel[(self.n_programs,)](*self._args(cache), **kw)

    @torch.no_grad()
    def __call__(self, x_noisy, cond, t, d, action, prompt, cache) -> torch.Tensor:
        cond = cond[:, : self.cond.shape[1]]
        if x_noisy.shape != self.xin.shape or cond.shape != self.cond.shape:
            raise ValueError(f"megakernel built for x {tuple(self.xin.shape)}, cond {tuple(self.cond.shape)}; "
                             f"got {tuple(x_noisy.shape)}, {tuple(cond.shape)}")
        if cache.k.shape[1] != self.B or cache.k.dtype != self.w.dtype or not cache.k.is_contiguous():
            raise ValueError("cache batch/dtype/layout does not match the megakernel")
        self.cvec.copy_(self.model.conditioning(t[:, None], d[:, None], action[:, None], prompt)[:, 0])
        self.xin.copy_(x_noisy)
        self.cond.copy_(cond)
        self.valid.copy_(cache.valid)
        self.launch(cache)
        return self.out
