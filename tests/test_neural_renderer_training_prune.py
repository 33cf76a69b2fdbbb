"""Pruning: the plan removes exactly the lowest-scoring units and keeps widths on 64-multiples; the
pruned model equals the unpruned one with the removed units zeroed (masking equivalence); Taylor
scores are |w * grad| summed over each unit's weights; a block that does nothing scores 0 and goes
first; the pruned checkpoint loads through `generator:/path.safetensors` and renders."""
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from _models import randomised as randomised_model
from neural_renderer.model.dit import CausalDiT
from neural_renderer.model.registry import GeneratorConfig
from neural_renderer.training.prune import (TILE, PrunePlan, Scores, UnitMask, apply_plan, block_scores, head_rows, masked,
                                   plan_prune, taylor_scores)
from _images import assert_drawing

CFG = GeneratorConfig("p3", resolution=16, patch=4, dim=128, depth=3, heads=2, window=1, sinks=1)



def randomised(cfg=CFG, seed=0) -> CausalDiT:
    return randomised_model(cfg, seed)


def inputs(cfg=CFG, B=2, L=3, seed=1):
    from neural_renderer.model.inputs import COND_CHANNELS, MATERIAL_CHANNEL

    g = torch.Generator().manual_seed(seed)
    R = cfg.resolution
    cond = torch.randn(B, L, COND_CHANNELS, R, R, generator=g)
    cond[:, :, MATERIAL_CHANNEL] = torch.randint(0, 32, (B, L, R, R), generator=g).float()
    return (torch.randn(B, L, 3, R, R, generator=g), cond, torch.rand(B, L, generator=g),
            torch.rand(B, L, generator=g), torch.randn(B, L, 9, generator=g), torch.randn(B, 384, generator=g))


def random_scores(cfg=CFG, seed=3) -> Scores:
    g = torch.Generator().manual_seed(seed)
    return Scores(torch.rand(cfg.depth, cfg.heads, generator=g), torch.rand(cfg.depth, cfg.mlp_ratio * cfg.dim, generator=g),
                  torch.rand(cfg.depth, generator=g))


def test_plan_removes_exactly_the_lowest_scoring_units():
    s = random_scores()
    s.blocks = torch.tensor([0.5, 0.1, 0.9])
    plan = plan_prune(s, CFG, drop_blocks=1, mlp_ratio=2)
    assert plan.keep_blocks == [0, 2]  # block 1 scored lowest
    width = 2 * CFG.dim
    for b, kept in zip(plan.keep_blocks, plan.keep_mlp):
        assert len(kept) == width == len(set(kept))
        removed = sorted(set(range(CFG.mlp_ratio * CFG.dim)) - set(kept))
        assert float(s.mlp[b, removed].max()) < float(s.mlp[b, kept].min())  # every removed < every kept
        assert removed == sorted(torch.argsort(s.mlp[b])[: len(removed)].tolist())
    plan2 = plan_prune(s, CFG, drop_blocks=2, mlp_ratio=4)
    assert plan2.keep_blocks == [2] and plan2.keep_mlp == [list(range(512))]


@pytest.mark.parametrize("bad", [dict(drop_blocks=3, mlp_ratio=2), dict(drop_blocks=-1, mlp_ratio=2),
                                 dict(drop_blocks=0, mlp_ratio=0), dict(drop_blocks=0, mlp_ratio=5)])
def test_plan_rejects_impossible_requests(bad):
    with pytest.raises(ValueError):
        plan_prune(random_scores(), CFG, **bad)


@pytest.mark.parametrize("drop,ratio", [(0, 3), (1, 2), (2, 1)])
def test_pruned_widths_are_tile_multiples_and_weights_are_the_kept_ones(drop, ratio):
    m = randomised()
    plan = plan_prune(random_scores(), CFG, drop, ratio)
    p = apply_plan(m, plan)
    assert p.cfg.depth == CFG.depth - drop and len(p.blocks) == CFG.depth - drop
    for blk in p.blocks:
        for w in (blk.fc1.out_features, blk.fc2.in_features, blk.qkv.in_features, blk.proj.out_features, blk.heads * 64):
            assert w % TILE == 0
        assert blk.fc1.out_features == ratio * CFG.dim
    for new_i, (old_i, ch) in enumerate(zip(plan.keep_blocks, plan.keep_mlp)):
        src, dst = m.blocks[old_i], p.blocks[new_i]
        assert torch.equal(dst.fc1.weight, src.fc1.weight[ch]) and torch.equal(dst.fc1.bias, src.fc1.bias[ch])
        assert torch.equal(dst.fc2.weight, src.fc2.weight[:, ch]) and torch.equal(dst.qkv.weight, src.qkv.weight)


@pytest.mark.parametrize("drop,ratio", [(1, 2), (0, 1), (2, 3)])
def test_masking_equivalence(drop, ratio):
    m = randomised()
    plan = plan_prune(random_scores(seed=drop), CFG, drop, ratio)
    p = apply_plan(m, plan).eval()
    x = inputs()
    with torch.no_grad():
        full = m(*x)
        with masked(m, plan.mask(CFG)):
            want = m(*x)
        got = p(*x)
        after = m(*x)
    torch.testing.assert_close(got, want, atol=2e-5, rtol=1e-5)
    assert float((full - want).abs().max()) > 1e-3  # the removed units did matter
    torch.testing.assert_close(after, full, atol=0, rtol=0)  # hooks are gone after the context


def test_head_mask_equals_zeroing_the_heads_output_projection():
    m = randomised()
    mask = UnitMask.full(CFG)
    mask.heads[1, 0] = False
    x = inputs()
    with torch.no_grad():
        with masked(m, mask):
            got = m(*x)
        m.blocks[1].proj.weight[:, :64] = 0.0
        want = m(*x)
    torch.testing.assert_close(got, want, atol=2e-5, rtol=1e-5)


def test_taylor_scores_are_w_times_grad_per_unit():
    m = randomised()
    x = inputs()
    target = torch.randn(x[0].shape, generator=torch.Generator().manual_seed(5))
    heads, mlp = taylor_scores(m, [(x, target)], lambda mm, b: F.mse_loss(mm(*b[0]), b[1]))
    m.zero_grad()
    F.mse_loss(m(*x), target).backward()
    blk = m.blocks[2]
    rows = head_rows(CFG.dim, 1)
    want_h = ((blk.qkv.weight * blk.qkv.weight.grad)[rows].abs().sum() + (blk.qkv.bias * blk.qkv.bias.grad)[rows].abs().sum()
              + (blk.proj.weight * blk.proj.weight.grad)[:, 64:128].abs().sum())
    want_c = ((blk.fc1.weight[7] * blk.fc1.weight.grad[7]).abs().sum() + (blk.fc1.bias[7] * blk.fc1.bias.grad[7]).abs()
              + (blk.fc2.weight[:, 7] * blk.fc2.weight.grad[:, 7]).abs().sum())
    assert float(heads[2, 1]) == pytest.approx(float(want_h.detach()), rel=1e-4)
    assert float(mlp[2, 7]) == pytest.approx(float(want_c.detach()), rel=1e-4)
    assert heads.shape == (3, 2) and mlp.shape == (3, 512) and bool((mlp > 0).all())
    assert sorted(rows.tolist()) == list(range(64, 128)) + list(range(192, 256)) + list(range(320, 384))


def test_idle_block_scores_zero_and_is_removed_first():
    m = randomised()
    with torch.no_grad():  # gates of block 1 = 0: its residual branches add nothing (adaLN-Zero)
        w = m.blocks[1].adaLN_modulation[-1]
        D = CFG.dim
        for k in (2, 5):
            w.weight[k * D : (k + 1) * D] = 0.0
            w.bias[k * D : (k + 1) * D] = 0.0
    x = inputs()
    s = block_scores(m, [x], lambda mm, b: mm(*b))
    assert float(s[1]) == 0.0 and float(s[0]) > 0 and float(s[2]) > 0
    plan = plan_prune(Scores(torch.ones(3, 2), torch.ones(3, 512), s), CFG, drop_blocks=1, mlp_ratio=4)
    assert plan.keep_blocks == [0, 2]
    with torch.no_grad():
        torch.testing.assert_close(apply_plan(m, plan)(*x), m(*x), atol=2e-5, rtol=1e-5)


def test_pruned_checkpoint_loads_through_generator_spec(tmp_path):
    from bridge.backends import FrameInputs, SessionSpec, create_renderer
    from bridge.channels import ACTION_DIM
    from neural_renderer.model.checkpoint import save_checkpoint

    cfg = GeneratorConfig("p3", resolution=32, patch=8, dim=128, depth=3, heads=2, window=1, sinks=1)
    m = randomised(cfg)
    plan = PrunePlan([0, 2], [list(range(0, 512, 2)), list(range(1, 512, 2))], 2)
    p = apply_plan(m, plan, name="p3-pruned")
    path = save_checkpoint(p.state_dict(), p.cfg, tmp_path / "p3-pruned", dtype=torch.float32, meta={"kind": "pruned"})
    doc = json.loads(path.read_text())
    assert doc["config"]["depth"] == 2 and doc["config"]["mlp_ratio"] == 2
    r = create_renderer(f"generator:{tmp_path / 'p3-pruned.safetensors'}", steps=2, device="cpu")
    try:
        assert r.model.cfg.depth == 2 and r.model.cfg.mlp_ratio == 2 and r.describe()["model"] == "p3-pruned"
        for k, v in p.state_dict().items():
            assert torch.equal(r.model.state_dict()[k], v), k
        spec = SessionSpec(width=32, height=32, channels={}, action_dim=ACTION_DIM, output_format="rgba8", prompt=None, steps=2)
        sess = r.open_session(spec)
        out = np.zeros((32, 32, 4), np.uint8)
        sess.render(FrameInputs(seq=0, pixels={}, constants={}, action=np.zeros(ACTION_DIM, np.float32), prompt=None,
                                reset=False), out)
        sess.close()
        assert out[..., 3].min() == 255 and out[..., :3].std() > 0  # a real frame came out
    finally:
        r.close()


def prune_and_check(src, out, steps: int, lr: float, match_weight: float) -> list[int]:
    """`neurender prune` of a 3-block checkpoint (drop 1 block, MLP ratio 2) on synthetic clips, and what every
    pruning run must show: the lowest-scoring block removed, fewer parameters and MACs, the gap to the unpruned
    model under 0.75x after recovery, both plots drawn. -> the removed block indices."""
    from neural_renderer.cli import main

    rc = main(["prune", "--from", str(src), "--out", str(out), "--data", "synthetic", "--drop-blocks", "1",
               "--mlp-ratio", "2", "--score-batches", "2", "--steps", str(steps), "--batch", "4", "--clip-len", "3",
               "--pool", "4", "--lr", str(lr), "--warmup", "3", "--match-weight", str(match_weight), "--log-every", "10",
               "--no-progress"])
    assert rc == 0
    res = json.loads((out / "prune_result.json").read_text())
    removed = [i for i in range(3) if i not in res["plan"]["keep_blocks"]]
    assert len(removed) == 1 and res["scores"]["blocks"][removed[0]] == min(res["scores"]["blocks"])
    assert res["params_pruned"] < res["params_unpruned"] and res["macs_per_frame_pruned"] < res["macs_per_frame_unpruned"]
    assert res["match_error_after_recovery"] < 0.75 * res["match_error_before_recovery"], res
    for name in ("scores.png", "loss.png"):
        assert_drawing(out / name)
    return removed


def test_prune_command_end_to_end(tmp_path, one_thread):
    """Score on synthetic clips, drop a block and half the MLP, recover by output matching: the
    held-out prediction gap to the unpruned model shrinks, and the result is a loadable checkpoint."""
    from neural_renderer.model.checkpoint import load_model, save_checkpoint

    cfg = GeneratorConfig("m3", resolution=16, patch=4, dim=64, depth=3, heads=1, window=1, sinks=1)
    src = save_checkpoint(randomised(cfg).state_dict(), cfg, tmp_path / "src" / "m3", dtype=torch.float32)
    out = tmp_path / "out"
    prune_and_check(src, out, steps=40, lr=1e-3, match_weight=20)
    p = load_model(out / "m3-pruned.safetensors")
    assert (p.cfg.depth, p.cfg.mlp_ratio, p.cfg.name) == (2, 2, "m3-pruned")
    assert json.loads((out / "m3-pruned.json").read_text())["train"]["kind"] == "pruned"


def test_prune_command_rejects_impossible_plan(tmp_path):
    from neural_renderer.model.checkpoint import save_checkpoint
    from neural_renderer.cli import main

    cfg = GeneratorConfig("m2", resolution=16, patch=4, dim=64, depth=2, heads=1, window=1, sinks=1)
    src = save_checkpoint(randomised(cfg).state_dict(), cfg, tmp_path / "m2", dtype=torch.float32)
    with pytest.raises(SystemExit, match="drop_blocks"):
        main(["prune", "--from", str(src), "--out", str(tmp_path / "o"), "--data", "synthetic", "--drop-blocks", "2",
              "--pool", "2", "--clip-len", "2", "--score-batches", "1", "--no-progress"])


# -- the hourglass: the same blocks as its trunk ------------------------------------------------------


def _hg3():
    """hg-micro with a third trunk block, so one can go and two stay."""
    import dataclasses

    from neural_renderer.model.registry import hg_micro

    return dataclasses.replace(hg_micro(), name="hg3", depth=3)


def _hg_inputs(cfg, B=2, L=3, seed=1):
    from neural_renderer.model.history import HISTORY_PLANES

    x, cond, t, d, action, prompt = inputs(cfg, B, L, seed)
    g = torch.Generator().manual_seed(seed + 1)
    hist = torch.randn(B, L, HISTORY_PLANES, cfg.resolution, cfg.resolution, generator=g)
    return x, cond, hist, t, d, torch.rand(B, L, generator=g) * 0.3, action, prompt


@pytest.mark.parametrize("drop,ratio", [(1, 2), (2, 1), (0, 3)])
def test_hourglass_pruned_trunk_equals_the_masked_one(drop, ratio, one_thread):
    """The pruned hourglass keeps exactly the named trunk blocks and channels (its convolutional levels
    whole) and computes what the unpruned one computes with the removed units zeroed."""
    cfg = _hg3()
    m = randomised(cfg)
    plan = plan_prune(random_scores(cfg, seed=drop), cfg, drop, ratio)
    p = apply_plan(m, plan).eval()
    assert type(p) is type(m) and p.cfg.arch == "hourglass" and p.cfg.depth == 3 - drop
    assert p.cfg.mlp_ratio * p.cfg.dim % TILE == 0
    for new_i, (old_i, ch) in enumerate(zip(plan.keep_blocks, plan.keep_mlp)):
        assert torch.equal(p.blocks[new_i].qkv.weight, m.blocks[old_i].qkv.weight)
        assert torch.equal(p.blocks[new_i].fc1.weight, m.blocks[old_i].fc1.weight[ch])
    src = m.state_dict()
    for k, v in p.state_dict().items():
        if not k.startswith("blocks."):
            assert torch.equal(v, src[k]), k
    x = _hg_inputs(cfg)
    with torch.no_grad():
        full = m(*x)
        with masked(m, plan.mask(cfg)):
            want = m(*x)
        got = p(*x)
    torch.testing.assert_close(got, want, atol=2e-5, rtol=1e-5)
    if drop or ratio < cfg.mlp_ratio:
        assert float((full - want).abs().max()) > 1e-3


def test_prune_hourglass_end_to_end(tmp_path, one_thread):
    """`neurender prune` on an hourglass: the lowest-scoring trunk block goes, the MLP halves, recovery by
    output matching closes part of the gap, and the checkpoint round-trips and streams through the
    serving sampler at the unpruned model's output shape."""
    from neural_renderer.model.checkpoint import load_model, load_state, save_checkpoint
    from neural_renderer.serving.stream import StreamingSampler

    cfg = _hg3()
    m = randomised(cfg)
    src = save_checkpoint(m.state_dict(), cfg, tmp_path / "src" / "hg3", dtype=torch.float32)
    out = tmp_path / "out"
    removed = prune_and_check(src, out, steps=30, lr=1e-4, match_weight=1000)
    pcfg, state, meta = load_state(out / "hg3-pruned.json")
    assert (pcfg.arch, pcfg.depth, pcfg.mlp_ratio) == ("hourglass", 2, 2)
    assert meta["kind"] == "pruned" and meta["removed_blocks"] == removed
    p = load_model(out / "hg3-pruned.safetensors")
    for k, v in p.state_dict().items():
        assert torch.equal(v, state[k].float()), k
    batch = _hg_inputs(cfg, B=1, L=2)
    frames = []
    for model in (p, m):
        s = StreamingSampler(model, batch[-1], steps=2, seed=0)
        motion = torch.zeros(1, 2, cfg.resolution, cfg.resolution)
        frames.append([s.step(batch[1][:, i], batch[-2][:, i], motion) for i in range(2)])
    for a, b in zip(*frames):
        assert a.shape == b.shape == (1, 3, cfg.resolution, cfg.resolution) and bool(a.isfinite().all())
