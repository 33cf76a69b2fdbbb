"""The one optimisation loop: learning-rate schedule, EMA with and without warm-up, logging and the
time budget, on a one-weight model whose every step can be worked out by hand."""
from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
import torch

from neural_renderer.training.loop import LoopState, ema_decay, lr_at, run_loop


@dataclass
class Cfg:
    steps: int = 1
    batch: int = 1
    lr: float = 0.1
    warmup: int = 1
    grad_clip: float = 1.0
    refresh_every: int = 0
    refresh_clips: int = 1
    crop: int = 0
    log_every: int = 1
    time_budget_s: float = 0.0


class NoPool:
    def sample(self, batch, g, crop=0):
        return None


def one_weight(w: float = 1.0) -> torch.nn.Module:
    m = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        m.weight.fill_(w)
    return m


def test_lr_schedule_by_hand():
    cfg = Cfg(steps=14, lr=1.0, warmup=4)
    assert [lr_at(s, cfg) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]  # linear warm-up
    assert lr_at(4, cfg) == pytest.approx(1.0)  # cosine starts at the peak
    assert lr_at(9, cfg) == pytest.approx(0.55)  # halfway: 0.1 + 0.9 * 0.5 * (1 + cos(pi / 2))
    assert lr_at(14, cfg) == pytest.approx(0.1)  # and ends at a tenth
    assert lr_at(100, cfg) == pytest.approx(0.1)
    # under a time budget the cosine follows the share of time spent when that is ahead of the steps
    assert lr_at(5, cfg, time_frac=0.5) == pytest.approx(0.55)
    assert lr_at(5, cfg, time_frac=1.0) == pytest.approx(0.1)
    assert lr_at(9, cfg, time_frac=0.1) == pytest.approx(0.55)  # the steps are further along


def test_ema_warm_up_is_the_callers_choice():
    assert ema_decay(0, 0.999, warmup=True) == pytest.approx(0.1)  # (1 + 0) / (10 + 0)
    assert ema_decay(90, 0.999, warmup=True) == pytest.approx(0.91)  # 91 / 100
    assert ema_decay(10 ** 6, 0.999, warmup=True) == 0.999  # capped at the setting
    assert ema_decay(0, 0.99, warmup=False) == 0.99  # a student starting from its teacher: constant


@pytest.mark.parametrize("warmup,expected", [(True, 0.1 * 1.0 + 0.9 * 0.9), (False, 0.99 * 1.0 + 0.01 * 0.9)])
def test_one_step_and_its_ema_by_hand(warmup, expected):
    # loss = w^2 at w = 1: gradient 2, clipped to norm 1; Adam's first step moves by lr * sign = 0.1,
    # so w = 0.9; the EMA starts at 1 and lerps toward 0.9 by (1 - decay).
    model, ema = one_weight(1.0), one_weight(1.0).requires_grad_(False)
    st = run_loop(model, lambda _: ((model.weight ** 2).sum(), {"twice": torch.tensor(2.0)}), NoPool(), Cfg(), None,
                  "t", ema_model=ema, ema=0.99, ema_warmup=warmup, progress=False)
    assert model.weight.item() == pytest.approx(0.9, abs=1e-6)
    assert ema.weight.item() == pytest.approx(expected, abs=1e-6)
    assert st.step == 1
    assert st.history == {"loss": [(1, pytest.approx(1.0))], "twice": [(1, pytest.approx(2.0))]}


def test_logs_the_mean_of_each_interval_and_resumes_from_a_state():
    model = one_weight(1.0)
    losses = iter([4.0, 2.0, 6.0, 1.0, 3.0])

    def loss_fn(_):
        return model.weight.sum() * 0 + next(losses), {}

    st = run_loop(model, loss_fn, NoPool(), Cfg(steps=3, log_every=2), None, "t", progress=False)
    assert st.history["loss"] == [(2, 3.0), (3, 6.0)]  # mean of 4, 2; then the last, partial interval
    st = run_loop(model, loss_fn, NoPool(), Cfg(steps=5, log_every=2), None, "t", progress=False,
                  state=LoopState(step=st.step, history=st.history, elapsed_s=st.elapsed_s))
    assert st.step == 5 and st.history["loss"] == [(2, 3.0), (3, 6.0), (4, 1.0), (5, 3.0)]  # continues, one log each


def test_time_budget_stops_before_the_first_step_when_spent():
    model = one_weight(1.0)
    st = run_loop(model, lambda _: ((model.weight ** 2).sum(), {}), NoPool(), Cfg(steps=10, time_budget_s=1.0), None,
                  "t", progress=False, state=LoopState(elapsed_s=5.0))
    assert st.step == 0 and model.weight.item() == 1.0 and math.isclose(st.elapsed_s, 5.0, abs_tol=0.5)
