"""`neurender bench kernels --json PATH`: every way of running one denoising step, side by side.

Default: the shipped hourglass generator (`base`) and two larger hourglass configs, one whole step of one
streamed 512x512 frame against a warm KV cache, bf16 (neural_renderer.commands.bench_kernels_hourglass); the
first architecture's configs (`dit-base`, `d512x12`, `d768x16`: bench_kernels_dit) on request.
Every arm is checked against the fp32 model before it is timed and again after (tolerance rule of the kernel
tests, the bf16 eager model as the same-dtype torch reference; output and the cache's current slot poisoned
with NaN first). Median ms per step (triton.testing.do_bench, L2 flushed before every rep), its ratio to the
roofline floor of the whole step (the card's measured copy bandwidth and bf16 matrix rate), and which serving
arm these times make the default.

Order: first every config's core arms (eager, the CUDA-graph and kernel arms), then, while the wall-clock
budget lasts, the torch.compile arms and the ablations (each skipped, and said so, when its expected setup
time no longer fits). `--device cpu` runs a smoke pass on the CPU (Triton kernels under the interpreter,
`hg-micro` by default; CUDA-graph and compile arms skipped).
"""
from __future__ import annotations

import argparse
import os
import time

from neural_renderer.commands import bench_kernels_dit as dit, bench_kernels_hourglass as hg
from neural_renderer.commands.bench_kernels_common import (BUDGET_NOTE, dump, graph_of, measure_ceilings,  # noqa: F401
                                                           run_arm, skip)

HOURGLASS = ("base", "hg-d512x12", "hg-d768x16")
DIT = ("dit-base", "d512x12", "d768x16")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", metavar="PATH", help="write the full results here")
    parser.add_argument("--configs", default=None,
                        help=f"comma-separated subset of {', '.join(HOURGLASS + DIT)}, hg-micro, micro "
                             f"(default: {','.join(HOURGLASS)}; on --device cpu: hg-micro)")
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu (a smoke run under the Triton "
                                                         "interpreter)")
    parser.add_argument("--arms", default="all", help="comma-separated arm labels to run (default: all)")
    parser.add_argument("--budget-s", type=float, default=170.0,
                        help="wall-clock budget: compile arms and ablations that would not fit are skipped (default "
                             "170: with the last arm's overrun, about 4 minutes in all)")
    parser.add_argument("--compile-est-s", type=float, default=45.0,
                        help="expected torch.compile default setup per config, for the budget (default 45)")
    parser.add_argument("--autotune-est-s", type=float, default=150.0,
                        help="expected max-autotune compile time per config, for the budget (default 150)")
    parser.add_argument("--autotune-configs", default="base",
                        help="configs that get the max-autotune arm at all (default: base)")
    parser.add_argument("--no-compile", action="store_true", help="skip both torch.compile arms")
    parser.add_argument("--compile-configs", default=",".join(HOURGLASS + DIT),
                        help="configs that get the torch.compile arms (default: all)")
    parser.add_argument("--variant-configs", default="base,dit-base",
                        help="configs that also get the megakernel ablations: no L2 prefetch (and, for the DiT, "
                             "cooperative launch) (default: base, dit-base)")
    parser.add_argument("--batch", type=int, default=1)


def _arch(name):
    return hg if name in hg.configs() else dit


def _extra_skip(spec, name, args, deadline):
    """Why an extra arm (torch.compile, ablation) does not run here, or None."""
    if spec.label.startswith("compile"):
        if args.no_compile or name not in args.compile_configs.split(","):
            return "not in --compile-configs"
        if "autotune" in spec.label and name not in args.autotune_configs.split(","):
            return "not in --autotune-configs (call budget)"
    if time.time() + spec.est_s > deadline:
        return f"setup estimate {spec.est_s:.0f}s {BUDGET_NOTE}"
    return None


def run(args) -> int:
    dev_name = args.device
    if dev_name == "cpu":
        os.environ.setdefault("TRITON_INTERPRET", "1")  # before triton is imported: the kernels run on CPU tensors
    import torch
    import triton

    if dev_name != "cpu" and not torch.cuda.is_available():
        print("bench kernels needs a CUDA GPU (or --device cpu for a smoke run under the Triton interpreter)")
        return 2
    t_start = time.time()
    deadline = t_start + args.budget_s
    log = lambda s: print(s, flush=True)  # noqa: E731
    dev = torch.device(dev_name)
    cpu = dev.type == "cpu"
    if cpu:
        name_dev, sms = "cpu (smoke run, Triton interpreter)", 0
    else:
        props = torch.cuda.get_device_properties(dev)
        name_dev, sms = props.name, props.multi_processor_count
    bw, rate = measure_ceilings(dev)
    log(f"{name_dev}: {sms} SMs, copy {bw / 1e12:.3g} TB/s, bf16 matmul {rate / 1e12:.3g} TFLOP/s")
    results = {"date": time.strftime("%Y-%m-%d", time.gmtime()), "device": name_dev, "torch": torch.__version__,
               "triton": triton.__version__, "sms": sms, "copy_bytes_per_s": bw, "bf16_flops_per_s": rate,
               "timing": ("triton.testing.do_bench median, L2 flushed before each rep" if not cpu else
                          "median of 2 calls after 1 (CPU smoke run: not a measurement)"),
               "configs": {}}
    names = [c.strip() for c in (args.configs or ("hg-micro" if cpu else ",".join(HOURGLASS))).split(",") if c.strip()]
    known = {**hg.configs(), **dit.configs()}
    for name in names:
        if name not in known:
            raise SystemExit(f"unknown config {name!r}; choose from {', '.join(known)}")
    wanted = None if args.arms == "all" else {a.strip() for a in args.arms.split(",")}
    save = lambda: dump(results, args.json)  # noqa: E731
    subjects, extras = {}, []
    for name in names:  # pass 1: every config's core arms
        res = results["configs"][name] = {"config_name": name, "arch": known[name].arch, "arms": {}}
        mod, cfg = _arch(name), known[name]
        try:
            s = subjects[name] = mod.prepare(name, cfg, dev, args.batch)
        except Exception as e:  # noqa: BLE001
            res["error"] = f"{type(e).__name__}: {str(e)[:400]}"
            log(f"  {name}: could not build: {res['error']}")
            continue
        R = cfg.resolution
        res.update(config=cfg.to_dict(), size=[R, R], batch=args.batch, steps=cfg.steps,
                   forwards_per_frame=cfg.steps + 1, err_bf16_eager=s.err_same,
                   **(hg.floor(s.model, (R, R), (bw, rate), args.batch) if mod is hg else dit.floor(s.model, (bw, rate))))
        for spec in mod.arms(s, args, res):
            if wanted is not None and spec.label not in wanted:
                continue
            if spec.cuda_only and cpu:
                skip(res, spec, "needs CUDA (CPU smoke run)", log)
            elif spec.extra:
                extras.append((name, spec))
                res["arms"][spec.label] = {"pass": False, "skipped": "pending (second pass)"}
            else:
                run_arm(s, spec, res, log)
            save()
    extras.sort(key=lambda e: e[1].est_s)  # pass 2, cheapest first (compile default before max-autotune) ...
    for name, spec in extras:  # ... torch.compile and the ablations, while the budget lasts
        res = results["configs"][name]
        why = _extra_skip(spec, name, args, deadline)
        if why:
            skip(res, spec, why, log)
        else:
            run_arm(subjects[name], spec, res, log)
        save()
    for name in subjects:
        res = results["configs"][name]
        ms = {k: v["ms"] for k, v in res["arms"].items() if "ms" in v}
        for k in ms:
            res["arms"][k]["ms_per_frame"] = ms[k] * res["forwards_per_frame"]
            res["arms"][k]["over_floor"] = ms[k] / res["floor_ms"]
        _arch(name).summarize(res)
    if not cpu and any(_arch(n) is dit for n in subjects):  # the DiT backend's self-check: after the numbers are on disk
        from kernels.step_builder import megakernel_self_check, select_backend

        ok, why = megakernel_self_check(dev)
        results["dit_backend"] = {"select_backend": select_backend(dev), "self_check": why}
    results["wall_s"] = round(time.time() - t_start, 1)
    print_table(results, log)
    save()
    return 0


def print_table(results, log):
    log("")
    log(f"{'config':11s} {'arm':34s} {'ms/step':>8s} {'x floor':>8s} {'ms/frame':>9s} {'max err':>9s}")
    for name, r in results["configs"].items():
        if "arms" not in r or "floor_ms" not in r:
            continue
        for label, a in r["arms"].items():
            ms = f"{a['ms']:8.3f}" if "ms" in a else "       -"
            xf = f"{a['over_floor']:7.1f}x" if "over_floor" in a else "       -"
            mf = f"{a['ms_per_frame']:9.3f}" if "ms_per_frame" in a else "        -"
            err = f"{a['max_err']:9.2e}" if "max_err" in a else "        -"
            why = "" if a.get("pass") else a.get("skipped", a.get("error", a.get("note", "")))[:70]
            log(f"{name:11s} {label:34s} {ms} {xf} {mf} {err}  {why}")
        extra = (f"(layer by layer {r['floor_layerwise_ms']:.3f}; {r['flops'] / 1e9:.1f} GFLOP, {r['floor_bound']}-bound)"
                 if "floor_layerwise_ms" in r else f"(with KV reads {r['floor_with_kv_ms']:.3f})")
        log(f"{name:11s} {'roofline floor (whole step)':34s} {r['floor_ms']:8.3f}   {extra}")
        rt = r.get("ratios", {})
        fmt = lambda v: f"{v:.2f}x" if v else "n/a"  # noqa: E731
        if "default_arm" in r:
            log(f"{name:11s} default serving arm by these times: {r['default_arm']} "
                f"({fmt(rt.get('default_over_floor'))} the floor); megakernel vs fused {fmt(rt.get('megakernel_vs_fused'))}, "
                f"fused vs graph {fmt(rt.get('fused_vs_graph'))}, L2 prefetch gain {fmt(rt.get('prefetch_gain'))}")
        else:
            log(f"{name:11s} megakernel vs CUDA-graphed eager {fmt(rt.get('megakernel_vs_cuda_graph_eager'))}, "
                f"vs best compile {fmt(rt.get('megakernel_vs_best_compile'))}, over floor "
                f"{fmt(rt.get('megakernel_over_floor'))}; fused vs CUDA-graphed eager {fmt(rt.get('fused_vs_cuda_graph_eager'))}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="neurender bench kernels", description=__doc__)
    configure(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
