"""The one way the serving code gets a fast denoising step: `fast_step(model, backend)`.

Which implementation of a denoising step runs on a device, decided once and reported by the HUD
and `neurender serve`:

    "megakernel"  Hopper (sm_90) GPU where the megakernel passes its self-check
    "fused"       any other CUDA GPU with Triton (the fused ops; also Hopper if the self-check fails)
    "eager"       CPU, or no Triton: the model's own PyTorch forward

The self-check builds a small random model on the device, runs one megakernel step against the fp32
model (tolerance rule of the tests, plus the spin-timeout flag), and is cached per device.

NEURENDER_KERNELS_BACKEND=eager|fused|megakernel overrides the choice (a CUDA backend on a CPU device
is refused). On the H100 measurements of 2026-11-23 (benchmarks/RESULTS.md, Kernels) the fused ops
beat the megakernel on dim 512 / depth 12, so a deployment may want `fused` there.
"""
from __future__ import annotations

import os

import torch

BACKENDS = ("megakernel", "fused", "eager")
_SELF_CHECK: dict[str, tuple[bool, str]] = {}


def megakernel_self_check(device) -> tuple[bool, str]:
    device = torch.device(device)
    key = str(device)
    if key in _SELF_CHECK:
        return _SELF_CHECK[key]
    try:
        from kernels.megakernel import MegakernelStep
        from kernels.selfcheck import check_against_fp32, randomize_, tolerance
        from neural_renderer.model.dit import CausalDiT
        from neural_renderer.model.registry import GeneratorConfig

        cfg = GeneratorConfig("selfcheck", resolution=256, patch=16, dim=128, depth=2, heads=2, window=1, sinks=1)
        model = randomize_(CausalDiT(cfg)).to(device, torch.bfloat16).eval()
        mk = MegakernelStep(model, batch=1)
        err, err_t, scale = check_against_fp32(model, lambda inp, cache: mk(*inp, cache).clone())
        torch.cuda.synchronize(device)
        ok = err <= tolerance(err_t, scale) and int(mk.err.item()) == 0
        res = (ok, f"megakernel err {err:.3g} vs torch bf16 err {err_t:.3g}, spin flag {int(mk.err.item())}")
    except Exception as e:  # any failure (compile, co-residency refusal) means: do not use it
        res = (False, f"megakernel self-check failed: {type(e).__name__}: {e}")
    _SELF_CHECK[key] = res
    return res


def select_backend(device) -> str:
    device = torch.device(device)
    forced = os.environ.get("NEURENDER_KERNELS_BACKEND", "").strip()
    if forced:
        if forced not in BACKENDS:
            raise ValueError(f"NEURENDER_KERNELS_BACKEND={forced!r}: choose one of {', '.join(BACKENDS)}")
        if forced != "eager" and device.type != "cuda":
            raise ValueError(f"NEURENDER_KERNELS_BACKEND={forced!r} needs a CUDA device, got {device}")
        return forced
    if device.type != "cuda" or not torch.cuda.is_available():
        return "eager"
    try:
        import triton  # noqa: F401
    except ImportError:
        return "eager"
    if torch.cuda.get_device_capability(device)[0] == 9 and megakernel_self_check(device)[0]:
        return "megakernel"
    return "fused"


def build_step(model, backend: str, batch: int = 1):
    """A callable with CausalDiT.forward_frame's contract for the chosen backend. The fused and
    megakernel steps keep keys in kernel layout in the cache they are given (kernels.fused_model):
    use one backend for every forward of a run, including the cache-write pass. They return a
    static output buffer that their next call overwrites (CUDA-graph friendly): copy what you keep."""
    if backend == "eager":
        return model.forward_frame
    if backend == "fused":
        from kernels.fused_model import FusedStep

        return FusedStep(model)
    if backend == "megakernel":
        from kernels.megakernel import MegakernelStep

        return MegakernelStep(model, batch=batch)
    raise ValueError(f"unknown backend {backend!r} (eager, fused, megakernel)")


def fast_step(model, backend: str = "eager", batch: int = 1) -> tuple[str, object]:
    """(backend name, step) for the serving code: `step` has CausalDiT.forward_frame's contract.
    backend "auto" picks with `select_backend` for the model's device. A non-eager step keeps keys
    in kernel layout in the cache it is given, so one run must use it for every forward."""
    if backend == "auto":
        backend = select_backend(next(model.parameters()).device)
    return backend, build_step(model, backend, batch=batch)


# -- the hourglass generator: only its transformer trunk is fused; the serving code picks among arms --------


def hourglass_trunk(model):
    """The fused trunk for `HourglassGenerator.forward_frame(..., trunk=)`. A run that uses it must use it for
    every forward: it keeps keys in kernel layout in the cache (kernels.fused_trunk)."""
    from kernels.fused_trunk import FusedTrunk

    return FusedTrunk(model)


def hourglass_megakernel_trunk(model):
    """The trunk as one persistent launch per step (kernels.megakernel_trunk), same contract and key layout as
    `hourglass_trunk`; shapes its schedule cannot tile run the fused trunk's ops on the same weights."""
    from kernels.megakernel_trunk import MegakernelTrunk

    return MegakernelTrunk(model)


def check_hourglass_step(model, step_fn, height: int, width: int, kernel_layout: bool) -> tuple[bool, str]:
    """One step of `step_fn(inputs, cache)` against the model's plain forward, judged by the kernel tests'
    tolerance rule: |step - fp32| <= 2 |torch same dtype - fp32| + atol * scale."""
    from kernels.selfcheck import atol_for, check_frame_against_fp32, tolerance

    dtype = next(model.parameters()).dtype
    err, err_t, scale = check_frame_against_fp32(model, step_fn, height, width, kernel_layout)
    bound = tolerance(err_t, scale, atol_for(dtype))
    return err <= bound, f"err {err:.3g} <= bound {bound:.3g}" if err <= bound else f"err {err:.3g} > bound {bound:.3g}"
