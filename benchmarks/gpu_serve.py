"""One GPU call that times every way the daemon can run the hourglass generator's step, side by side.

For each frame size and each serving arm (neural_renderer.serving.arms: eager, CUDA graph, channels-last,
the fused Triton trunk, both), on one randomly initialised model built through the registry (timing does
not depend on weight values; random values keep the self-check from passing vacuously):
  check        one step against the plain path in fp32, the kernel tests' tolerance rule
  step         ms per denoising step (one forward against a full KV cache; CUDA graph where the arm uses one),
               median over `--iters` back-to-back replays timed with CUDA events
  frame        ms per steady-state frame of the serving sampler (history, `steps` forwards, cache advance),
               synchronised per frame, p50 and p99: the model time (a whole-frame arm: its step arm's)
  whole frame  ms per steady-state frame as a session runs it in this process, from the engine's channels in
               host memory to the output in host memory (arms.time_frame: upload, conditioning, world planes,
               history, the steps, packing, download); for the whole-frame arms one CUDA graph a frame
  floor        roofline of one step: max(weight bytes / 3.0 TB/s, FLOPs / 790 TFLOP/s), the H100 ceilings
               measured in field notes section 5 (FLOPs counted by torch's FlopCounterMode)
The megakernel row says why it does not apply (it runs the DiT step, not the hourglass trunk). Then, unless
--no-serve, the full round trip through `neurender serve` (a real daemon, shared-memory transport, `--kernels
auto` and each arm of --serve-kernels, one daemon each, the same random weights as a checkpoint): client round
trip p50/p99, the daemon's render time, and the host share (round trip minus the chosen arm's frame time). Writes gpu_serve.json and gpu_serve.md to --out.

    python benchmarks/gpu_serve.py --out $OUT/serve                       # H100/H200: base, 512x512 + 1280x720
    python benchmarks/gpu_serve.py --out /tmp/gs --model hg-micro --size 64 --device cpu --serve-kernels auto  # smoke (CPU)

Needs no network; within --budget-s (default 240) it skips what would not fit and says so.
"""
from __future__ import annotations

import argparse
import copy
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere in the checkout

from neural_renderer.commands.bench_kernels import graph_of  # noqa: E402  (after the path)

BANDWIDTH, MATRIX_RATE = 3.0e12, 790e12  # bytes/s, FLOP/s: H100 ceilings (field notes section 5)
MEGAKERNEL = "n/a: the megakernel runs the DiT step (patch embed, blocks, final layer in one launch); the " \
             "hourglass trunk between conv stages is not wired into it"


def parse_sizes(text: str) -> list[tuple[int, int]]:
    """'512x512,1280x720' (width x height) or '64' -> [(H, W), ...]."""
    out = []
    for part in text.split(","):
        w, _, h = part.strip().partition("x")
        out.append((int(h or w), int(w)))
    return out


def percentile(xs, q):
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))]




def step_inputs(model, size, arm):
    from kernels.fused_trunk import import_cache
    from kernels.selfcheck import filled_cache, random_frame_inputs

    p = next(model.parameters())
    inp = random_frame_inputs(model.cfg, 1, *size, p.device, p.dtype)
    cache = filled_cache(model, 1, p.device, p.dtype, tokens=model.tokens_for(*size))
    return inp, (import_cache(cache) if arm.fused else cache)


def time_step(model, arm, size, iters: int) -> float:
    """Median ms of one denoising step of `arm` (in a CUDA graph where the arm uses one)."""
    import torch

    from neural_renderer.serving.arms import ArmStep

    m = copy.deepcopy(model)
    step = ArmStep(m, arm)
    inp, cache = step_inputs(m, size, arm)
    fn = lambda: step(*inp, cache)  # noqa: E731
    cuda = next(m.parameters()).device.type == "cuda"
    with torch.no_grad():
        if cuda and arm.cuda_graph:
            fn = graph_of(fn)[0]  # the replay
        for _ in range(3):
            fn()
        ms = []
        for _ in range(iters):
            if cuda:
                a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                a.record()
                fn()
                b.record()
                b.synchronize()
                ms.append(a.elapsed_time(b))
            else:
                t0 = time.perf_counter()
                fn()
                ms.append((time.perf_counter() - t0) * 1e3)
    return percentile(ms, 0.5)


def step_flops(model, size) -> int:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from neural_renderer.serving.arms import ARMS

    inp, cache = step_inputs(model, size, ARMS["eager"])
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model.forward_frame(*inp, cache)
    return counter.get_total_flops()


def bench_arms(model, sizes, steps, args, deadline, log) -> list[dict]:
    from neural_renderer.serving import arms

    dev = next(model.parameters()).device
    names = arms.candidates(dev) if args.arms == "all" else args.arms.split(",")
    w_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    rows = []
    for size in sizes:
        flops = step_flops(model, size)
        floor = max(w_bytes / BANDWIDTH, flops / MATRIX_RATE) * 1e3
        for name in names:
            arm = arms.ARMS[name]
            row = {"size": f"{size[1]}x{size[0]}", "arm": name, "gflops_per_step": flops / 1e9, "floor_ms": floor}
            rows.append(row)
            if time.monotonic() > deadline:
                row["status"] = "skipped: budget"
                continue
            if arm.cuda_graph and dev.type != "cuda":
                row["status"] = "skipped: a CUDA graph needs a CUDA device"
                continue
            t0 = time.monotonic()
            ok, detail = arms.check(model, arm, size)
            row.update(check=detail, ok=ok)
            if ok:
                try:
                    row["step_ms"] = time_step(model, arm, size, args.iters)
                    fr = arms.time_arm(model, arm, size, steps, frames=args.frames)
                    row.update(frame_p50_ms=percentile(fr, 0.5), frame_p99_ms=percentile(fr, 0.99), status="ok")
                    wf = arms.time_frame(model, arm, size, steps, frames=args.frames)
                    row.update(whole_frame_p50_ms=percentile(wf, 0.5), whole_frame_p99_ms=percentile(wf, 0.99))
                except Exception as e:  # noqa: BLE001 - one arm's failure is a result, not the end of the run
                    row.update(ok=False, status=f"failed: {type(e).__name__}: {e}")
            else:
                row["status"] = "failed its check"
            row["wall_s"] = time.monotonic() - t0
            log(row)
        rows.append({"size": f"{size[1]}x{size[0]}", "arm": "megakernel", "status": MEGAKERNEL, "floor_ms": floor,
                     "gflops_per_step": flops / 1e9})
    return rows


def bench_serve(model, sizes, steps, args, dtype, deadline, log) -> list[dict]:
    """Round trip through a real `neurender serve` with these weights, one daemon per --serve-kernels entry, one
    session per size."""
    rows = []
    for kernels in args.serve_kernels.split(","):
        try:
            rows += [{"requested": kernels, **r} for r in _serve(model, sizes, steps, args, dtype, deadline, log, kernels)]
        except Exception as e:  # noqa: BLE001 - an arm that does not serve here is a result; the others go on
            rows.append({"requested": kernels, "size": "-", "status": f"failed: {type(e).__name__}: {e}"})
    return rows


def _serve(model, sizes, steps, args, dtype, deadline, log, kernels: str) -> list[dict]:
    import numpy as np

    from bridge.client import Client
    from bridge.daemon import spawn_daemon
    from bridge.styles import STYLES
    from neural_renderer.model.checkpoint import save_checkpoint

    rows = []
    channels = {"color": "float16", "depth": "float16", "normals": "float16", "albedo": "float16",
                "material_id": "uint8", "motion": "float16", "disocclusion": "uint8"}
    with tempfile.TemporaryDirectory() as tmp:
        ck = save_checkpoint(model.state_dict(), model.cfg, Path(tmp) / model.cfg.name, dtype=next(model.parameters()).dtype)
        left = max(10.0, deadline - time.monotonic())
        with spawn_daemon(f"generator:{ck}", runtime_dir="private", device=args.device, steps=steps, timeout=left,
                          extra_args=["--dtype", dtype, "--kernels", kernels]) as d:
            with Client(d.endpoint) as c:
                for (H, W) in sizes:
                    row = {"size": f"{W}x{H}"}
                    rows.append(row)
                    if time.monotonic() > deadline:
                        row["status"] = "skipped: budget"
                        continue
                    s = c.open_session(W, H, channels, output_format="rgb8", prompt=STYLES["sunny"], steps=steps)
                    rng = np.random.default_rng(0)
                    for k in range(s.slots):  # the engine's readback lands in every slot once
                        for name, view in s.input_views(k).items():
                            view[...] = (rng.random(view.shape) * (4 if name == "material_id" else 1)).astype(view.dtype)
                        s.input_views(k)["motion"][...] = 0.5  # a slow pan: the reprojected history is used
                    rt, render = [], []
                    for i in range(args.serve_warmup + args.serve_frames):
                        r = s.render(slot=s.acquire_slot(), timeout=60)
                        if i >= args.serve_warmup:
                            rt.append(r.timings["roundtrip_ms"])
                            render.append(r.timings.get("render_ms", float("nan")))
                    info = s.info["renderer"]
                    s.close()
                    row.update(kernels=info.get("kernels"), arms=info.get("arms"), status="ok",
                               roundtrip_p50_ms=percentile(rt, 0.5), roundtrip_p99_ms=percentile(rt, 0.99),
                               render_p50_ms=percentile(render, 0.5), render_p99_ms=percentile(render, 0.99),
                               frames=len(rt))
                    log(row)
    return rows


def markdown(res) -> str:
    f = lambda v: "-" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))  # noqa: E731
    lines = [f"# gpu_serve: {res['model']} ({res['params'] / 1e6:.1f}M params), {res['dtype']}, {res['steps']} steps, "
             f"{res['device']}", "", "| size | arm | check | step ms | frame p50 ms | frame p99 ms | whole frame p50 ms | floor ms | status |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in res["arms"]:
        lines.append(f"| {r['size']} | {r['arm']} | {r.get('check', '-')} | {f(r.get('step_ms'))} | "
                     f"{f(r.get('frame_p50_ms'))} | {f(r.get('frame_p99_ms'))} | {f(r.get('whole_frame_p50_ms'))} | "
                     f"{f(r.get('floor_ms'))} | {r.get('status')} |")
    if res.get("serve"):
        lines += ["", f"Round trip through `neurender serve --kernels {res['serve_kernels']}` (shm, rgb8, client on the "
                      "same machine); host share = round trip p50 - the chosen arm's frame p50", "",
                  "| size | --kernels | arm chosen | round trip p50 ms | p99 ms | daemon render p50 ms | host share ms | status |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in res["serve"]:
            lines.append(f"| {r['size']} | {r.get('requested', '-')} | {r.get('kernels', '-')} | {f(r.get('roundtrip_p50_ms'))} | "
                         f"{f(r.get('roundtrip_p99_ms'))} | {f(r.get('render_p50_ms'))} | {f(r.get('host_share_ms'))} | "
                         f"{r.get('status')} |")
    if res.get("serve_error"):
        lines += ["", f"Round trip not measured: {res['serve_error']}"]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True)
    p.add_argument("--model", default="base", help="registry size (hourglass): base, tiny, hg-micro")
    p.add_argument("--size", default="512x512,1280x720", help="WxH[,WxH...] or one number for a square")
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--device", default="cuda")
    p.add_argument("--dtype", default=None, choices=("bfloat16", "float32"), help="default bfloat16 on CUDA, else float32")
    p.add_argument("--arms", default="all", help="comma-separated arms or 'all' (every candidate on this device)")
    p.add_argument("--iters", type=int, default=50, help="timed replays per step figure")
    p.add_argument("--frames", type=int, default=60, help="timed frames per frame figure")
    p.add_argument("--no-serve", action="store_true", help="skip the daemon round trip")
    p.add_argument("--serve-kernels", default="auto,fused,frame-graph,frame-graph+fused",
                   help="comma-separated --kernels of the daemons, one daemon each (default: auto beside the fused "
                        "step arm and the whole-frame arms)")
    p.add_argument("--serve-frames", type=int, default=300)
    p.add_argument("--serve-warmup", type=int, default=30)
    p.add_argument("--budget-s", type=float, default=240.0)
    args = p.parse_args(argv)
    t_start = time.monotonic()
    deadline = t_start + args.budget_s
    import torch

    from kernels.selfcheck import randomize_
    from neural_renderer.model.registry import build

    dtype = args.dtype or ("bfloat16" if args.device.startswith("cuda") else "float32")
    if args.device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model = randomize_(build(args.model)).to(args.device, getattr(torch, dtype)).eval()
    if model.cfg.arch != "hourglass":
        p.error(f"--model {args.model} is not an hourglass size")
    sizes = parse_sizes(args.size)
    log = lambda row: print(json.dumps(row), flush=True)  # noqa: E731
    device_name = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"cpu ({platform.machine()})"
    res = {"model": args.model, "params": sum(p.numel() for p in model.parameters()), "dtype": dtype,
           "steps": args.steps, "device": device_name, "torch": torch.__version__, "sizes": args.size,
           "serve_kernels": args.serve_kernels}
    res["arms"] = bench_arms(model, sizes, args.steps, args, deadline, log)
    if not args.no_serve:
        try:
            res["serve"] = bench_serve(model, sizes, args.steps, args, dtype, deadline, log)
            for r in res["serve"]:
                chosen = next((a for a in res["arms"] if a["size"] == r["size"] and a["arm"] == r.get("kernels")), {})
                if "roundtrip_p50_ms" in r and "frame_p50_ms" in chosen:
                    r["host_share_ms"] = r["roundtrip_p50_ms"] - chosen["frame_p50_ms"]
        except Exception as e:  # noqa: BLE001 - the in-process arms are still worth writing
            res["serve_error"] = f"{type(e).__name__}: {e}"
    res["wall_s"] = time.monotonic() - t_start
    (out / "gpu_serve.json").write_text(json.dumps(res, indent=1))
    (out / "gpu_serve.md").write_text(markdown(res))
    print(markdown(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
