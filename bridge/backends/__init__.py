"""The renderer interface the daemon hosts, and the registry of backends behind `--backend SPEC`.

One `Renderer` per daemon process holds the model; each client session gets a `RendererSession`.
All calls of a renderer and its sessions come from ONE thread (the daemon's render worker), so
backends need no locking. `open_session` raises `UnsupportedSpec` for a spec it cannot serve.

spec strings:
  passthrough                            the engine color (or a shading of the G-buffer) back
  generator | generator:tiny | generator:base | generator:/path/ckpt.safetensors
                                         neural_renderer.backend.GeneratorRenderer(arg, **options)
"""
from __future__ import annotations

import abc
import importlib
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SessionSpec:
    width: int
    height: int
    channels: dict[str, str]  # name -> numpy dtype name (bridge.channels.CHANNELS), declaration order
    action_dim: int
    output_format: str  # key of bridge.channels.OUTPUT_FORMATS
    prompt: str | None
    steps: int | None


@dataclass
class FrameInputs:
    seq: int
    pixels: dict[str, np.ndarray]  # (H, W, C) in declared dtypes, read-only views (valid during render)
    constants: dict[str, np.ndarray]  # float32, bridge.channels.CONSTANTS_LAYOUT (may be partial)
    action: np.ndarray  # (action_dim,) float32
    prompt: str | None  # set only on the frame where the prompt changes
    reset: bool


class RendererError(Exception):
    """Base of the typed errors a backend raises."""


class UnsupportedSpec(RendererError):
    """The renderer cannot serve this session spec (becomes error code `unsupported`)."""


class BackendUnavailable(RendererError):
    """The backend named by a spec string cannot be loaded (missing module, bad spec)."""


class Renderer(abc.ABC):
    @abc.abstractmethod
    def describe(self) -> dict:
        """{"backend": ..., "model": ..., "steps": ..., "device": ...} for the HUD and the serve banner."""

    @abc.abstractmethod
    def open_session(self, spec: SessionSpec) -> "RendererSession":
        """A new per-client state; raises UnsupportedSpec if it cannot serve `spec`."""

    def close(self) -> None:
        """Release the model (daemon shutdown)."""


class RendererSession(abc.ABC):
    @abc.abstractmethod
    def render(self, frame: FrameInputs, out: np.ndarray) -> None:
        """Write the frame into `out`: (H, W, C) of the session's output format."""

    def close(self) -> None:
        """Release per-session state."""


def _generator(arg: str | None, **options) -> Renderer:
    try:
        mod = importlib.import_module("neural_renderer.backend")
    except ModuleNotFoundError as e:
        raise BackendUnavailable(f"backend 'generator' needs neural_renderer.backend, which cannot be "
                                 f"imported ({e}); use --backend passthrough") from e
    cls = getattr(mod, "GeneratorRenderer", None)
    if cls is None:
        raise BackendUnavailable("neural_renderer.backend has no GeneratorRenderer")
    return cls(arg, **options)


def _passthrough(arg: str | None, **options) -> Renderer:
    from bridge.backends.passthrough import PassthroughRenderer
    if arg:
        raise BackendUnavailable(f"passthrough takes no argument, got {arg!r}")
    return PassthroughRenderer(**options)


BACKENDS = {"passthrough": _passthrough, "generator": _generator}

# What `neurender serve` (and so `neurender demo`) runs when no --backend is given: the shipped
# generator (base on a CUDA GPU, tiny otherwise; see neural_renderer/backend.py).
DEFAULT_BACKEND = "generator"


def create_renderer(spec: str, **options) -> Renderer:
    """'name' or 'name:arg' -> a Renderer. Options (e.g. steps, device) go to the backend;
    None-valued options are dropped so backends keep their own defaults."""
    name, _, arg = spec.partition(":")
    if name not in BACKENDS and "." in name:  # a module of your own: module.path[:arg] with create_renderer(arg, **options)
        try:
            return importlib.import_module(name).create_renderer(arg or None, **{k: v for k, v in options.items() if v is not None})
        except (ImportError, AttributeError) as e:
            raise BackendUnavailable(f"backend module {name!r}: {e}") from e
    if name not in BACKENDS:
        raise BackendUnavailable(f"unknown backend {name!r}; known: {', '.join(BACKENDS)}")
    return BACKENDS[name](arg or None, **{k: v for k, v in options.items() if v is not None})
