"""The hourglass generator: streaming through the KV cache computes exactly what the clip pass computes,
frames never see later frames, any frame size runs at its own size, the history group reaches the
output, and the zero-initialised layers start as a zero map."""
import pytest
import torch

from neural_renderer.model.inputs import COND_CHANNELS, MATERIAL_CHANNEL
from neural_renderer.model.history import HISTORY_PLANES
from neural_renderer.model.kv_cache import KVCache
from neural_renderer.model.registry import MODELS, GeneratorConfig, build
from _models import randomised

CFGS = [
    MODELS["hg-micro"](),
    GeneratorConfig("hg2", arch="hourglass", resolution=16, patch=4, dim=128, depth=1, heads=2, window=2, sinks=1,
                    widths=(8, 16), enc_blocks=(1, 1), dec_blocks=(1, 0)),
    GeneratorConfig("hg3", arch="hourglass", resolution=32, patch=8, dim=64, depth=2, heads=1, window=1, sinks=0,
                    widths=(4, 8, 8), enc_blocks=(0, 1, 0), dec_blocks=(0, 0, 1)),
]


def inputs(B, L, H, W, seed=1):
    g = torch.Generator().manual_seed(seed)
    cond = torch.randn(B, L, COND_CHANNELS, H, W, generator=g)
    cond[:, :, MATERIAL_CHANNEL] = torch.randint(0, 32, (B, L, H, W), generator=g).float()
    hist = torch.randn(B, L, HISTORY_PLANES, H, W, generator=g)
    return (torch.randn(B, L, 3, H, W, generator=g), cond, hist, torch.rand(B, L, generator=g),
            torch.rand(B, L, generator=g), torch.rand(B, L, generator=g), torch.randn(B, L, 9, generator=g),
            torch.randn(B, 384, generator=g))


def cache_for(m, B, H, W):
    c = m.cfg
    return KVCache(c.depth, B, c.heads, m.tokens_for(H, W), c.window, c.sinks)


@pytest.mark.parametrize("cfg", CFGS, ids=lambda c: c.name)
@pytest.mark.parametrize("size", [(32, 32), (24, 40)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_streaming_equals_clip_pass(cfg, size):
    m = randomised(cfg)
    H, W = size
    B, L = 2, cfg.sinks + cfg.window + 3  # long enough that sinks leave the window and the ring wraps
    x, cond, hist, t, d, h, a, p = inputs(B, L, H, W)
    with torch.no_grad():
        ref = m.forward_clip(x, cond, hist, t, d, h, a, p)
        cache = cache_for(m, B, H, W)
        for i in range(L):
            out = m.forward_frame(x[:, i], cond[:, i], hist[:, i], t[:, i], d[:, i], h[:, i], a[:, i], p, cache)
            cache.advance()
            torch.testing.assert_close(out, ref[:, i], atol=2e-5, rtol=1e-4)


def test_frames_never_see_later_frames():
    m = randomised(CFGS[0])
    x, cond, hist, t, d, h, a, p = inputs(1, 4, 32, 32)
    with torch.no_grad():
        ref = m.forward_clip(x, cond, hist, t, d, h, a, p)
        x2 = x.clone()
        x2[:, 3] += 1.0
        out = m.forward_clip(x2, cond, hist, t, d, h, a, p)
    torch.testing.assert_close(out[:, :3], ref[:, :3])
    assert (out[:, 3] - ref[:, 3]).abs().max() > 1e-3


def test_context_reaches_the_current_frame():
    """A frame's output depends on the earlier frames of its window through attention."""
    m = randomised(CFGS[0])
    x, cond, hist, t, d, h, a, p = inputs(1, 3, 32, 32)
    with torch.no_grad():
        ref = m.forward_clip(x, cond, hist, t, d, h, a, p)
        x2 = x.clone()
        x2[:, 1] += 1.0
        out = m.forward_clip(x2, cond, hist, t, d, h, a, p)
    assert (out[:, 2] - ref[:, 2]).abs().max() > 1e-3


@pytest.mark.parametrize("size", [(36, 44), (8, 8), (17, 9)])
def test_any_frame_size_runs_at_its_own_size(size):
    """Sizes that are not multiples of the trunk's factor are edge-padded and cropped back."""
    m = randomised(CFGS[0])
    H, W = size
    x, cond, hist, t, d, h, a, p = inputs(1, 2, H, W)
    with torch.no_grad():
        out = m.forward_clip(x, cond, hist, t, d, h, a, p)
    assert out.shape == (1, 2, 3, H, W)
    assert torch.isfinite(out).all()


def test_history_group_reaches_the_output():
    m = randomised(CFGS[0])
    x, cond, hist, t, d, h, a, p = inputs(1, 2, 32, 32)
    with torch.no_grad():
        ref = m.forward_clip(x, cond, hist, t, d, h, a, p)
        out = m.forward_clip(x, cond, torch.zeros_like(hist), t, d, h, a, p)
    assert (out - ref).abs().mean() > 1e-3


def test_initialisation_is_a_zero_map():
    """adaLN-Zero / zero-initialised residual convs and output: the untrained model predicts 0 (mid grey)."""
    m = build("hg-micro").eval()
    x, cond, hist, t, d, h, a, p = inputs(1, 2, 32, 32)
    with torch.no_grad():
        out = m.forward_clip(x, cond, hist, t, d, h, a, p)
    assert out.abs().max() == 0


@pytest.mark.parametrize("name", ["tiny", "base"])
def test_shipped_sizes_fit_the_file_limit(name):
    """bf16 weights of each registered size fit in two 15 MiB shards."""
    m = build(name)
    assert m.cfg.arch == "hourglass"
    assert m.cfg.patch == 2 ** len(m.cfg.widths)
    assert sum(p.numel() for p in m.parameters()) * 2 < 2 * 15 * 2**20
