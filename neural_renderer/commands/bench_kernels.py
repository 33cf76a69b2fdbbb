"""`neurender bench kernels --json PATH`: every way of running one denoising step, side by side.

Arms (each checked against the fp32 model before it is timed, tolerance rule of the tests with the
bf16 eager model as the same-dtype torch reference): eager PyTorch, torch.compile default,
torch.compile max-autotune-no-cudagraphs (skipped when the remaining call budget cannot hold its
compile, and said so), a manual CUDA graph of the eager model, the fused Triton ops in a CUDA graph,
the megakernel in a CUDA graph (with and without its L2 weight prefetch). Median ms per step
(triton.testing.do_bench, L2 flushed before every rep), ms per frame at the shipped step count
(steps + the cache-write pass), and the roofline floor from the measured copy bandwidth and bf16
matrix rate of the card.
"""
from __future__ import annotations

import argparse
import json
import time

CONFIG_NAMES = ("dit-base", "d512x12", "d768x16")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", metavar="PATH", help="write the full results here")
    parser.add_argument("--configs", default=",".join(CONFIG_NAMES),
                        help=f"comma-separated subset of {', '.join(CONFIG_NAMES)}")
    parser.add_argument("--budget-s", type=float, default=540.0,
                        help="wall-clock budget: compile arms that would not fit are skipped (default 540)")
    parser.add_argument("--autotune-est-s", type=float, default=150.0,
                        help="expected max-autotune compile time per config, for the budget (default 150)")
    parser.add_argument("--autotune-configs", default="dit-base",
                        help="configs that get the max-autotune arm at all (default: base)")
    parser.add_argument("--no-compile", action="store_true", help="skip both torch.compile arms")
    parser.add_argument("--compile-configs", default=",".join(CONFIG_NAMES),
                        help="configs that get the torch.compile arms (default: all)")
    parser.add_argument("--variant-configs", default="dit-base",
                        help="configs that also get the megakernel variants: no prefetch, 32-row tiles, "
                             "cooperative launch (default: base)")
    parser.add_argument("--no-prefetch-ablation", action="store_true",
                        help="skip the megakernel arm without L2 prefetch")
    parser.add_argument("--batch", type=int, default=1)


def bench_configs():
    from neural_renderer.model.registry import MODELS, GeneratorConfig

    return {
        "dit-base": MODELS["dit-base"](),
        # 1024 current tokens attending to 3 x 1024 cached keys (+ their own): a large deployment shape
        "d512x12": GeneratorConfig("d512x12", resolution=512, patch=16, dim=512, depth=12, heads=8, window=2, sinks=1),
        "d768x16": GeneratorConfig("d768x16", resolution=512, patch=16, dim=768, depth=16, heads=12, window=2,
                                   sinks=1),
    }


def measure_ceilings(device):
    """Copy bandwidth (bytes read + written) and bf16 matrix rate of this card, on random data."""
    import torch
    from triton.testing import do_bench

    a = torch.randn(512 * 1024 * 1024 // 2, device=device, dtype=torch.bfloat16)  # 512 MiB
    b = torch.empty_like(a)
    ms = do_bench(lambda: b.copy_(a), warmup=10, rep=50, return_mode="median")
    bw = 2 * a.numel() * 2 / (ms * 1e-3)
    del a, b
    n = 8192
    x = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    y = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    ms = do_bench(lambda: x @ y, warmup=10, rep=50, return_mode="median")
    return bw, 2 * n ** 3 / (ms * 1e-3)


def step_cost(model):
    """(weight bytes, KV bytes, FLOPs) of one denoising step with a full cache, bf16."""
    c = model.cfg
    T, D, L = c.tokens, c.dim, c.depth
    lin = sum(p.numel() for n, p in model.named_parameters()
              if p.dim() == 2 and n.startswith(("blocks", "patch_embed", "final.linear")) and "adaLN" not in n)
    w_bytes = 2 * sum(p.numel() for n, p in model.named_parameters() if not n.startswith("material"))
    keys = c.slots * T
    kv_bytes = 2 * 2 * L * keys * D
    flops = 2 * T * lin + 4 * T * keys * D * L
    return w_bytes, kv_bytes, flops


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


def _replay_returning(replay, out, owner):
    """A graph replay that also keeps `owner` (the step object holding the weights and buffers the
    graph reads) alive: freed, its memory goes to the next allocation (do_bench's 256 MiB L2-flush
    buffer) and the replays compute on garbage - which is how a run of this bench once timed a
    megakernel whose queue and counters had been zeroed."""
    def fn():
        replay()
        return out
    fn.owner = owner
    return fn


def _dump(results, path):
    if path:  # partial results survive a later timeout or hang
        with open(path, "w") as f:
            json.dump(results, f, indent=1)


def bench_config(name, cfg, args, ceilings, deadline, log, res, dump=lambda: None):
    """Fills `res` (already in the results tree, so a partial dump holds every arm done so far)."""
    import copy

    import torch
    from triton.testing import do_bench

    from kernels.fused_model import FusedStep, import_cache
    from kernels.megakernel import MegakernelStep
    from kernels.selfcheck import filled_cache, max_err, random_inputs, randomize_, tolerance
    from neural_renderer.model.dit import CausalDiT

    dev = torch.device("cuda")
    B = args.batch
    m32 = randomize_(CausalDiT(cfg)).to(dev).eval()
    model = copy.deepcopy(m32).to(torch.bfloat16).eval()
    inp = random_inputs(cfg, B, dev, torch.bfloat16)
    with torch.no_grad():
        ref32 = m32.forward_frame(*(t.float() for t in inp), filled_cache(m32, B, dev, torch.float32))
    del m32
    scale = max(1.0, ref32.abs().max().item())
    res.update({"config": cfg.to_dict(), "arms": {}, "steps": cfg.steps, "forwards_per_frame": cfg.steps + 1})
    w_bytes, kv_bytes, flops = step_cost(model)
    bw, rate = ceilings
    res.update(weight_bytes=w_bytes, kv_bytes=kv_bytes, flops=flops,
               floor_ms=1e3 * max(w_bytes / bw, flops / rate),
               floor_with_kv_ms=1e3 * max((w_bytes + kv_bytes) / bw, flops / rate))
    state = {}

    def arm(label, make, kernel_layout=False):
        t0 = time.time()
        try:
            cache = filled_cache(model, B, dev, torch.bfloat16)
            if kernel_layout:
                cache = import_cache(cache)
            with torch.no_grad():
                fn = make(cache)
                fn.cache = cache  # the arm's cache lives as long as its callable
                static = fn()
                # poison the (static) output and the current cache slot: a launch that skips work must fail
                static.fill_(float("nan"))
                cache.k[:, :, :, -1].fill_(float("nan"))
                cache.v[:, :, :, -1].fill_(float("nan"))
                poison = getattr(fn, "poison", None)
                if poison:
                    poison()
                out = fn().clone()
            torch.cuda.synchronize()
            setup_s = time.time() - t0
            err = max_err(out, ref32)
            if label == "eager":
                state["err_eager"] = err
            bound = tolerance(state["err_eager"], scale)
            ok = bool(torch.isfinite(out).all()) and err <= bound
            entry = {"max_err": err, "bound": bound, "pass": ok, "setup_s": round(setup_s, 1)}
            if ok:
                with torch.no_grad():
                    entry["ms"] = do_bench(fn, warmup=25, rep=200, return_mode="median")
                    static.fill_(float("nan"))
                    if poison:
                        poison()
                    entry["max_err_after_timing"] = max_err(fn(), ref32)
                    flag = getattr(fn, "spin_flag", lambda: 0)()
                    entry["spin_flag_after_timing"] = flag
                if not entry["max_err_after_timing"] <= bound or flag:
                    entry["pass"] = False
                    entry["note"] = f"wrong after timing (err {entry['max_err_after_timing']:.3g}): time not valid"
                    entry["ms_invalid"] = entry.pop("ms")
            else:
                entry["note"] = f"failed the fp32 check (err {err:.3g} > bound {bound:.3g}): not timed"
        except Exception as e:  # one arm failing must not hide the others
            entry = {"pass": False, "error": f"{type(e).__name__}: {str(e)[:400]}", "setup_s": round(time.time() - t0, 1)}
        res["arms"][label] = entry
        dump()
        log(f"  {name:8s} {label:26s} {entry.get('ms', float('nan')):8.3f} ms  err {entry.get('max_err', float('nan')):.3g}"
            f"  setup {entry['setup_s']}s {entry.get('error', entry.get('note', ''))}")
        return entry

    arm("eager", lambda cache: (lambda: model.forward_frame(*inp, cache)))
    if not args.no_compile and name in args.compile_configs.split(","):
        for mode in ("default", "max-autotune-no-cudagraphs"):
            label = f"compile {mode}"
            if mode != "default" and name not in args.autotune_configs.split(","):
                res["arms"][label] = {"pass": False, "skipped": "not in --autotune-configs (call budget)"}
                continue
            if mode != "default" and time.time() + args.autotune_est_s > deadline:
                res["arms"][label] = {"pass": False, "skipped": f"compile estimate {args.autotune_est_s:.0f}s exceeds "
                                                                  f"the remaining call budget"}
                log(f"  {name:8s} {label:26s} skipped (budget)")
                continue

            def make(cache, mode=mode):
                torch._dynamo.reset()
                f = torch.compile(model.forward_frame, mode=None if mode == "default" else mode)
                return lambda: f(*inp, cache)

            arm(label, make)
    arm("cuda graph (eager)",
        lambda cache: _replay_returning(*graph_of(lambda: model.forward_frame(*inp, cache)), owner=(model, cache)))

    def fused(cache):
        fs = FusedStep(model)
        return _replay_returning(*graph_of(lambda: fs(*inp, cache)), owner=(fs, cache))

    arm("fused ops + cuda graph", fused, kernel_layout=True)

    def mega(prefetch, cooperative, **kw):
        def make(cache):
            mk = MegakernelStep(model, batch=B, prefetch=prefetch, **kw)
            mk(*inp, cache)  # first launch: co-residency check + compile, outside the capture
            torch.cuda.synchronize()
            res.setdefault("megakernel_build", mk.compiled_info)
            if cooperative:
                mk.cooperative = True
                mk(*inp, cache)
                torch.cuda.synchronize()
            replay, out = graph_of(lambda: mk(*inp, cache))
            replay()
            torch.cuda.synchronize()
            res["megakernel_spin_flag"] = int(mk.err.item())
            fn = _replay_returning(replay, out, owner=(mk, cache))

            def poison():  # every intermediate buffer too: stale values from an earlier launch would match
                for b in (mk.out, mk.x, mk.q, mk.a, mk.h, mk.mod):
                    b.fill_(float("nan"))
            fn.poison = poison
            fn.spin_flag = lambda: int(mk.err.item())  # a timed-out wait during timing voids the time
            return fn
        return make

    e = arm("megakernel + cuda graph", mega(True, False), kernel_layout=True)
    arm("megakernel 32-row tiles", mega(True, False, block_m=32, att_split=1), kernel_layout=True)
    if name in args.variant_configs.split(","):
        if not args.no_prefetch_ablation and time.time() + 60 < deadline:
            arm("megakernel, no prefetch", mega(False, False), kernel_layout=True)
        if e.get("pass") and time.time() + 30 < deadline:
            arm("megakernel cooperative", mega(True, True), kernel_layout=True)

    ms = {k: v["ms"] for k, v in res["arms"].items() if "ms" in v}
    res["config_name"] = name
    for k in ms:
        res["arms"][k]["ms_per_frame"] = ms[k] * res["forwards_per_frame"]
    best_compile = min([ms[k] for k in ms if k.startswith("compile")], default=None)
    mk_ms = min([ms[k] for k in ms if k.startswith("megakernel")], default=None)
    g = ms.get("cuda graph (eager)")
    res["ratios"] = {
        "megakernel_vs_cuda_graph_eager": g / mk_ms if g and mk_ms else None,
        "megakernel_vs_best_compile": best_compile / mk_ms if best_compile and mk_ms else None,
        "megakernel_over_floor": mk_ms / res["floor_ms"] if mk_ms else None,
        "fused_vs_cuda_graph_eager": g / ms["fused ops + cuda graph"] if g and "fused ops + cuda graph" in ms else None,
    }
    return res


def print_table(results, log):
    log("")
    log(f"{'config':9s} {'arm':28s} {'ms/step':>8s} {'ms/frame':>9s} {'max err':>9s}")
    for name, r in results["configs"].items():
        for label, a in r["arms"].items():
            ms = f"{a['ms']:8.3f}" if "ms" in a else "       -"
            mf = f"{a['ms_per_frame']:9.3f}" if "ms_per_frame" in a else "        -"
            err = f"{a['max_err']:9.2e}" if "max_err" in a else "        -"
            why = "" if a.get("pass") else a.get("skipped", a.get("error", a.get("note", "")))[:70]
            log(f"{name:9s} {label:28s} {ms} {mf} {err}  {why}")
        log(f"{name:9s} {'roofline floor (weights)':28s} {r['floor_ms']:8.3f}   (with KV reads {r['floor_with_kv_ms']:.3f})")
        rt = r["ratios"]
        fmt = lambda v: f"{v:.2f}x" if v else "n/a"  # noqa: E731
        log(f"{name:9s} megakernel vs CUDA-graphed eager {fmt(rt['megakernel_vs_cuda_graph_eager'])}, "
            f"vs best compile {fmt(rt['megakernel_vs_best_compile'])}, over floor {fmt(rt['megakernel_over_floor'])}; "
            f"fused vs CUDA-graphed eager {fmt(rt['fused_vs_cuda_graph_eager'])}")


def run(args) -> int:
    import torch
    import triton

    from kernels.step_builder import megakernel_self_check, select_backend

    if not torch.cuda.is_available():
        print("bench kernels needs a CUDA GPU (the CPU path is covered by tests/test_kernels_*.py)")
        return 2
    t_start = time.time()
    deadline = t_start + args.budget_s
    log = lambda s: print(s, flush=True)  # noqa: E731
    dev = torch.device("cuda")
    props = torch.cuda.get_device_properties(dev)
    bw, rate = measure_ceilings(dev)
    log(f"{props.name}: {props.multi_processor_count} SMs, copy {bw / 1e12:.2f} TB/s, bf16 matmul {rate / 1e12:.0f} TFLOP/s")
    results = {"date": time.strftime("%Y-%m-%d", time.gmtime()), "device": props.name, "torch": torch.__version__,
               "triton": triton.__version__, "sms": props.multi_processor_count, "copy_bytes_per_s": bw,
               "bf16_flops_per_s": rate, "timing": "triton.testing.do_bench median, L2 flushed before each rep",
               "configs": {}}
    cfgs = bench_configs()
    for name in [c.strip() for c in args.configs.split(",") if c.strip()]:
        if name not in cfgs:
            raise SystemExit(f"unknown config {name!r}; choose from {', '.join(cfgs)}")
        if time.time() > deadline:
            results["configs"][name] = {"skipped": "call budget exhausted"}
            continue
        results["configs"][name] = {}
        bench_config(name, cfgs[name], args, (bw, rate), deadline, log, results["configs"][name],
                     lambda: _dump(results, args.json))
        torch.cuda.empty_cache()
        _dump(results, args.json)
    # last: the backend self-check (a small megakernel run) - after the numbers are safe on disk
    ok, why = megakernel_self_check(dev)
    results["backend"] = {"select_backend": select_backend(dev), "self_check": why}
    log(f"select_backend: {results['backend']['select_backend']} ({why})")
    results["wall_s"] = round(time.time() - t_start, 1)
    print_table({"configs": {k: v for k, v in results["configs"].items() if "arms" in v}}, log)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="neurender bench kernels", description=__doc__)
    configure(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
