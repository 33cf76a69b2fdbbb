"""The first architecture's rows of `neurender bench kernels` (CausalDiT, kept for its checkpoints and for the
megakernel's history): one denoising step, arms eager, torch.compile default and max-autotune-no-cudagraphs, a
CUDA graph of the eager model, the fused ops (kernels.fused_model) and the megakernel (kernels.megakernel), each
in a CUDA graph, with the megakernel's variants (no L2 prefetch, cooperative launch) on --variant-configs."""
from __future__ import annotations

from neural_renderer.commands.bench_kernels_common import ArmSpec, Subject, compile_arms, graphed


def configs():
    from neural_renderer.model.registry import MODELS, GeneratorConfig

    return {
        "dit-base": MODELS["dit-base"](),
        # 1024 current tokens attending to 3 x 1024 cached keys (+ their own): a large deployment shape
        "d512x12": GeneratorConfig("d512x12", resolution=512, patch=16, dim=512, depth=12, heads=8, window=2, sinks=1),
        "d768x16": GeneratorConfig("d768x16", resolution=512, patch=16, dim=768, depth=16, heads=12, window=2,
                                   sinks=1),
        "micro": MODELS["micro"](),  # CPU smoke runs
    }


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


def floor(model, ceilings) -> dict:
    w_bytes, kv_bytes, flops = step_cost(model)
    bw, rate = ceilings
    return dict(weight_bytes=w_bytes, kv_bytes=kv_bytes, flops=flops,
                floor_ms=1e3 * max(w_bytes / bw, flops / rate),
                floor_with_kv_ms=1e3 * max((w_bytes + kv_bytes) / bw, flops / rate))


def prepare(name, cfg, device, batch: int = 1) -> Subject:
    import copy

    import torch

    from kernels.fused_model import import_cache
    from kernels.selfcheck import filled_cache, max_err, random_inputs, randomize_
    from neural_renderer.model.dit import CausalDiT

    m32 = randomize_(CausalDiT(cfg)).to(device).eval()
    model = copy.deepcopy(m32).to(torch.bfloat16).eval()
    inp = random_inputs(cfg, batch, device, torch.bfloat16)
    with torch.no_grad():
        ref32 = m32.forward_frame(*(t.float() for t in inp), filled_cache(m32, batch, device, torch.float32))
        same = model.forward_frame(*inp, filled_cache(model, batch, device, torch.bfloat16))
    del m32

    def new_cache(kernel_layout):
        cache = filled_cache(model, batch, device, torch.bfloat16)
        return import_cache(cache) if kernel_layout else cache

    return Subject(name, cfg, model, inp, ref32, max_err(same, ref32), max(1.0, ref32.abs().max().item()),
                   new_cache, device)


def arms(s: Subject, args, res: dict) -> list[ArmSpec]:
    import torch

    from kernels.fused_model import FusedStep
    from kernels.megakernel import MegakernelStep

    model, inp, dev, B = s.model, s.inputs, s.device, args.batch
    out = [ArmSpec("eager", lambda cache: (lambda: model.forward_frame(*inp, cache)))]
    out += compile_arms(model, inp, args)
    out.append(ArmSpec("cuda graph (eager)", lambda cache: graphed(lambda: model.forward_frame(*inp, cache),
                                                                   (model, cache), dev), cuda_only=True))

    def fused(cache):
        fs = FusedStep(model)
        return graphed(lambda: fs(*inp, cache), (fs, cache), dev)

    out.append(ArmSpec("fused ops + cuda graph", fused, kernel_layout=True))

    def mega(prefetch, cooperative, **kw):
        def make(cache):
            mk = MegakernelStep(model, batch=B, prefetch=None if prefetch else False, **kw)  # None: on where it can be
            mk(*inp, cache)  # first launch: co-residency check + compile, outside the capture
            if dev.type == "cuda":
                torch.cuda.synchronize()
            if cooperative:
                mk.cooperative = True
                mk(*inp, cache)
            fn = graphed(lambda: mk(*inp, cache), (mk, cache), dev)

            def poison():  # every intermediate buffer too: stale values from an earlier launch would match
                for b in (mk.out, mk.x, mk.q, mk.a, mk.h, mk.mod):
                    b.fill_(float("nan"))
            fn.poison = poison
            fn.spin_flag = lambda: int(mk.err.item())  # a timed-out wait during timing voids the time
            fn.info = lambda: getattr(mk, "compiled_info", None)
            return fn
        return make

    out.append(ArmSpec("megakernel + cuda graph", mega(True, False), kernel_layout=True))
    out.append(ArmSpec("megakernel 32-row tiles", mega(True, False, block_m=32, att_split=1), kernel_layout=True))
    if s.name in args.variant_configs.split(","):
        out.append(ArmSpec("megakernel, no prefetch", mega(False, False), kernel_layout=True, extra=True, est_s=60,
                           cuda_only=True))
        out.append(ArmSpec("megakernel cooperative", mega(True, True), kernel_layout=True, extra=True, est_s=30,
                           cuda_only=True))
    return out


def summarize(res: dict) -> None:
    """The ratios the DiT rows were judged by."""
    ms = {k: v["ms"] for k, v in res["arms"].items() if "ms" in v}
    best_compile = min([ms[k] for k in ms if k.startswith("compile")], default=None)
    mk_ms = min([ms[k] for k in ms if k.startswith("megakernel")], default=None)
    g = ms.get("cuda graph (eager)")
    res["ratios"] = {
        "megakernel_vs_cuda_graph_eager": g / mk_ms if g and mk_ms else None,
        "megakernel_vs_best_compile": best_compile / mk_ms if best_compile and mk_ms else None,
        "megakernel_over_floor": mk_ms / res["floor_ms"] if mk_ms else None,
        "fused_vs_cuda_graph_eager": g / ms["fused ops + cuda graph"] if g and "fused ops + cuda graph" in ms else None,
    }
