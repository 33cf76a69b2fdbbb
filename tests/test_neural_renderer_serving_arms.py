"""Serving arms of the hourglass generator (neural_renderer.serving.arms): the fused arm runs whole streams
(its own key layout in the cache, frame after frame) as the plain path does; the self-check refuses an arm
that computes something else; CPU serves the CPU arm (the plain path when asked), and the backend names the
arm it chose."""
import _kernels_helpers  # noqa: F401  (sets TRITON_INTERPRET before triton is imported)

import pytest  # noqa: E402
import torch  # noqa: E402

import kernels.fused_trunk  # noqa: E402
from neural_renderer.model.checkpoint import save_checkpoint  # noqa: E402
from neural_renderer.serving import arms  # noqa: E402
from neural_renderer.serving.renderer import GeneratorRenderer  # noqa: E402
from neural_renderer.serving.stream import StreamingSampler  # noqa: E402
from bridge.backends import BackendUnavailable  # noqa: E402
from _models import randomised  # noqa: E402
from neural_renderer.model.inputs import COND_CHANNELS  # noqa: E402


def frames(n, H, W, seed=3):
    """(cond, action, motion, disocclusion) per frame: the engine's inputs with motion, so history is used."""
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(1, COND_CHANNELS, H, W, generator=g).clamp(0, 2), torch.randn(1, 9, generator=g),
             torch.randn(1, 2, H, W, generator=g), (torch.rand(1, 1, H, W, generator=g) > 0.9).float())
            for _ in range(n)]


@pytest.mark.parametrize("arm", ["fused", "megakernel"])
@pytest.mark.parametrize("H,W", [(32, 32), (20, 36)])
def test_fused_arm_streams_like_the_plain_path(H, W, arm):
    """Frames 0..3 fill the cache (sink, window) through the fused trunk's key layout and read it back; the
    megakernel arm keeps the same layout."""
    m = randomised("hg-micro", seed=1)
    p = torch.randn(384, generator=torch.Generator().manual_seed(0))
    seq = frames(4, H, W)
    s_plain = StreamingSampler(m, p, seed=2)
    s_fused = StreamingSampler(m, p, seed=2, forward=arms.ArmStep(m, arms.ARMS[arm]), cuda_graph=False)
    plain = [s_plain.step(*f) for f in seq]
    fused = [s_fused.step(*f) for f in seq]
    for k, (a, b) in enumerate(zip(fused, plain)):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4, msg=lambda e: f"frame {k}: {e}")
    assert (plain[3] - plain[0]).abs().max() > 1e-3  # context and history change later frames: not vacuous


def test_the_check_refuses_an_arm_that_computes_something_else(monkeypatch):
    m = randomised("hg-micro", seed=1)
    assert arms.check(m, arms.ARMS["fused"], (16, 24))[0]
    monkeypatch.setattr(kernels.fused_trunk, "run_blocks", lambda x, *a, **k: x)  # a trunk that skips its blocks
    ok, detail = arms.check(m, arms.ARMS["fused"], (16, 24))
    assert not ok and "> bound" in detail


def test_cpu_serves_the_cpu_arm_and_the_backend_names_it(tmp_path):
    m = randomised("hg-micro")
    ck = save_checkpoint(m.state_dict(), m.cfg, tmp_path / "hg", dtype=torch.float32)
    assert arms.select(m, 2, (32, 32), "eager") == ("eager", {"eager": {"ok": True, "check": "the plain path"}})
    d = GeneratorRenderer(str(ck), device="cpu").describe()
    assert d["kernels"] == "cpu" and d["arms"]["cpu"]["ok"]
    assert GeneratorRenderer(str(ck), device="cpu", kernels="eager").describe()["kernels"] == "eager"
    with pytest.raises(BackendUnavailable, match="CUDA graph needs a CUDA device"):
        GeneratorRenderer(str(ck), device="cpu", kernels="fused")
    with pytest.raises(BackendUnavailable, match="unknown serving arm"):
        GeneratorRenderer(str(ck), device="cpu", kernels="warp-drive")


def test_the_megakernel_arm_is_a_gpu_candidate_and_a_timed_out_wait_fails_its_check(monkeypatch):
    """On CUDA with Triton the megakernel arm is timed with the others (the fastest that passes serves); its
    check fails when a wait timed out, whatever the output."""
    import kernels.megakernel_trunk

    assert "megakernel" in arms.candidates(torch.device("cuda")) and "fused" in arms.candidates(torch.device("cuda"))
    m = randomised("hg-micro", seed=1)
    ok, detail = arms.check(m, arms.ARMS["megakernel"], (16, 24))
    assert ok, detail
    monkeypatch.setattr(kernels.megakernel_trunk.MegakernelTrunk, "spin_flag", lambda self: 1)
    ok, detail = arms.check(m, arms.ARMS["megakernel"], (16, 24))
    assert not ok and "spin flag 1" in detail
