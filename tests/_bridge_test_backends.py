"""Backends the daemon subprocess of a test loads with `--backend tests._bridge_test_backends:KIND,k=v`
(PYTHONPATH = the repo root): slow ones, and one with a context like a generator's.

  slow,init=S,open=S,first=S,step=S
                               the renderer takes `init` s to load (before the daemon serves: a model
                               load), open_session sleeps `open` s, the first frame `first` s, every frame
                               `step` s per sampling step (spec.steps, default 1); output as passthrough
  context                      output = running mean of every colour so far (a stand-in for a model's
                               context: one NaN that got in would stay in every later frame)
  blot,every=N                 passthrough, but every Nth frame of a session has its bottom half black
                               (wrong pixels on purpose: what the soak must report)
"""
from __future__ import annotations

import time

import numpy as np

from bridge.backends import FrameInputs, Renderer, RendererSession, SessionSpec
from bridge.backends.passthrough import PassthroughRenderer, to_output


class _Slow(RendererSession):
    def __init__(self, inner, steps, first, step):
        self.inner, self.steps, self.first, self.step, self.n = inner, steps, first, step, 0

    def render(self, frame: FrameInputs, out: np.ndarray) -> None:
        time.sleep((self.first if self.n == 0 else 0.0) + self.step * self.steps)
        self.n += 1
        self.inner.render(frame, out)


class _Context(RendererSession):
    def __init__(self):
        self.mean, self.n = None, 0

    def render(self, frame: FrameInputs, out: np.ndarray) -> None:
        c = frame.pixels["color"].astype(np.float32)
        self.n += 1
        self.mean = c if self.mean is None else self.mean + (c - self.mean) / self.n
        to_output(self.mean, out)


class _Blot(RendererSession):
    def __init__(self, inner, every: int):
        self.inner, self.every, self.n = inner, every, 0

    def render(self, frame: FrameInputs, out: np.ndarray) -> None:
        self.inner.render(frame, out)
        self.n += 1
        if self.n % self.every == 0:
            out[out.shape[0] // 2:] = 0


class TestRenderer(Renderer):
    def __init__(self, kind: str, params: dict, steps: int | None):
        self.kind, self.p, self.steps = kind, params, steps
        self.inner = PassthroughRenderer()

    def describe(self) -> dict:
        return {"backend": f"test-{self.kind}", "model": None, "steps": self.steps or 1, "device": "cpu"}

    def open_session(self, spec: SessionSpec) -> RendererSession:
        if self.kind == "context":
            return _Context()
        if self.kind == "blot":
            return _Blot(self.inner.open_session(spec), int(self.p.get("every", 10)))
        time.sleep(self.p.get("open", 0.0))
        return _Slow(self.inner.open_session(spec), spec.steps or self.steps or 1, self.p.get("first", 0.0),
                     self.p.get("step", 0.0))


def create_renderer(arg: str | None, steps: int | None = None, **_options) -> Renderer:
    kind, *pairs = (arg or "slow").split(",")
    params = {k: float(v) for k, v in (p.split("=") for p in pairs)}
    time.sleep(params.get("init", 0.0))
    return TestRenderer(kind, params, steps)
