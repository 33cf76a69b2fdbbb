"""The streaming sampler: Euler/x-prediction arithmetic, determinism by seed, reset, the per-frame
ablation, prompt re-caching, and no host reads inside step()."""
import pytest
import torch

from _models import randomised
from neural_renderer.model.flow import add_noise, euler_step, schedule
from neural_renderer.serving.generator import Generator
from neural_renderer.model.kv_cache import KVCache
from neural_renderer.model.registry import GeneratorConfig

CFG = GeneratorConfig("s", resolution=16, patch=8, dim=64, depth=2, heads=1, window=2, sinks=1, steps=2)


def model(seed=0):
    return randomised(CFG, seed)


def conds(n, seed=3):
    g = torch.Generator().manual_seed(seed)
    c = torch.randn(n, 1, 13, 16, 16, generator=g)
    c[:, :, 10] = 2.0
    return c


def test_euler_with_exact_x0_lands_on_x0_and_follows_the_straight_path():
    x0, noise = torch.randn(4, 3, 8, 8), torch.randn(4, 3, 8, 8)
    levels = schedule(4)
    assert levels == [1.0, 0.75, 0.5, 0.25, 0.0]
    x = noise
    for t, s in zip(levels[:-1], levels[1:]):
        x = euler_step(x, x0, t, s)
        torch.testing.assert_close(x, add_noise(x0, noise, torch.tensor(s)), atol=1e-5, rtol=0)
    torch.testing.assert_close(x, x0)


def test_deterministic_by_seed_and_reset_replays():
    m, c = model(), conds(6)
    a = Generator(m, torch.ones(384), seed=7)
    b = Generator(m, torch.ones(384), seed=7)
    other = Generator(m, torch.ones(384), seed=8)
    ya = [a.step(ci) for ci in c]
    yb = [b.step(ci) for ci in c]
    yo = [other.step(ci) for ci in c]
    assert all(torch.equal(p, q) for p, q in zip(ya, yb))
    assert not torch.allclose(ya[3], yo[3])
    a.reset()
    assert all(torch.equal(p, a.step(ci)) for p, ci in zip(ya, c))


def test_context_matters_and_ablation_ignores_it():
    m, c = model(), conds(5)
    causal = Generator(m, torch.ones(384), seed=1)
    frame_only = Generator(m, torch.ones(384), seed=1, use_context=False)
    ys = [causal.step(ci) for ci in c]
    ps = [frame_only.step(ci) for ci in c]
    torch.testing.assert_close(ys[0], ps[0])  # frame 0 has no context in either
    assert not torch.allclose(ys[4], ps[4], atol=1e-4)
    # the ablation's output for a frame does not depend on what came before it
    fresh = Generator(m, torch.ones(384), seed=1, use_context=False)
    fresh.rng.set_state(frame_only.rng.get_state())
    torch.testing.assert_close(fresh.step(c[0]), frame_only.step(c[0]))


def test_prompt_change_recaches_context_under_new_prompt():
    """After set_prompt, the cache holds what encoding the same context frames under the new
    prompt gives: checked against the model run directly on the kept frames."""
    m, c = model(), conds(5)
    p1, p2 = torch.ones(384), -torch.ones(384)
    gen = Generator(m, p1, seed=2)
    for ci in c:
        gen.step(ci)
    gen.set_prompt(p2)
    kept = sorted({h[3]: h for h in list(gen.sinks_kept) + list(gen.history)}.values(), key=lambda h: h[3])
    ref = KVCache.for_model(m, 1)
    with torch.no_grad():
        for x_ctx, cond, action, _n in kept:
            m.forward_frame(x_ctx, cond, gen.t_ctx, gen.zero_d, action, p2[None], ref)
            ref.advance()
    torch.testing.assert_close(gen.cache.k, ref.k)
    torch.testing.assert_close(gen.cache.valid, ref.valid)
    assert [h[3] for h in kept] == [0, 3, 4]  # the sink and the window (W=2)
    # and it really changed: the cache under p1 differs
    gen1 = Generator(m, p1, seed=2)
    for ci in c:
        gen1.step(ci)
    assert not torch.allclose(gen1.cache.k, gen.cache.k)


def test_step_reads_nothing_back_to_the_host(monkeypatch):
    """Host syncs (.item(), .tolist(), bool of a tensor) break CUDA graphs; step() must not use them."""
    m, c = model(), conds(5)
    gen = Generator(m, torch.ones(384), seed=0)

    def forbidden(*a, **k):
        raise AssertionError("host read inside Generator.step")

    monkeypatch.setattr(torch.Tensor, "item", forbidden)
    monkeypatch.setattr(torch.Tensor, "tolist", forbidden)
    monkeypatch.setattr(torch.Tensor, "__bool__", forbidden)
    for ci in c:
        gen.step(ci)


def test_every_forward_goes_through_the_step_from_the_step_builder():
    """2 Euler steps + 1 cache write per frame: 3 calls a frame through the one step the generator was
    given, and the frames equal those of the model's own forward (the eager step is that forward)."""
    from kernels.step_builder import fast_step

    m = model()
    name, step = fast_step(m, "eager")
    assert name == "eager" and step == m.forward_frame
    calls = []

    def counting(*args):
        calls.append(args[2].tolist())  # the noise level of this forward
        return step(*args)

    prompt = torch.randn(384)
    ours = Generator(m, prompt, seed=5, cuda_graph=False, step=counting)
    plain = Generator(m, prompt, seed=5, cuda_graph=False)
    c = conds(3)
    for i in range(3):
        torch.testing.assert_close(ours.step(c[i]), plain.step(c[i]), atol=0, rtol=0)
    assert len(calls) == 9
    assert calls[:2] == [[1.0], [0.5]]  # the levels of schedule(2)
    assert calls[2] == [pytest.approx(CFG.context_noise)]  # then the cache write at the context level
