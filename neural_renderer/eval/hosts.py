"""Where the renderer under test runs: in this process (bridge.backends) or behind a daemon (bridge.client).

Both give the runner the same thing: a run per sequence whose `render(...)` returns the frame as
float32 RGB in [0, 1], the wall-clock seconds the call took as the caller of the bridge sees it, and
the daemon's own timings (queue_ms, render_ms, daemon_ms) when there is a daemon, else None.
"""
from __future__ import annotations

import time

import numpy as np

from bridge.channels import ACTION_DIM, OUTPUT_FORMATS


def _to_rgb(out: np.ndarray) -> np.ndarray:
    rgb = np.asarray(out)[..., :3]
    if rgb.dtype == np.uint8:
        return rgb.astype(np.float32) / 255.0
    return rgb.astype(np.float32)


class InProcessRun:
    def __init__(self, renderer, width: int, height: int, channels: dict[str, str], output_format: str,
                 prompt: str | None, steps: int | None):
        from bridge.backends import SessionSpec

        spec = SessionSpec(width=width, height=height, channels=dict(channels), action_dim=ACTION_DIM,
                           output_format=output_format, prompt=prompt, steps=steps)
        self.session = renderer.open_session(spec)
        dtype, comps = OUTPUT_FORMATS[output_format]
        self.out = np.empty((height, width, comps), np.dtype(dtype))
        self.seq = 0

    def render(self, pixels, constants, action, prompt, reset) -> tuple[np.ndarray, float, None]:
        from bridge.backends import FrameInputs

        inputs = FrameInputs(self.seq, pixels, constants, action, prompt, reset)
        t0 = time.perf_counter()
        self.session.render(inputs, self.out)
        dt = time.perf_counter() - t0
        self.seq += 1
        return _to_rgb(self.out), dt, None

    def close(self) -> None:
        self.session.close()


class InProcessHost:
    """A renderer spec (or an object with the bridge.backends.Renderer interface) in this process."""

    def __init__(self, renderer, steps: int | None = None, device: str | None = None):
        if isinstance(renderer, str):
            from bridge.backends import create_renderer

            self.name = renderer
            self.renderer = create_renderer(renderer, steps=steps, device=device)
        else:
            self.name = getattr(renderer, "name", type(renderer).__name__)
            self.renderer = renderer
        self.steps = steps

    def describe(self) -> dict:
        return dict(self.renderer.describe(), host="in-process")

    def open(self, width, height, channels, output_format, prompt) -> InProcessRun:
        return InProcessRun(self.renderer, width, height, channels, output_format, prompt, self.steps)

    def close(self) -> None:
        self.renderer.close()


class DaemonRun:
    def __init__(self, host, width, height, channels, output_format, prompt, steps):
        self.host = host
        self.session = host.client.open_session(width=width, height=height, channels=dict(channels),
                                                action_dim=ACTION_DIM, output_format=output_format,
                                                prompt=prompt, steps=steps)

    def render(self, pixels, constants, action, prompt, reset) -> tuple[np.ndarray, float, dict]:
        t0 = time.perf_counter()
        result = self.session.render(pixels, constants=constants, action=action, prompt=prompt, reset=reset)
        dt = time.perf_counter() - t0
        self.host.dropped += len(result.dropped)
        return _to_rgb(result.image), dt, dict(result.timings)  # _to_rgb copies: the shm view is reused

    def close(self) -> None:
        self.session.close()


class DaemonHost:
    """Sessions on a running `neurender serve` at `endpoint`: the numbers a bridge user sees."""

    def __init__(self, endpoint: str, spec: str | None = None, steps: int | None = None,
                 connect_timeout: float = 5.0, frame_timeout: float = 120.0):
        from bridge.client import Client

        self.client = Client(endpoint, timeout=connect_timeout, name="neurender-eval")  # DaemonUnavailable
        self.client.timeout = frame_timeout  # generous: a GPU backend may compile on its first frame
        hosted = (self.client.welcome.get("renderer") or {}).get("backend")
        if spec and hosted and spec.partition(":")[0] != hosted:
            self.client.close()
            raise ValueError(f"the daemon at {endpoint} hosts backend {hosted!r}, not {spec!r}: "
                             f"its numbers would be reported under the wrong name")
        self.name = f"{spec or 'daemon'}@{endpoint}"
        self.steps = steps
        self.dropped = 0

    def describe(self) -> dict:
        welcome = {k: v for k, v in getattr(self.client, "welcome", {}).items() if k not in ("type", "req")}
        return dict(welcome, host=f"daemon at {self.client.endpoint}", dropped_frames=self.dropped)

    def open(self, width, height, channels, output_format, prompt) -> DaemonRun:
        return DaemonRun(self, width, height, channels, output_format, prompt, self.steps)

    def close(self) -> None:
        self.client.close()
