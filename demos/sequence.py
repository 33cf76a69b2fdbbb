"""Headless frame sequences: a world from a seed, a scripted player, the engine pass and the reference
look in the asked styles, frame after frame. What the dataset writer, the evaluation and on-the-fly
training data consume."""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from bridge.channels import ACTION_DIM


@dataclass
class WorldFrame:
    index: int
    engine: dict[str, np.ndarray]  # bridge.channels.CHANNELS -> (H, W, C); float32, material_id uint8, disocclusion uint8
    reference: dict[str, np.ndarray]  # style -> (H, W, 3) float32 linear RGB in [0, 1]
    action: np.ndarray  # (ACTION_DIM,) float32, bridge.channels.ACTION_LAYOUT
    constants: dict[str, np.ndarray]  # bridge.channels.CONSTANTS_LAYOUT -> float32 (n,)
    reset: bool  # True on frame 0 and on every cut


class SequenceRenderer:
    """The stateful core of `render_sequence`: step() advances one frame. Owns its GL objects; `release()` frees
    them (and the context, when it created it)."""

    def __init__(self, seed: int, width: int, height: int, styles: Sequence[str] = (), script: str = "mixed",
                 fps: float = 30.0, ctx=None, ssaa: int = 2, aspect: float | None = None):
        from demos.engine_pass import EngineRenderer
        from demos.gl import create_context
        from demos.player import Player, ScriptedController
        from demos.reference import ReferenceRenderer
        from demos.world import World

        self.own_ctx = ctx is None
        self.ctx = create_context(headless=True) if ctx is None else ctx
        self.seed, self.width, self.height, self.fps = int(seed), int(width), int(height), float(fps)
        self.aspect = float(aspect) if aspect else self.width / self.height
        self.world = World(self.seed)
        self.controller = ScriptedController(script, self.seed, fps=self.fps)
        self.player = Player(self.world, *self.controller.spawn(self.world))
        self.engine = EngineRenderer(self.ctx, self.world, self.width, self.height)
        self.styles = tuple(styles)
        # one renderer for every style: the style-independent passes run once per frame
        self.reference = (ReferenceRenderer(self.ctx, self.world, self.width, self.height, self.styles[0], ssaa=ssaa)
                          if self.styles else None)
        self.index = 0
        self.prev_cam = None
        self.prev_models = None

    def step(self, engine_out: dict[str, np.ndarray] | None = None) -> WorldFrame:
        from demos.camera import frame_constants

        i, dt = self.index, 1.0 / self.fps
        action, cut = self.controller(i, self.player)
        if cut:
            self.player.teleport(*self.controller.spawn(self.world))
            action = np.zeros(ACTION_DIM, np.float32)  # a cut is a teleport, not something the player did
        else:
            self.player.step(action, dt)
        reset = i == 0 or cut
        t = i * dt
        cam = self.player.camera(self.aspect)
        models = self.world.models(t)
        prev_cam = cam if reset else self.prev_cam
        prev_models = models if reset else self.prev_models
        self.engine.render(cam, prev_cam, models, prev_models, reset)
        engine = self.engine.read(out=engine_out)
        reference = self.reference.render_styles(cam, models, t, self.styles) if self.reference else {}
        constants = frame_constants(cam, prev_cam, dt)
        self.prev_cam, self.prev_models = cam, models
        self.index += 1
        return WorldFrame(i, engine, reference, action.astype(np.float32), constants, bool(reset))

    def release(self) -> None:
        self.engine.release()
        if self.reference is not None:
            self.reference.release()
        if self.own_ctx:
            self.ctx.release()


def render_sequence(seed: int, frames: int, width: int, height: int, styles: Sequence[str] = (),
                    script: str = "mixed", fps: float = 30.0, ctx=None, ssaa: int = 2) -> Iterator[WorldFrame]:
    """Yields `frames` Frames of scene `seed`. Deterministic: the same arguments give the same frames."""
    seq = SequenceRenderer(seed, width, height, styles, script, fps, ctx, ssaa=ssaa)
    try:
        for _ in range(frames):
            yield seq.step()
    finally:
        seq.release()
