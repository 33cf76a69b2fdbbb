"""The hourglass sampler: deterministic by seed, a reset restarts the run exactly, a frame costs `steps`
forwards, the history is used only where motion vectors come, any frame size is served at its size."""
import torch

from neural_renderer.model.inputs import COND_CHANNELS
from neural_renderer.serving.stream import StreamingSampler
from _models import randomised


def model():
    return randomised("hg-micro")


def frames(n, H=32, W=32, seed=3):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        mv = torch.randn(1, 2, H, W, generator=g)
        out.append((torch.randn(1, COND_CHANNELS, H, W, generator=g).clamp(0, 2), torch.randn(1, 9, generator=g),
                    mv, (torch.rand(1, 1, H, W, generator=g) > 0.9).float()))
    return out


def run(sampler, seq):
    return [sampler.step(*f) for f in seq]


def test_deterministic_by_seed_and_reset_restarts():
    m, seq = model(), frames(5)
    p = torch.randn(384)
    a = run(StreamingSampler(m, p, steps=2, seed=1), seq)
    s = StreamingSampler(m, p, steps=2, seed=1)
    b = run(s, seq)
    c = run(StreamingSampler(m, p, steps=2, seed=2), seq)
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y)
    assert (a[-1] - c[-1]).abs().max() > 1e-4
    s.reset()
    torch.testing.assert_close(run(s, seq)[-1], a[-1])


def test_a_frame_costs_steps_forwards(monkeypatch):
    m = model()
    calls = []
    orig = m.forward_frame
    monkeypatch.setattr(m, "forward_frame", lambda *a, **k: calls.append(1) or orig(*a, **k))
    s = StreamingSampler(m, torch.randn(384), steps=3)
    run(s, frames(4))
    assert len(calls) == 12
    assert s.cache.frames == 4


def test_history_needs_motion_vectors():
    """Without motion the history group is absent: the run equals the no-history arm's; with motion
    (and a previous output) it changes the frame."""
    m, seq = model(), frames(3)
    p = torch.randn(384)
    no_mv = [(c, a, None, None) for c, a, _, _ in seq]
    with_hist = run(StreamingSampler(m, p, seed=1), no_mv)
    without = run(StreamingSampler(m, p, seed=1, use_history=False), seq)
    for x, y in zip(with_hist, without):
        torch.testing.assert_close(x, y)
    moving = run(StreamingSampler(m, p, seed=1), seq)
    torch.testing.assert_close(moving[0], without[0])  # frame 0 has no previous output
    assert (moving[2] - without[2]).abs().max() > 1e-4


def test_fixed_noise_repeats_the_noise_field():
    m = model()
    p = torch.randn(384)
    f = frames(1)[0]
    fixed = StreamingSampler(m, p, noise="fixed", use_context=False, use_history=False)
    fresh = StreamingSampler(m, p, noise="fresh", use_context=False, use_history=False)
    torch.testing.assert_close(fixed.step(*f), fixed.step(*f))
    assert (fresh.step(*f) - fresh.step(*f)).abs().max() > 1e-4


def test_any_size_and_a_size_change_starts_over():
    m = model()
    s = StreamingSampler(m, torch.randn(384), seed=4)
    out = run(s, frames(3, 24, 40))
    assert out[-1].shape == (1, 3, 24, 40) and s.cache.frames == 3
    out = run(s, frames(2, 40, 24))
    assert out[-1].shape == (1, 3, 40, 24) and s.cache.frames == 2
    assert all(o.abs().max() <= 1 for o in out)
