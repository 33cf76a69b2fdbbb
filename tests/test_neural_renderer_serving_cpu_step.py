"""The CPU arm (neural_renderer.serving.cpu_step) computes what the plain path computes: whole streams (cache
filling, steady state, history, padding to the trunk's factor) on hg-micro and the shipped tiny, frame by
frame within float rounding; a frame's shared part is recomputed when its inputs change in place; the
backend serves it on CPU and says so."""
import copy

import numpy as np
import pytest
import torch

from bridge.channels import ACTION_DIM
from neural_renderer.model.checkpoint import load_model
from neural_renderer.model.inputs import COND_CHANNELS
from neural_renderer.serving import arms
from neural_renderer.serving.cpu_step import CPUStep
from neural_renderer.serving.stream import StreamingSampler
from _models import randomised


def frames(n, H, W, seed=3):
    """(cond, action, motion, disocclusion) per frame, with motion so the history is used."""
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(1, COND_CHANNELS, H, W, generator=g).clamp(0, 2), torch.randn(1, ACTION_DIM, generator=g),
             torch.randn(1, 2, H, W, generator=g), (torch.rand(1, 1, H, W, generator=g) > 0.9).float())
            for _ in range(n)]


def stream_both(model, seq, steps=2):
    p = torch.randn(384, generator=torch.Generator().manual_seed(0))
    plain = StreamingSampler(model, p, steps=steps, seed=2)
    fast_model = copy.deepcopy(model)
    fast = StreamingSampler(fast_model, p, steps=steps, seed=2, forward=CPUStep(fast_model))
    return [plain.step(*f) for f in seq], [fast.step(*f) for f in seq]


@pytest.mark.parametrize("H,W", [(32, 32), (20, 36)])
def test_cpu_arm_streams_like_the_plain_path_hg_micro(H, W):
    """Frames 0..4: the cache fills (sink, window; masked slots left out), then the steady state."""
    plain, fast = stream_both(randomised("hg-micro", seed=1), frames(5, H, W))
    for k, (a, b) in enumerate(zip(fast, plain)):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5, msg=lambda e: f"frame {k}: {e}")
    assert (plain[4] - plain[0]).abs().max() > 1e-3  # context and history change later frames: not vacuous


def test_cpu_arm_streams_like_the_plain_path_shipped_tiny_128():
    m = load_model("tiny", device="cpu", dtype=torch.float32)
    plain, fast = stream_both(m, frames(5, 128, 128))
    for k, (a, b) in enumerate(zip(fast, plain)):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4, msg=lambda e: f"frame {k}: {e}")
    assert (plain[4] - plain[0]).abs().max() > 1e-2


def test_the_shared_part_is_recomputed_when_an_input_changes_in_place():
    m = randomised("hg-micro", seed=1)
    step = CPUStep(copy.deepcopy(m))
    (cond, action, _, _), = frames(1, 16, 24)
    x, hist = torch.randn(1, 3, 16, 24), torch.zeros(1, 5, 16, 24)
    t, d, h = torch.ones(1), torch.zeros(1), torch.zeros(1)
    prompt = torch.randn(1, 384)
    from neural_renderer.model.kv_cache import KVCache

    def ref_and_fast():
        ref = m.forward_frame(x, cond, hist, t, d, h, action, prompt, KVCache(2, 1, 1, 6, 1, 1))
        return ref, step(x, cond, hist, t, d, h, action, prompt, KVCache(2, 1, 1, 6, 1, 1))

    with torch.no_grad():
        before = ref_and_fast()
        cond.mul_(-1.0)  # the same tensor, new values: the stem's conditioning part must follow
        after = ref_and_fast()
    torch.testing.assert_close(before[1], before[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(after[1], after[0], atol=1e-5, rtol=1e-5)
    assert (after[0] - before[0]).abs().max() > 1e-3


def test_cpu_serves_the_cpu_arm_after_its_check_and_falls_back_to_eager(monkeypatch):
    m = randomised("hg-micro")
    name, report = arms.select(m, 2, (32, 32))
    assert name == "cpu" and report["cpu"]["ok"] and "<= bound" in report["cpu"]["check"]
    monkeypatch.setattr(CPUStep, "__call__", lambda self, x, *a: x)  # an arm that computes something else
    name, report = arms.select(m, 2, (32, 32))
    assert name == "eager" and not report["cpu"]["ok"]
