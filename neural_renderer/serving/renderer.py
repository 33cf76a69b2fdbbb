"""`GeneratorRenderer`: the daemon backend that runs the causal generator (`generator[:SPEC]`).

SPEC is a shipped size ('tiny', 'base'), or a path to a checkpoint (.json or .safetensors). With no
SPEC: 'base' on a GPU when it is shipped, else 'tiny'. One `Generator` (KV cache, noise stream) per
client session. The client declares any subset of channels; groups it does not send reach the model
with presence flag 0; a model that reads the world group gets it from the frame's depth and camera
constants (absent without either). Frames of another size are resampled to the model's resolution and the output
back to the client's. A new prompt is encoded on a worker thread (the text encoder takes ~10 s to
load and must never stall the render thread); the session keeps the old prompt until the new
embedding is ready, then re-caches its context under it.
"""
from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import torch
import torch.nn.functional as F

from bridge.backends import BackendUnavailable, FrameInputs, Renderer, RendererSession, SessionSpec, UnsupportedSpec
from bridge.channels import ACTION_DIM, OUTPUT_FORMATS
from neural_renderer.model.checkpoint import load_model, resolve
from neural_renderer.model.inputs import INPUT_CHANNELS, blank_cond, engine_to_cond
from neural_renderer.serving.frame_path import FramePath
from neural_renderer.serving.frame_program import VECTOR
from neural_renderer.serving.generator import Generator
from neural_renderer.serving.plain_frame import PlainFrame
from neural_renderer.serving.prompts import encode_prompt, lookup
from neural_renderer.serving.staging import FrameIO
from neural_renderer.serving.stream import StreamingSampler

DEFAULT_STYLE = "sunny"
MODEL_CHANNELS = frozenset(INPUT_CHANNELS) | {"motion", "disocclusion"}  # what reaches the device


class PromptService:
    """Encodes prompts off the render thread; table hits resolve at once."""

    def __init__(self):
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="prompt-encoder")
        self._lock = threading.Lock()

    def submit(self, text: str) -> Future:
        hit = lookup(text)
        if hit is not None:
            f: Future = Future()
            f.set_result(hit)
            return f
        return self._pool.submit(encode_prompt, text)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


class GeneratorSession(RendererSession):
    def __init__(self, renderer: "GeneratorRenderer", spec: SessionSpec, seed: int):
        self.r = renderer
        self.spec = spec
        self.size = (spec.height, spec.width)
        from bridge.styles import STYLES

        first = renderer.prompts.submit(spec.prompt or STYLES[DEFAULT_STYLE])
        # the very first prompt is awaited once, at session open (not in a frame)
        self.native = renderer.model.cfg.arch == "hourglass"  # any frame size, reprojected history
        if self.native:
            self.gen = StreamingSampler(renderer.model, first.result(), steps=spec.steps or renderer.steps, seed=seed,
                                        use_context=renderer.use_context, use_history=renderer.use_history,
                                        noise=renderer.noise, forward=renderer.step,
                                        cuda_graph=renderer.arm.cuda_graph)
        else:
            self.gen = Generator(renderer.model, first.result(), steps=spec.steps or renderer.steps, seed=seed,
                                 use_context=renderer.use_context, step=renderer.step)
        self.pending: Future | None = None
        self.res = None if self.native else renderer.model.cfg.resolution
        self.io = FrameIO(renderer.device, extra_bytes=4 * VECTOR)
        world = bool(renderer.model.cfg.world_freqs)
        self.plain = PlainFrame(self.gen, self.io, self.size, world) if self.native else None
        # the whole-frame arms: every frame that runs alone is one program (one CUDA graph once steady)
        self.frame = (FramePath(self.gen, self.io, self.size, world, renderer.arm.cuda_graph)
                      if self.native and renderer.arm.frame else None)

    def _cond(self, chans: dict[str, torch.Tensor], constants: dict[str, np.ndarray] | None = None) -> torch.Tensor:
        """The DiT's conditioning on the device, resampled to its square resolution."""
        ours = {k: v for k, v in chans.items() if k in INPUT_CHANNELS}
        if not ours:
            return blank_cond(1, resolution=self.res, device=self.r.device)
        world = constants if self.r.model.cfg.world_freqs else None
        return engine_to_cond(ours, resolution=self.res, constants=world)[None]

    def batch_key(self):
        """Sessions of this renderer with equal keys may have their frames run as one batch (bridge
        render thread): the hourglass sampler at the same frame size and step count. None: never."""
        return (self.size, self.gen.steps) if self.native else None

    def _events(self, frame: FrameInputs) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """The frame's reset and prompt acted on; -> (the channels that reach the device, the action vector)."""
        if frame.reset:
            self.gen.reset()
        if frame.prompt is not None:
            self.pending = self.r.prompts.submit(frame.prompt)
        if self.pending is not None and self.pending.done():
            emb, self.pending = self.pending.result(), None
            self.gen.set_prompt(emb)
        action = np.zeros(ACTION_DIM, np.float32)
        a = np.asarray(frame.action, np.float32).reshape(-1)[:ACTION_DIM]
        action[: len(a)] = a
        return {k: v for k, v in frame.pixels.items() if k in MODEL_CHANNELS}, action

    def prepare(self, frame: FrameInputs) -> tuple:
        """Everything of a frame before the generator's forwards: events, upload, conditioning, and (hourglass)
        the sampler's own preparation (history, this frame's noise). Returns what `run` takes."""
        pixels, action = self._events(frame)
        if self.native:
            return self.plain.prepare(pixels, frame.constants, action)
        chans, action_d = self.io.upload(pixels, action)
        return self._cond(chans, frame.constants), action_d[None]

    def emit(self, y: torch.Tensor, out: np.ndarray) -> None:
        """The generator's frame (1, 3, h, w) in [-1, 1] -> the client's output array."""
        if y.shape[-2:] != self.size:
            y = F.interpolate(y.float(), size=self.size, mode="bilinear", align_corners=False)
        self.io.download(y, out)

    def render(self, frame: FrameInputs, out: np.ndarray) -> None:
        if self.frame is not None:
            pixels, action = self._events(frame)
            self.frame.render(pixels, frame.constants, action, out)
            return
        prepared = self.prepare(frame)
        self.emit(self.gen.run(*prepared) if self.native else self.gen.step(*prepared), out)

    def close(self) -> None:
        if self.pending is not None:
            self.pending.cancel()


class GeneratorRenderer(Renderer):
    def __init__(self, spec_arg: str | None = None, steps: int | None = None, device: str | None = None,
                 seed: int = 0, use_context: bool = True, dtype: str | None = None, kernels: str = "auto",
                 **_ignored):
        spec_arg, options = _split_options(spec_arg)
        use_context = use_context and options.get("context", "1") != "0"
        self.use_history = options.get("history", "1") != "0"
        self.noise = options.get("noise", "fresh")
        if self.noise not in ("fresh", "fixed"):
            raise UnsupportedSpec(f"noise={self.noise!r} (fresh or fixed)")
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        if spec_arg is None:
            spec_arg = "base" if self.device.type == "cuda" and _shipped("base") else "tiny"
        self.checkpoint = resolve(spec_arg)
        if self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        if dtype not in (None, "float32", "bfloat16"):
            raise UnsupportedSpec(f"dtype {dtype!r} (float32 or bfloat16)")
        # bf16 on CUDA by default: through the daemon at 512x512 (H100) it halves the round trip against fp32 with
        # the same output (benchmarks/RESULTS.md, Generator); on CPU bf16 is faster but off the fp32 output far beyond
        # rounding (RESULTS.md, hourglass, Speed on this CPU)
        self.dtype = getattr(torch, dtype or ("bfloat16" if self.device.type == "cuda" else "float32"))
        self.model = load_model(self.checkpoint, device=self.device, dtype=self.dtype)
        # inference options of the hourglass's sampler (history noise; KVCache sinks refreshed every N frames, or
        # masked), set on this renderer's own model copy: the checkpoint stays as shipped
        for key in ("history_noise", "sink_every", "sinks"):
            if key in options and self.model.cfg.arch != "hourglass":
                raise UnsupportedSpec(f"{key}: only the hourglass generator's sampler reads it")
        if "history_noise" in options:
            self.model.cfg.history_noise = float(options["history_noise"])
        if "sink_every" in options:
            self.model.cfg.sink_every = int(options["sink_every"])
        if "sinks" in options:
            self.model.cfg.use_sinks = options["sinks"] == "1"
        self.looks = register_checkpoint_looks(self.checkpoint)  # prompts of looks it was fine-tuned on
        self.steps = int(steps or self.model.cfg.steps)
        # how a step runs: "auto" (the default) takes the fastest implementation that passes its check against
        # the plain path on this machine; a name forces one (which must pass). The choice is in describe().
        if self.model.cfg.arch == "hourglass":
            from neural_renderer.serving.arms import ARMS, ArmStep, select

            R = self.model.cfg.resolution
            try:
                self.kernels, self.arms = select(self.model, self.steps, (R, R), None if kernels == "auto" else kernels)
            except ValueError as e:
                raise BackendUnavailable(f"generator: {e}") from e
            self.arm = ARMS[self.kernels]
            self.step = ArmStep(self.model, self.arm)  # shared by every session: one render thread runs them
            from neural_renderer.serving.batch import BatchStepper

            self.batcher = BatchStepper(self.model, self.step, cuda_graph=self.arm.cuda_graph)
        else:
            from kernels.step_builder import fast_step

            self.kernels, self.step = fast_step(self.model, kernels)
            self.arms = {}
        self.seed = seed
        self.use_context = use_context  # False: the per-frame ablation (same weights, no KV cache)
        ablations = ("" if use_context else "/no-context") + ("" if self.use_history else "/no-history") + (
            "/fixed-noise" if self.noise == "fixed" else "") + (
            f"/history-noise={options['history_noise']}" if "history_noise" in options else "") + (
            f"/sink-every={int(options['sink_every'])}" if "sink_every" in options else "") + (
            "/no-sinks" if options.get("sinks") == "0" else "")
        self.name = f"generator:{self.model.cfg.name}" + ablations
        self.prompts = PromptService()
        self.sessions = 0

    def describe(self) -> dict:
        return {"backend": "generator", "model": self.model.cfg.name, "steps": self.steps, "device": str(self.device),
                "checkpoint": str(self.checkpoint), "resolution": self.model.cfg.resolution, "context": self.use_context,
                "arch": self.model.cfg.arch, "history": self.use_history, "noise": self.noise,
                "history_noise": self.model.cfg.history_noise,
                **({"sink_every": self.model.cfg.sink_every, "sinks": self.model.cfg.use_sinks}
                   if self.model.cfg.arch == "hourglass" else {}),
                "dtype": str(self.dtype).removeprefix("torch."), "kernels": self.kernels,
                **({"arms": self.arms} if self.arms else {}),
                **({"looks": self.looks} if self.looks else {})}

    def open_session(self, spec: SessionSpec) -> RendererSession:
        if spec.output_format not in OUTPUT_FORMATS:
            raise UnsupportedSpec(f"output format {spec.output_format!r} (known: {', '.join(OUTPUT_FORMATS)})")
        if spec.width <= 0 or spec.height <= 0:
            raise UnsupportedSpec(f"frame size {spec.width}x{spec.height}")
        if spec.steps is not None and not 1 <= spec.steps <= 64:
            raise UnsupportedSpec(f"steps {spec.steps} (1..64)")
        self.sessions += 1
        return GeneratorSession(self, spec, seed=self.seed)  # same seed, same inputs -> same frames

    def render_batch(self, items: list[tuple[RendererSession, FrameInputs, np.ndarray]]) -> list[BaseException | None]:
        """Frames of several sessions (the bridge passes frames whose sessions share a `batch_key`), each
        rendered into its `out` as its own `render` would; returns each frame's error or None. Hourglass
        frames whose samplers agree on neural_renderer.serving.batch.batch_key after preparation run as one
        batched forward; a group of one runs alone (its own CUDA graph), anything else frame by frame."""
        from neural_renderer.serving.batch import batch_key

        errors: list[BaseException | None] = [None] * len(items)
        if len(items) == 1:  # alone: the session's own way (the whole-frame program where its arm has one)
            try:
                items[0][0].render(items[0][1], items[0][2])
            except Exception as e:  # noqa: BLE001
                errors[0] = e
            return errors
        groups: dict[tuple, list[tuple[int, tuple]]] = {}
        for i, (rs, frame, out) in enumerate(items):
            try:
                if not rs.native:
                    rs.render(frame, out)
                    continue
                prepared = rs.prepare(frame)
                groups.setdefault(batch_key(rs.gen), []).append((i, prepared))
            except Exception as e:  # noqa: BLE001 - that frame's error reply; the others go on
                errors[i] = e
        for members in groups.values():
            try:
                if len(members) == 1:
                    i, prepared = members[0]
                    ys = [items[i][0].gen.run(*prepared)]
                else:
                    ys = self.batcher.run([items[i][0].gen for i, _ in members], [p for _, p in members])
            except Exception as e:  # noqa: BLE001 - the batched forward failed: every frame of it did
                for i, _ in members:
                    errors[i] = e
                continue
            for (i, _), y in zip(members, ys):
                try:
                    items[i][0].emit(y, items[i][2])
                except Exception as e:  # noqa: BLE001
                    errors[i] = e
        return errors

    def close(self) -> None:
        self.prompts.close()


OPTIONS_HELP = ("context=0|1, history=0|1, noise=fresh|fixed, history_noise=LEVEL (0..1), "
                "sink_every=N (an integer >= 0; 0: the run's first frame stays the sink), sinks=0|1")


def _count(v: str) -> bool:
    return v.isascii() and v.isdigit()  # digits only: no sign, no fraction, no exponent


def _level(v: str) -> bool:
    try:
        return 0.0 <= float(v) <= 1.0
    except ValueError:
        return False


def _split_options(spec_arg: str | None) -> tuple[str | None, dict[str, str]]:
    """'tiny?context=0&noise=fixed' -> ('tiny', {'context': '0', 'noise': 'fixed'}): the ablation arms, and
    'tiny?history_noise=0.1' -> the checkpoint with another inference history noise level (tuning sweeps), and
    'tiny?sink_every=16' -> its KV cache's sinks refreshed every 16 frames (`sinks=0`: masked)."""
    if spec_arg is None or "?" not in spec_arg:
        return spec_arg, {}
    name, _, query = spec_arg.partition("?")
    options = {}
    for part in filter(None, query.split("&")):
        k, eq, v = part.partition("=")
        ok = {"context": v in ("0", "1"), "history": v in ("0", "1"), "noise": v in ("fresh", "fixed"),
              "history_noise": _level(v), "sink_every": _count(v), "sinks": v in ("0", "1")}.get(k, False)
        if not eq or not ok:
            raise UnsupportedSpec(f"generator option {part!r} (known: {OPTIONS_HELP})")
        options[k] = v
    return name or None, options


def register_checkpoint_looks(checkpoint) -> list[str]:
    import json

    from neural_renderer.serving.prompts import register

    looks = json.loads(resolve(checkpoint).read_text()).get("train", {}).get("looks", {})
    for name, embedding in looks.items():
        register(name, embedding)
    return sorted(looks)


def _shipped(name: str) -> bool:
    try:
        resolve(name)
        return True
    except FileNotFoundError:
        return False
