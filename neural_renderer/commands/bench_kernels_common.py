"""What every row of `neurender bench kernels` shares, whichever architecture it times: the card's measured
ceilings, CUDA-graph capture that keeps its owners alive, and `run_arm`, which checks one arm against the fp32
model (tolerance rule of the kernel tests) before and after timing it.

An arm is an `ArmSpec`: `make(cache)` returns a callable that runs one denoising step on that cache and returns
the output. The callable may carry `poison()` (NaN into the arm's own intermediate buffers), `spin_flag()`
(nonzero: a megakernel wait timed out) and `info()` (build details for the JSON).
"""
from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass
from typing import Callable

BUDGET_NOTE = "exceeds the remaining call budget"


@dataclass
class Subject:
    """One config's bf16 model on the device, its inputs, and the fp32 reference every arm is checked against."""
    name: str
    cfg: object
    model: object
    inputs: tuple
    ref32: object
    err_same: float     # max |bf16 eager - fp32|: the same-dtype torch error of the tolerance rule
    scale: float        # max(1, max |fp32|)
    new_cache: Callable  # new_cache(kernel_layout: bool) -> a filled KV cache
    device: object


@dataclass
class ArmSpec:
    label: str
    make: Callable
    kernel_layout: bool = False  # the arm keeps keys in the kernels' layout (kernels.fused_trunk)
    cuda_only: bool = False      # a CUDA graph or torch.compile arm: not run on a CPU device
    serving: str | None = None   # the serving arm (neural_renderer.serving.arm_table) whose step this row times
    extra: bool = False          # second pass, under the budget: torch.compile and the ablations
    est_s: float = 0.0           # expected setup seconds, for the budget of an extra arm


def measure_ceilings(device):
    """Copy bandwidth (bytes read + written) and bf16 matrix rate of this device, on random data."""
    import torch

    big = device.type == "cuda"
    a = torch.randn((512 if big else 32) * 1024 * 1024 // 2, device=device, dtype=torch.bfloat16)
    b = torch.empty_like(a)
    ms = time_ms(lambda: b.copy_(a), device)
    bw = 2 * a.numel() * 2 / (ms * 1e-3)
    del a, b
    n = 8192 if big else 512
    x = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    y = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    ms = time_ms(lambda: x @ y, device)
    return bw, 2 * n ** 3 / (ms * 1e-3)


def time_ms(fn, device) -> float:
    """Median ms of fn(): triton.testing.do_bench on CUDA (L2 flushed before each rep), a few calls on CPU."""
    if device.type == "cuda":
        from triton.testing import do_bench

        return do_bench(fn, warmup=25, rep=200, return_mode="median")
    fn()
    ms = []
    for _ in range(2):
        t0 = time.perf_counter()
        fn()
        ms.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(ms)


def graph_of(fn, warm=3):
    """Capture fn() in a CUDA graph after warm-up on a side stream; returns (replay, static output)."""
    import torch

    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(warm):
            fn()
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        out = fn()
    graph_of.keep.append(g)
    return g.replay, out


graph_of.keep = []


def replay_returning(replay, out, owner):
    """A graph replay that also keeps `owner` (the step object holding the weights and buffers the
    graph reads) alive: freed, its memory goes to the next allocation (do_bench's 256 MiB L2-flush
    buffer) and the replays compute on garbage - which is how a run of this bench once timed a
    megakernel whose queue and counters had been zeroed."""
    def fn():
        replay()
        return out
    fn.owner = owner
    return fn


def graphed(fn, owner, device):
    """fn as one CUDA graph replay on CUDA; on CPU fn itself (the Triton interpreter has no graphs)."""
    if device.type != "cuda":
        def plain():
            return fn()
        plain.owner = owner
        return plain
    return replay_returning(*graph_of(fn), owner=owner)


def compile_arms(model, inputs, args) -> list[ArmSpec]:
    """torch.compile default and max-autotune-no-cudagraphs of `model.forward_frame`, for either architecture:
    extra arms (they run after the core arms, within the budget), each with its compile-time estimate."""
    import torch

    out = []
    for mode in ("default", "max-autotune-no-cudagraphs"):
        def make(cache, mode=mode):
            torch._dynamo.reset()
            f = torch.compile(model.forward_frame, mode=None if mode == "default" else mode)
            return lambda: f(*inputs, cache)
        out.append(ArmSpec(f"compile {mode}", make, cuda_only=True, extra=True,
                           est_s=args.compile_est_s if mode == "default" else args.autotune_est_s))
    return out


def dump(results, path):
    if path:  # partial results survive a later timeout or hang
        with open(path, "w") as f:
            json.dump(results, f, indent=1)


def run_arm(subject: Subject, spec: ArmSpec, res: dict, log) -> dict:
    """Check `spec` against the fp32 reference (its output and the cache's current slot poisoned with NaN
    first, so a launch that skips work fails), time it, poison and check again; the entry goes to
    res["arms"][label]. One arm failing never hides the others."""
    import torch

    from kernels.selfcheck import max_err, tolerance

    t0 = time.time()
    dev = subject.device
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    bound = tolerance(subject.err_same, subject.scale)
    try:
        cache = subject.new_cache(spec.kernel_layout)
        with torch.no_grad():
            fn = spec.make(cache)
            fn.cache = cache  # the arm's cache lives as long as its callable
            static = fn()
            poison = getattr(fn, "poison", None)
            static.fill_(float("nan"))
            cache.k[:, :, :, -1].fill_(float("nan"))
            cache.v[:, :, :, -1].fill_(float("nan"))
            if poison:
                poison()
            out = fn().clone()
        sync()
        err = max_err(out, subject.ref32)
        ok = bool(torch.isfinite(out).all()) and err <= bound
        entry = {"max_err": err, "bound": bound, "pass": ok, "setup_s": round(time.time() - t0, 1)}
        if spec.serving:
            entry["serving_arm"] = spec.serving
        if ok:
            with torch.no_grad():
                entry["ms"] = time_ms(fn, dev)
                static.fill_(float("nan"))
                if poison:
                    poison()
                entry["max_err_after_timing"] = max_err(fn(), subject.ref32)
                flag = getattr(fn, "spin_flag", lambda: 0)()
                entry["spin_flag_after_timing"] = flag
            if not entry["max_err_after_timing"] <= bound or flag:
                entry["pass"] = False
                entry["note"] = f"wrong after timing (err {entry['max_err_after_timing']:.3g}): time not valid"
                entry["ms_invalid"] = entry.pop("ms")
        else:
            entry["note"] = f"failed the fp32 check (err {err:.3g} > bound {bound:.3g}): not timed"
        info = getattr(fn, "info", None)
        if info:
            entry["build"] = info()
    except Exception as e:  # noqa: BLE001 - one arm failing must not hide the others
        entry = {"pass": False, "error": f"{type(e).__name__}: {str(e)[:400]}", "setup_s": round(time.time() - t0, 1)}
        if spec.serving:
            entry["serving_arm"] = spec.serving
    res["arms"][spec.label] = entry
    log(f"  {subject.name:10s} {spec.label:34s} {entry.get('ms', float('nan')):8.3f} ms  "
        f"err {entry.get('max_err', float('nan')):.3g}  setup {entry['setup_s']}s {entry.get('error', entry.get('note', ''))}")
    return entry


def skip(res: dict, spec: ArmSpec, why: str, log) -> None:
    entry = {"pass": False, "skipped": why}
    if spec.serving:
        entry["serving_arm"] = spec.serving
    res["arms"][spec.label] = entry
    log(f"  {res.get('config_name', ''):10s} {spec.label:34s} skipped ({why})")
