"""A synthetic stand-in for the world renderer, written into the eval cache exactly where
neural_renderer.eval.cache looks, plus test renderers (noise, an oracle that returns the reference).

The synthetic scene is a smooth texture panning by whole pixels, so the engine's motion vectors are
exact: motion = (+dx, +dy) everywhere, disocclusion = 1 on the band that scrolled in. A reset
teleports the view far away. Each style is a fixed colour transform of the texture; the engine
colour is a grey, flat-lit version of it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bridge.backends import Renderer, RendererSession
from bridge.channels import ACTION_DIM, CHANNELS, CONSTANTS_LAYOUT
from bridge.styles import STYLES
from neural_renderer.data.writer import FrameSink, SequencePlan, allocate, commit, plan_index

STYLE_TINT = {"sunny": (1.0, 0.9, 0.7), "night": (0.25, 0.3, 0.6), "sunset": (1.0, 0.6, 0.4),
              "winter": (0.9, 0.95, 1.0), "foggy": (0.7, 0.7, 0.7), "cartoon": (1.0, 1.0, 0.3)}
PAN = (2, 1)  # pixels per frame the view moves right/down


@dataclass
class SynthFrame:
    index: int
    engine: dict
    reference: dict
    action: np.ndarray
    constants: dict
    reset: bool


def _texture(x, y):
    return 0.5 + 0.25 * np.sin(x * 0.21) * np.cos(y * 0.17) + 0.2 * np.sin((x + 2 * y) * 0.05)


def synth_sequence(seed: int, frames: int, width: int, height: int, styles, reset_at=()):
    ox, oy = float(seed % 97) * 7, 0.0
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    for t in range(frames):
        reset = t == 0 or t in reset_at
        if reset and t:
            ox += 500.0
        elif t:
            ox, oy = ox + PAN[0], oy + PAN[1]
        tex = _texture(xs + ox, ys + oy)[..., None]
        motion = np.zeros((height, width, 2), np.float32)
        disocc = np.zeros((height, width, 1), np.uint8)
        if not reset:
            # content now at x was at x + dx last frame: prev_xy = (x + dx, y + dy)
            motion[..., 0], motion[..., 1] = PAN
            disocc[:, width - PAN[0]:] = 1
            disocc[height - PAN[1]:, :] = 1
        else:
            disocc[:] = 1
        engine = {
            "color": np.repeat(0.6 * tex + 0.1, 3, -1).astype(np.float32),
            "depth": np.full((height, width, 1), 10.0, np.float32),
            "normals": np.broadcast_to(np.float32([0, 0, 1]), (height, width, 3)).copy(),
            "motion": motion,
            "albedo": np.repeat(tex, 3, -1).astype(np.float32),
            "material_id": np.ones((height, width, 1), np.uint16),
            "disocclusion": disocc,
        }
        assert set(engine) == set(CHANNELS)
        reference = {s: np.clip(tex * np.float64(STYLE_TINT[s]), 0, 1).astype(np.float32) for s in styles}
        constants = {k: np.zeros(n, np.float32) for k, n in CONSTANTS_LAYOUT.items()}
        yield SynthFrame(t, engine, reference, np.zeros(ACTION_DIM, np.float32), constants, reset)


def write_suite_cache(suite, cache_dir, reset_at=(10,)):
    """Fill cache_dir with synthetic frames for every sequence of `suite`, keyed as the runner expects."""
    for seq in suite.sequences:
        root = cache_dir / seq.cache_key(suite.width, suite.height)
        index = plan_index([SequencePlan(seq.seed, seq.frames, seq.script)], width=suite.width,
                           height=suite.height, styles={s: STYLES[s] for s in seq.styles}, split="eval",
                           frames_per_shard=seq.frames)
        allocate(root, index)
        sink = FrameSink(root, index)
        for t, f in enumerate(synth_sequence(seq.seed, seq.frames, suite.width, suite.height, seq.styles, reset_at)):
            sink.write(0, t, f)
        sink.close()
        commit(root, index)


class _NoiseSession(RendererSession):
    def __init__(self, spec, seed):
        self.rng = np.random.default_rng(seed)

    def render(self, frame, out):
        out[...] = self.rng.random(out.shape, dtype=np.float32)


class NoiseRenderer(Renderer):
    name = "noise"

    def describe(self):
        return {"backend": "noise (test)", "model": None, "steps": 0, "device": "cpu"}

    def open_session(self, spec):
        return _NoiseSession(spec, 0)


class _OracleSession(RendererSession):
    def __init__(self, spec, clip):
        self.clip, self.prompt = clip, spec.prompt

    def render(self, frame, out):
        if frame.prompt:
            self.prompt = frame.prompt
        style = next(s for s, p in STYLES.items() if p == self.prompt)
        out[..., :3] = self.clip.reference[style][frame.seq]


class OracleRenderer(Renderer):
    """Returns the reference look itself (it peeks at the cached dataset), through the full hosting path."""
    name = "oracle"

    def __init__(self, clips):
        self.clips, self.opened = list(clips), 0

    def describe(self):
        return {"backend": "oracle (test)", "model": None, "steps": 0, "device": "cpu"}

    def open_session(self, spec):
        s = _OracleSession(spec, self.clips[self.opened])
        self.opened += 1
        return s


class _LaggingSession(_OracleSession):
    def __init__(self, spec, clip, lag):
        super().__init__(spec, clip)
        self.lag, self.shown, self.since_switch, self.since_reset = lag, spec.prompt, lag, lag

    def render(self, frame, out):
        if frame.prompt and frame.prompt != self.prompt:
            self.prompt, self.since_switch = frame.prompt, 0
        if frame.reset and frame.seq > 0:
            self.since_reset = 0
        if self.since_switch >= self.lag:
            self.shown = self.prompt
        style = next(s for s, p in STYLES.items() if p == self.shown)
        img = self.clip.reference[style][frame.seq]
        out[..., :3] = 0.0 if self.since_reset < self.lag else img
        self.since_switch += 1
        self.since_reset += 1


class LaggingOracle(OracleRenderer):
    """The oracle, but it keeps the old look for `lag` frames after a prompt switch and outputs black
    for `lag` frames after a reset: responsiveness must come out as exactly `lag` frames."""
    name = "lagging-oracle"

    def __init__(self, clips, lag):
        super().__init__(clips)
        self.lag = lag

    def open_session(self, spec):
        s = _LaggingSession(spec, self.clips[self.opened], self.lag)
        self.opened += 1
        return s


class _NaNSession(RendererSession):
    def render(self, frame, out):
        out[...] = np.nan


class NaNRenderer(Renderer):
    """Outputs NaN everywhere: must be counted and scored as the black frame a display would show."""
    name = "nan"

    def describe(self):
        return {"backend": "nan (test)"}

    def open_session(self, spec):
        return _NaNSession()
