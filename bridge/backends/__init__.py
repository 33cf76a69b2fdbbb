"""The renderer interface the daemon hosts, and the registry of backends behind `--backend SPEC`.

One `Renderer` per daemon process holds the model; each client session gets a `RendererSession`.
All calls of a renderer and its sessions come from ONE thread (the daemon's render worker), so
backends need no locking. `open_session` raises `UnsupportedSpec` for a spec it cannot serve.

Batching (optional): a renderer that can run frames of several sessions together defines
`render_batch(items) -> errors`, items a list of (RendererSession, FrameInputs, out), errors one
exception-or-None per item, every frame rendered into its `out` exactly as its own `render` would; its
sessions return a hashable `batch_key()`. The render thread hands it the frames waiting at one instant
whose sessions have equal keys, after holding the first a moment for partners' frames due then
(bridge.render_thread); without `render_batch`, every frame goes to `render`.

spec strings: NAME or NAME:ARG, where NAME is a backend registered under the Python entry-point group
`neurender.backends` (pyproject.toml lists this project's: `passthrough`, the engine color or a shading
of the G-buffer back, and `generator[:tiny|base|/path/ckpt.safetensors]`, the causal generator). A third
party registers its own the same way. The entry point names a factory `(arg, **options) -> Renderer`.
"""
from __future__ import annotations

import abc
import importlib
from dataclasses import dataclass
from pathlib import Path

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

    def batch_key(self):
        """Sessions with equal keys may have their frames passed together to `Renderer.render_batch`;
        None (the default): this session's frames always render alone."""
        return None

    def close(self) -> None:
        """Release per-session state."""


ENTRY_POINT_GROUP = "neurender.backends"
_PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def _checkout_entry_points() -> dict[str, str]:
    """The group as this checkout's pyproject.toml declares it. An editable install's metadata is
    written at install time (and may belong to another checkout of the project), so the source tree
    the bridge runs from is the authority on its own backends."""
    if not _PYPROJECT.is_file():
        return {}
    import tomllib

    with open(_PYPROJECT, "rb") as f:
        project = tomllib.load(f).get("project", {})
    if project.get("name") != "neurender":
        return {}
    return dict(project.get("entry-points", {}).get(ENTRY_POINT_GROUP, {}))


def discover_backends() -> dict[str, str]:
    """name -> "module:factory" of every backend: installed distributions' entry points, with this
    checkout's own declarations taking precedence for the names they define."""
    from importlib.metadata import entry_points

    found = {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}
    found.update(_checkout_entry_points())
    return found


def _load_factory(name: str, target: str):
    module, _, attr = target.partition(":")
    try:
        mod = importlib.import_module(module)
    except ImportError as e:
        raise BackendUnavailable(f"backend {name!r} needs {module}, which cannot be imported ({e}); "
                                 f"use --backend passthrough") from e
    factory = getattr(mod, attr, None) if attr else None
    if factory is None:
        raise BackendUnavailable(f"backend {name!r}: {module} has no {attr or 'factory named in the entry point'}")
    return factory


# What `neurender serve` (and so `neurender demo`) runs when no --backend is given: the shipped
# generator (base on a CUDA GPU, tiny otherwise; see neural_renderer/serving/renderer.py).
DEFAULT_BACKEND = "generator"


def create_renderer(spec: str, **options) -> Renderer:
    """'name' or 'name:arg' -> a Renderer. Options (e.g. steps, device) go to the backend;
    None-valued options are dropped so backends keep their own defaults."""
    name, _, arg = spec.partition(":")
    backends = discover_backends()
    if name not in backends and "." in name:  # a module of your own: module.path[:arg] with create_renderer(arg, **options)
        try:
            return importlib.import_module(name).create_renderer(arg or None, **{k: v for k, v in options.items() if v is not None})
        except (ImportError, AttributeError) as e:
            raise BackendUnavailable(f"backend module {name!r}: {e}") from e
    if name not in backends:
        raise BackendUnavailable(f"unknown backend {name!r}; known: {', '.join(sorted(backends))}")
    factory = _load_factory(name, backends[name])
    return factory(arg or None, **{k: v for k, v in options.items() if v is not None})
