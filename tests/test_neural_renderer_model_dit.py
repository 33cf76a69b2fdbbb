"""The causal DiT: streaming through the KV cache computes exactly what the clip pass computes, the
context rule is the same in both, the adaLN-Zero init is a zero map, and the registry is sound."""
import pytest
import torch

from neural_renderer.model.kv_cache import KVCache
from _models import randomised
from neural_renderer.model.dit import CausalDiT
from neural_renderer.model.registry import MODELS, GeneratorConfig, build

CFGS = [
    GeneratorConfig("t1", resolution=32, patch=8, dim=64, depth=2, heads=1, window=2, sinks=1),
    GeneratorConfig("t2", resolution=16, patch=4, dim=128, depth=1, heads=2, window=1, sinks=2),
    GeneratorConfig("t3", resolution=16, patch=8, dim=64, depth=2, heads=1, window=3, sinks=0),
]


def inputs(cfg, B, L, seed=1):
    g = torch.Generator().manual_seed(seed)
    R = cfg.resolution
    from neural_renderer.model.inputs import COND_CHANNELS, MATERIAL_CHANNEL
    cond = torch.randn(B, L, COND_CHANNELS, R, R, generator=g)
    cond[:, :, MATERIAL_CHANNEL] = torch.randint(0, 32, (B, L, R, R), generator=g).float()
    return (torch.randn(B, L, 3, R, R, generator=g), cond, torch.rand(B, L, generator=g),
            torch.rand(B, L, generator=g), torch.randn(B, L, 9, generator=g), torch.randn(B, 384, generator=g))


@pytest.mark.parametrize("cfg", CFGS, ids=lambda c: c.name)
def test_streaming_equals_clip_pass(cfg):
    m = randomised(cfg)
    B, L = 2, cfg.sinks + cfg.window + 4  # long enough that sinks leave the window and the ring wraps
    x, cond, t, d, a, p = inputs(cfg, B, L)
    with torch.no_grad():
        ref = m.forward_clip(x, cond, t, d, a, p)
        cache = KVCache.for_model(m, B)
        for i in range(L):
            out = m.forward_frame(x[:, i], cond[:, i], t[:, i], d[:, i], a[:, i], p, cache)
            cache.advance()
            torch.testing.assert_close(out, ref[:, i], atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("cfg", CFGS, ids=lambda c: c.name)
def test_cache_validity_matches_clip_context(cfg):
    m = CausalDiT(cfg)
    L = cfg.sinks + cfg.window + 5
    idx, valid = m.clip_context(L, "cpu")
    cache = KVCache.for_model(m, 1)
    for i in range(L):
        assert torch.equal(cache.valid, valid[i]), f"frame {i}"
        cache.advance()
    # context rule: frame i sees j < i iff j is in the window or is a sink
    for i in range(L):
        seen = {int(j) for j, v in zip(idx[i], valid[i]) if v}
        want = {j for j in range(i + 1) if j >= i - cfg.window or j < cfg.sinks}
        assert seen == want


def test_context_is_causal_and_bounded():
    """Changing a future frame never changes a past output; a frame outside window and sinks has no
    direct effect (one layer: with more, it flows on through the frames that did see it, as streaming does)."""
    cfg = GeneratorConfig("d1", resolution=32, patch=8, dim=64, depth=1, heads=1, window=2, sinks=1)
    m = randomised(cfg)
    x, cond, t, d, a, p = inputs(cfg, 1, 7)
    with torch.no_grad():
        ref = m.forward_clip(x, cond, t, d, a, p)
        x2 = x.clone()
        x2[:, 2] += 1.0  # frame 2: seen by frames 3, 4 (window) but not by 5, 6 (not a sink)
        out = m.forward_clip(x2, cond, t, d, a, p)
    assert torch.allclose(out[:, :2], ref[:, :2], atol=1e-6)
    assert not torch.allclose(out[:, 3], ref[:, 3], atol=1e-4)
    assert not torch.allclose(out[:, 4], ref[:, 4], atol=1e-4)
    assert torch.allclose(out[:, 5:], ref[:, 5:], atol=1e-5)
    with torch.no_grad():
        x3 = x.clone()
        x3[:, 0] += 1.0  # the sink: seen by every later frame
        out3 = m.forward_clip(x3, cond, t, d, a, p)
    assert not torch.allclose(out3[:, 6], ref[:, 6], atol=1e-4)


def test_forever_positions_do_not_depend_on_frame_index():
    """After the window is full, the same recent inputs give the same output at frame 10 and frame 100."""
    cfg = GeneratorConfig("t0", resolution=16, patch=8, dim=64, depth=1, heads=1, window=2, sinks=0)
    m = randomised(cfg)
    x, cond, t, d, a, p = inputs(cfg, 1, 1)
    outs = []
    with torch.no_grad():
        cache = KVCache.for_model(m, 1)
        for n in range(101):
            y = m.forward_frame(x[:, 0], cond[:, 0], t[:, 0], d[:, 0], a[:, 0], p, cache)
            cache.advance()
            outs.append(y)
    torch.testing.assert_close(outs[10], outs[100], atol=1e-6, rtol=0)


def test_adaln_zero_init_outputs_zero_and_all_zero_inits_in_one_place():
    m = build("micro")
    x, cond, t, d, a, p = inputs(m.cfg, 1, 3)
    with torch.no_grad():
        assert torch.count_nonzero(m.forward_clip(x, cond, t, d, a, p)) == 0
    for blk in m.blocks:
        assert torch.count_nonzero(blk.adaLN_modulation[-1].weight) == 0
    assert torch.count_nonzero(m.final.linear.weight) == 0


def test_registry_sizes():
    for name, factory in MODELS.items():
        cfg = factory()
        assert cfg.name == name and cfg.dim % 64 == 0 and cfg.dim == 64 * cfg.heads
        assert cfg.resolution % cfg.patch == 0
    assert MODELS["tiny"]().tokens == 256 and MODELS["base"]().tokens == 1024
    assert MODELS["tiny"]().resolution == 128 and MODELS["base"]().resolution == 512


def test_cli_sizes_are_the_registry():
    """`neurender train --model` takes exactly the registry's sizes (checked at run time, so --help
    stays torch-free); anything else is refused with the list, before any work starts."""
    from neural_renderer.cli import main

    assert tuple(MODELS) == ("hg-micro", "tiny", "base", "micro", "dit-tiny", "small", "dit-base")
    with pytest.raises(SystemExit, match="hg-micro, tiny, base, micro, dit-tiny, small, dit-base, got 'huge'"):
        main(["train", "--model", "huge", "--no-progress"])
