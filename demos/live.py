"""The demo's frame loop, shared by the window and the headless run: the player moves, the engine pass
renders straight into the bridge's shared-memory slot, the daemon renders the neural frame, and (when
asked) the reference look of the current style is rendered beside it."""
from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass

import numpy as np

from bridge.channels import ACTION_DIM

# What the demo declares to the daemon: every channel, in compact dtypes.
DEMO_CHANNELS: dict[str, str] = {
    "color": "float16", "depth": "float32", "normals": "float16", "motion": "float16",
    "albedo": "float16", "material_id": "uint8", "disocclusion": "uint8",
}


@dataclass
class LiveFrame:
    index: int
    engine_color: np.ndarray  # (H, W, 3) linear, copy
    neural: np.ndarray  # (H, W, 3) linear float32 (copied out of the output slot)
    reference: np.ndarray | None  # (H, W, 3) linear, when asked
    action: np.ndarray
    reset: bool
    roundtrip_ms: float  # NaN when the neural image is one already shown (pipelined, nothing new arrived)
    lag: int = 0  # frames between this game frame and the one the neural image was rendered from


@dataclass
class _Held:
    """A result whose image was copied out of the shared-memory output slot."""
    seq: int
    image: np.ndarray
    timings: dict


class LatencyStats:
    def __init__(self, window: int = 300):
        self.roundtrip = deque(maxlen=window)
        self.frame_times = deque(maxlen=window)

    def add(self, roundtrip_ms: float | None, frame_s: float) -> None:
        """roundtrip_ms is None for a frame that showed an older neural result (pipelined)."""
        if roundtrip_ms is not None:
            self.roundtrip.append(roundtrip_ms)
        self.frame_times.append(frame_s)

    def summary(self) -> dict:
        rt = np.asarray(self.roundtrip, np.float64)
        ft = np.asarray(self.frame_times, np.float64)
        return {
            "fps": float(1.0 / ft.mean()) if len(ft) else 0.0,
            "roundtrip_p50_ms": float(np.percentile(rt, 50)) if len(rt) else 0.0,
            "roundtrip_p99_ms": float(np.percentile(rt, 99)) if len(rt) else 0.0,
        }


class LiveScene:
    def __init__(self, ctx, client, seed: int, width: int, height: int, style: str, steps: int | None = None,
                 ssaa: int = 2, pipelined: bool = False, record: str | None = None):
        """record: a look name: the daemon records the session, with the reference look of the current
        style as the game's own finished frame (`final`, the training target)."""
        from bridge.client import BridgeError
        from demos.engine_pass import EngineRenderer
        from demos.player import Player, ScriptedController
        from demos.styles import prompt_of
        from demos.world import World

        self.ctx, self.client = ctx, client
        self.width, self.height, self.seed, self.ssaa = int(width), int(height), int(seed), ssaa
        self.world = World(self.seed)
        self.spawner = ScriptedController("still", self.seed)
        self.player = Player(self.world, *self.spawner.spawn(self.world))
        self.engine = EngineRenderer(ctx, self.world, self.width, self.height)
        self.ref_renderer = None  # created on first use: one renderer serves every style
        self.style, self.prompt = style, prompt_of(style)
        self.recording = record is not None
        channels = {**DEMO_CHANNELS, "final": "float16"} if self.recording else DEMO_CHANNELS
        self._prompt_to_send: str | None = None
        self._warm_up()
        try:  # half floats keep the dark styles free of banding
            self.session = client.open_session(self.width, self.height, channels, output_format="rgb16f",
                                               prompt=self.prompt, steps=steps, record=record)
        except BridgeError:  # a backend that only writes 8-bit output
            self.session = client.open_session(self.width, self.height, channels, output_format="rgb8",
                                               prompt=self.prompt, steps=steps, record=record)
        self.renderer_info = self.session.info.get("renderer", {})
        self.stats = LatencyStats()
        self.index, self.t = 0, 0.0
        self.prev_cam = self.prev_models = None
        self._reset_next = True
        self._last = time.perf_counter()
        self.pipelined = pipelined
        self._pending: dict[int, tuple] = {}  # seq -> (engine colour, reference) waiting for its neural frame
        self._shown = None  # (result, (engine colour, reference)) last shown, pipelined mode

    def _warm_up(self) -> None:
        """Draw the engine pass and the reference look once before the session opens: the first draw
        compiles every shader, which takes seconds on a loaded software GL (llvmpipe), and an open session
        that sends nothing for the daemon's idle timeout is closed."""
        self.cam = self.player.camera(self.width / self.height)
        self.t, self.models = 0.0, self.world.models(0.0)
        self.engine.render(self.cam, self.cam, self.models, self.models, True)
        self.engine.read()
        self.reference(self.style)

    def set_style(self, style: str) -> None:
        from demos.styles import prompt_of

        self.style = style
        self.set_prompt(prompt_of(style))

    def set_prompt(self, prompt: str) -> None:
        self.prompt = prompt
        self._prompt_to_send = prompt

    def reset(self, teleport: bool = True) -> None:
        if teleport:
            self.player.teleport(*self.spawner.spawn(self.world))
        self._reset_next = True

    def reference(self, style: str) -> np.ndarray:
        from demos.reference import ReferenceRenderer

        if self.ref_renderer is None:
            self.ref_renderer = ReferenceRenderer(self.ctx, self.world, self.width, self.height, style, ssaa=self.ssaa)
        elif self.ref_renderer.style != style:
            self.ref_renderer.set_style(style)
        self.ref_renderer.render(self.cam, self.models, self.t)
        return self.ref_renderer.read()

    def step(self, action: np.ndarray, dt: float, with_reference: bool = False) -> LiveFrame:
        """One game frame. Blocking (default): waits for this frame's neural result. Pipelined
        (`self.pipelined`): submits this frame and shows the newest result that has arrived, so the
        game keeps its own frame rate while the daemon renders (the neural frame lags by `lag` frames)."""
        from demos.camera import frame_constants

        action = np.asarray(action, np.float32).reshape(ACTION_DIM)
        self.player.step(action, dt)
        self.t += dt
        reset = self._reset_next
        self._reset_next = False
        cam = self.player.camera(self.width / self.height)
        models = self.world.models(self.t)
        prev_cam = cam if reset or self.prev_cam is None else self.prev_cam
        prev_models = models if reset or self.prev_models is None else self.prev_models
        self.engine.render(cam, prev_cam, models, prev_models, reset)
        slot = self.session.acquire_slot()
        views = self.session.input_views(slot)
        self.engine.read(out={k: v for k, v in views.items() if k != "final"})  # straight into the slot
        engine_color = views["color"].astype(np.float32)
        self.cam, self.models = cam, models
        self.prev_cam, self.prev_models = cam, models
        ref = self.reference(self.style) if with_reference or self.recording else None
        if self.recording:
            views["final"][...] = ref  # the game's own finished frame: the look being recorded
        prompt, self._prompt_to_send = self._prompt_to_send, None
        kwargs = dict(constants=frame_constants(cam, prev_cam, dt), action=action, prompt=prompt, reset=reset, slot=slot)
        fresh = True
        if not self.pipelined:
            result = self.session.render(**kwargs)
            shown = (engine_color, ref)
        else:
            seq = self.session.submit(**kwargs)
            self._pending[seq] = (engine_color, ref)
            result = self._newest_result(wait=self._shown is None)
            if result is None:  # nothing new yet: keep showing the last neural frame
                result, shown = self._shown
                fresh = False
            else:
                shown = self._pending.pop(result.seq, (engine_color, ref))
                for old in [q for q in self._pending if q < result.seq]:
                    del self._pending[old]  # answered out of order or dropped by the daemon
        neural = result.image[..., :3].astype(np.float32)
        if result.image.dtype == np.uint8:
            neural /= 255.0
        if self.pipelined:
            result = _Held(result.seq, neural, result.timings)
            self._shown = (result, shown)
        now = time.perf_counter()
        rt = float(result.timings.get("roundtrip_ms", 0.0))
        self.stats.add(rt if fresh else None, now - self._last)
        self._last = now
        frame = LiveFrame(self.index, shown[0], neural, shown[1], action, reset, rt if fresh else float("nan"),
                          lag=self.index - result.seq)
        self.index += 1
        return frame

    def _newest_result(self, wait: bool):
        """The newest result that has arrived (waiting for one if `wait`), or None."""
        newest = None
        timeout = None if wait else 0.0
        while (r := self.session.poll(timeout=timeout)) is not None:
            if newest is None or r.seq > newest.seq:
                # copy now: the output slot is reused when its input slot is submitted again
                newest = _Held(r.seq, r.image.copy(), r.timings)
            timeout = 0.0  # a non-blocking look at the socket
        return newest

    def hud_lines(self) -> list[str]:
        s = self.stats.summary()
        info = self.renderer_info
        return [
            f"{s['fps']:.1f} frames/s   round trip p50 {s['roundtrip_p50_ms']:.1f} ms  p99 {s['roundtrip_p99_ms']:.1f} ms",
            f"backend {info.get('backend', '?')}  model {info.get('model', '-')}  steps {info.get('steps', '-')}"
            + (f"  step {info['kernels']}" if info.get("kernels") else "")
            + (f"  pipelined (lag {self.index - 1 - self._shown[0].seq if self._shown else 0})" if self.pipelined else ""),
            f"style {self.style}: {self.prompt[:60]}",
        ]

    def close(self) -> None:
        try:
            self.session.close()
        finally:
            self.engine.release()
            if self.ref_renderer is not None:
                self.ref_renderer.release()
