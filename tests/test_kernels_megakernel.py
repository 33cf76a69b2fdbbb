"""The megakernel: schedule soundness (topological, exact counts), one launch == the model's
forward_frame (CPU interpreter, one program runs the task list in order), generation counters across
launches without any reset, a missing arrive ends in the error flag rather than a hang, the
co-residency refusal, and backend selection on CPU."""
import _kernels_helpers as H  # noqa: F401  (sets TRITON_INTERPRET before triton is imported)

import pytest  # noqa: E402
import torch  # noqa: E402

from kernels.step_builder import build_step, select_backend  # noqa: E402
from kernels.fused_model import export_keys, import_cache  # noqa: E402
from kernels.megakernel import (MegakernelStep, Schedule, build_tasks, check_schedule, programs_per_sm,  # noqa: E402
                                require_co_residency)
from kernels.selfcheck import filled_cache, random_inputs  # noqa: E402
from neural_renderer.model.dit import CausalDiT
from neural_renderer.model.registry import MODELS  # noqa: E402


@pytest.mark.parametrize("cfg,B,bm,split", [(MODELS["dit-base"](), 1, 64, 2), (MODELS["dit-tiny"](), 2, 32, 1),
                                            (H.tiny_cfg(depth=3), 1, 16, 1)])
def test_schedule_is_topological_with_exact_counts(cfg, B, bm, split):
    s = build_tasks(cfg, B, bm, att_split=split)
    check_schedule(s)
    n_attn = (s.tasks[:, 0] == 3).sum().item()
    assert n_attn == cfg.depth * cfg.heads * B * cfg.tokens // bm * split


def test_schedule_checker_catches_a_missing_or_late_producer():
    s = build_tasks(H.tiny_cfg(), 1, 16)
    dropped = Schedule(torch.cat([s.tasks[:5], s.tasks[6:]]), s.n_counters, 16, 64, 1)  # one mod tile gone
    with pytest.raises(AssertionError, match="waits for"):
        check_schedule(dropped)
    swapped = s.tasks.clone()
    i = int((s.tasks[:, 0] == 3).nonzero()[0])  # first attention task moved before the qkv it needs
    swapped = torch.cat([swapped[i:i + 1], swapped[:i], swapped[i + 1:]])
    with pytest.raises(AssertionError, match="waits for"):
        check_schedule(Schedule(swapped, s.n_counters, 16, 64, 1))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_megakernel_matches_forward_frame_across_launches(dtype):
    cfg = H.tiny_cfg()
    m32 = H.randomize_(CausalDiT(cfg).eval(), seed=5)
    model = H.randomize_(CausalDiT(cfg).eval(), seed=5).to(dtype)
    inp = random_inputs(cfg, 1, "cpu", dtype, seed=3)
    with torch.no_grad():
        ref32 = m32.forward_frame(*(t.float() for t in inp), filled_cache(m32, 1, "cpu", torch.float32, 2))
        cache_same = filled_cache(model, 1, "cpu", dtype, 2)
        ref_same = model.forward_frame(*inp, cache_same)
    mk = MegakernelStep(model, batch=1, block_m=16, block_k=32, attn_block_n=16, att_split=1)
    kcache = import_cache(filled_cache(model, 1, "cpu", dtype, 2))
    n_tasks = mk.tasks.shape[0]
    for launch in (1, 2):  # the second launch waits for gen 2 targets on counters never reset
        mk.out.fill_(float("nan"))
        out = mk(*inp, kcache)
        H.assert_rule(f"megakernel launch {launch}", out, ref32, ref_same, H.atol_for(dtype))
        assert mk.err.item() == 0
        assert mk.queue.item() == launch * (n_tasks + 1)
        assert mk.counters[2:].min().item() > 0 and mk.gen.item() == launch
    H.assert_rule("megakernel current-slot keys", export_keys(kcache.k[:, :, :, -1]),
                  filled_and_written(m32, inp), cache_same.k[:, :, :, -1], H.atol_for(dtype))


def filled_and_written(m32, inp):
    cache = filled_cache(m32, 1, "cpu", torch.float32, 2)
    with torch.no_grad():
        m32.forward_frame(*(t.float() for t in inp), cache)
    return cache.k[:, :, :, -1]


def test_missing_arrive_sets_the_flag_instead_of_hanging():
    cfg = H.tiny_cfg(depth=1)
    model = H.randomize_(CausalDiT(cfg).eval())
    mk = MegakernelStep(model, batch=1, block_m=16, block_k=32, attn_block_n=16, att_split=1, max_spin=8)
    mk.tasks[0, 4] = mk.sched.n_counters - 1  # first task waits on a counter...
    mk.tasks[0, 5] = 1000                      # ...for more arrivals than there are producers
    inp = random_inputs(cfg, 1, "cpu", torch.float32)
    mk(*inp, import_cache(filled_cache(model, 1, "cpu", torch.float32)))
    assert mk.err.item() == 1


def test_co_residency_refusal():
    # 128 threads at 168 registers: 3 per SM by registers; 100 KiB shared: 2 per SM by shared memory
    assert programs_per_sm(168, 4, 100 * 1024) == 2
    assert programs_per_sm(255, 8, 0) == 1
    assert programs_per_sm(64, 4, 300 * 1024) == 0
    require_co_residency(132, 1, 132)
    with pytest.raises(RuntimeError, match="refusing to launch"):
        require_co_residency(133, 1, 132)
    with pytest.raises(RuntimeError, match="refusing to launch"):
        require_co_residency(1, 0, 132)


def test_bad_inputs_and_backend_on_cpu():
    """Tried: wrong image size, cache of another dtype, unknown backend name, a bad or CPU-impossible
    NEURENDER_KERNELS_BACKEND override."""
    cfg = H.tiny_cfg(depth=1)
    model = H.randomize_(CausalDiT(cfg).eval())
    mk = MegakernelStep(model, batch=1, block_m=16, att_split=1)
    x, cond, t, d, a, p = random_inputs(cfg, 1, "cpu", torch.float32)
    cache = import_cache(filled_cache(model, 1, "cpu", torch.float32))
    with pytest.raises(ValueError, match="megakernel built for"):
        mk(x[:, :, :16, :16], cond, t, d, a, p, cache)
    with pytest.raises(ValueError, match="cache"):
        mk(x, cond, t, d, a, p, import_cache(filled_cache(model, 1, "cpu", torch.float64)))
    assert select_backend("cpu") == "eager"
    mp = pytest.MonkeyPatch()
    try:
        mp.setenv("NEURENDER_KERNELS_BACKEND", "eager")
        assert select_backend("cpu") == "eager"
        mp.setenv("NEURENDER_KERNELS_BACKEND", "fused")
        with pytest.raises(ValueError, match="needs a CUDA device"):
            select_backend("cpu")
        mp.setenv("NEURENDER_KERNELS_BACKEND", "tensorrt")
        with pytest.raises(ValueError, match="choose one of"):
            select_backend("cpu")
    finally:
        mp.undo()
    assert build_step(model, "eager") == model.forward_frame
    with pytest.raises(ValueError, match="unknown backend"):
        build_step(model, "tensorrt")


def test_roofline_inputs_for_dit_base_match_a_hand_count():
    """The bench's floor column: FLOPs and KV bytes of one base step, counted by hand."""
    from neural_renderer.commands.bench_kernels_dit import step_cost

    model = CausalDiT(MODELS["dit-base"]())
    D, L, T, keys = 256, 8, 1024, 5 * 1024          # base: 4 context slots + the current frame
    linear_params = L * 12 * D * D + D * (18 * 16 * 16) + (3 * 16 * 16) * D  # blocks, patch embed, final
    flops = 2 * T * linear_params + 4 * T * keys * D * L
    w_bytes, kv_bytes, got = step_cost(model)
    assert got == flops == 58_653_147_136
    assert kv_bytes == 2 * 2 * L * keys * D
    assert w_bytes == 2 * sum(p.numel() for n, p in model.named_parameters() if not n.startswith("material"))


# -- the hourglass generator's trunk (kernels.megakernel_trunk): the same kernel over a schedule without the head --


@pytest.mark.parametrize("B,T,bm,split", [(1, 1024, 64, 2), (1, 15, 16, 1), (1, 100, 64, 2), (2, 64, 32, 2)])
def test_trunk_schedule_is_topological_with_exact_counts(B, T, bm, split):
    """No embed or final tasks; a part-empty last row block gets only the attention tiles that start in it."""
    cfg = H.tiny_cfg(depth=3)
    s = build_tasks(cfg, B, bm, att_split=split, tokens=T, head=False)
    check_schedule(s)
    types = s.tasks[:, 0].tolist()
    assert 1 not in types and 7 not in types  # T_EMBED, T_FINAL
    att_bm = bm // split
    assert types.count(3) == cfg.depth * cfg.heads * -(-B * T // att_bm)
    assert types.count(0) == cfg.depth * 6 * cfg.dim // 64  # every block's adaLN, no final layer's


def test_trunk_schedule_refuses_a_batch_split_inside_a_row_block():
    with pytest.raises(ValueError, match="multiple of block_m"):
        build_tasks(H.tiny_cfg(), 2, 16, tokens=15, head=False)


@pytest.mark.parametrize("B,size,launched", [(2, (32, 32), True), (2, (24, 40), False), (1, (40, 40), True)])
def test_megakernel_trunk_with_two_heads_and_batches(B, size, launched):
    """Two heads, batch 2 (16 tokens: one launch; 15 tokens: the fused ops on the same weights) and 25 tokens at
    batch 1 over 16-row blocks (two row blocks, the second part empty); two calls, the counters never reset."""
    import dataclasses

    from kernels.megakernel_trunk import MegakernelTrunk
    from kernels.selfcheck import random_frame_inputs
    from neural_renderer.model.registry import build

    cfg = dataclasses.replace(MODELS["hg-micro"](), dim=128, heads=2)
    m32 = H.randomize_(build(cfg).eval(), seed=4)
    model = H.randomize_(build(cfg).eval(), seed=4).to(torch.bfloat16)
    Hh, W = size
    tokens = model.tokens_for(Hh, W)
    mk = MegakernelTrunk(model, block_m=16, att_split=1, attn_block_n=16)
    for call in (1, 2):
        inp = random_frame_inputs(cfg, B, Hh, W, "cpu", torch.bfloat16, seed=call)
        cache = lambda m, dt: filled_cache(m, B, "cpu", dt, None, seed=call, tokens=tokens)  # noqa: E731
        with torch.no_grad():
            ref32 = m32.forward_frame(*(t.float() for t in inp), cache(m32, torch.float32))
            ref_same = model.forward_frame(*inp, cache(model, torch.bfloat16))
            mk.poison()
            out = model.forward_frame(*inp, import_cache(cache(model, torch.bfloat16)), trunk=mk)
        H.assert_rule(f"call {call}", out, ref32, ref_same, H.atol_for(torch.bfloat16))
    plan = mk._plans[(B, tokens)]
    assert (plan is not None) == launched
    if launched:
        assert plan.gen.item() == 2 and plan.queue.item() == 2 * (plan.tasks.shape[0] + 1) and mk.spin_flag() == 0
