"""The shipped architecture's rows of `neurender bench kernels`: ONE whole denoising step of one streamed frame
of the hourglass generator (`forward_frame`: conv encoder, trunk against a warm KV cache, conv decoder), bf16.

Arms: eager, torch.compile default and max-autotune-no-cudagraphs, then every serving arm's own step
(neural_renderer.serving.arm_table.ArmStep, what the daemon runs) in a CUDA graph as the daemon's sampler
replays it: `graph` (the manual CUDA graph of the eager model), `graph+channels-last`, `fused` (the trunk as
fused Triton ops), `fused+channels-last`, `megakernel` (the trunk as one persistent launch per step); on
--variant-configs also the megakernel without its L2 prefetch of the next task's weights. The whole-frame arms
(`frame-graph*`) run these same steps inside a larger graph, so they have no row of their own.

The roofline floor of the whole step (`step_cost`): every FLOP of the convolutions and of the trunk at the card's
measured bf16 matrix rate, against the bytes a step cannot avoid moving at its measured copy bandwidth (the
weights once, the frame's inputs read and its output written once, the keys and values of every cache slot read
and the current slot's written); the larger of the two. A second floor adds every convolution's output written
once and read once (what a layer-by-layer execution moves at least).
"""
from __future__ import annotations

from neural_renderer.commands.bench_kernels_common import ArmSpec, Subject, compile_arms, graphed

SERVING_ARMS = ("eager", "graph", "graph+channels-last", "fused", "fused+channels-last", "megakernel")


def configs():
    """The shipped `base`, two larger ones (trunk 512 x 12 and 768 x 16 with conv levels as much wider) at the
    shipped 512x512 frame and cache (2 window frames + 1 sink + the current), and `hg-micro` for CPU smoke runs."""
    import dataclasses

    from neural_renderer.model.registry import MODELS

    base = MODELS["base"]()
    return {
        "base": base,
        "hg-d512x12": dataclasses.replace(base, name="hg-d512x12", dim=512, depth=12, heads=8,
                                          widths=(32, 64, 128, 256)),
        "hg-d768x16": dataclasses.replace(base, name="hg-d768x16", dim=768, depth=16, heads=12,
                                          widths=(48, 96, 192, 384)),
        "hg-micro": MODELS["hg-micro"](),
    }


def step_cost(model, height: int, width: int, batch: int = 1, elem_bytes: int = 2) -> dict:
    """FLOPs and bytes of one step at height x width against a full cache. Convolutions and linear layers are
    counted from their actual output shapes (forward hooks on one forward on the meta device: nothing is computed):
    2 x output elements x (input channels / groups) x kernel area; 2 x rows x in x out. Attention (not a module)
    by hand: 4 x tokens x keys x 64 per head and layer, keys = every slot's tokens.
    conv_flops: every Conv2d; trunk_flops: the blocks' linear layers and attention; other_flops: the rest (the
    conditioning MLPs, FiLM linears; one row per frame)."""
    import torch

    from neural_renderer.model.dit import HEAD_DIM
    from neural_renderer.model.history import HISTORY_PLANES
    from neural_renderer.model.kv_cache import KVCache
    from kernels.selfcheck import random_frame_inputs

    from neural_renderer.model.registry import build

    c = model.cfg
    with torch.device("meta"):
        meta = build(c).eval()
    counts = {"conv": 0, "trunk": 0, "other": 0, "conv_out_elems": 0}
    trunk = {id(m) for m in meta.blocks.modules()}

    def hook(mod, inp, out):
        if isinstance(mod, torch.nn.Conv2d):
            k = mod.in_channels // mod.groups * mod.kernel_size[0] * mod.kernel_size[1]
            counts["conv"] += 2 * out.numel() * k
            counts["conv_out_elems"] += out.numel()
        else:
            counts["trunk" if id(mod) in trunk else "other"] += 2 * out.numel() * mod.in_features

    handles = [m.register_forward_hook(hook) for m in meta.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    T = model.tokens_for(height, width)
    cache = KVCache(c.depth, batch, c.heads, T, c.window, c.sinks, device="meta")
    inp = random_frame_inputs(c, batch, height, width, "cpu", torch.float32)
    with torch.no_grad():
        meta.forward_frame(*(t.to("meta") for t in inp), cache)
    for h in handles:
        h.remove()
    keys = c.slots * T
    counts["trunk"] += 4 * batch * T * keys * HEAD_DIM * c.heads * c.depth
    weight_bytes = elem_bytes * sum(p.numel() for p in model.parameters())
    io_bytes = elem_bytes * batch * height * width * (3 + model.cond_planes + HISTORY_PLANES + 3)
    kv_bytes = elem_bytes * 2 * c.depth * batch * c.dim * (keys + T)  # every slot read, the current one written
    return dict(conv_flops=counts["conv"], trunk_flops=counts["trunk"], other_flops=counts["other"],
                flops=counts["conv"] + counts["trunk"] + counts["other"], weight_bytes=weight_bytes,
                io_bytes=io_bytes, kv_bytes=kv_bytes, conv_act_bytes=elem_bytes * 2 * counts["conv_out_elems"])


def floor(model, size, ceilings, batch: int = 1) -> dict:
    bw, rate = ceilings
    cost = step_cost(model, *size, batch)
    must = cost["weight_bytes"] + cost["io_bytes"] + cost["kv_bytes"]
    return dict(**cost, floor_ms=1e3 * max(must / bw, cost["flops"] / rate),
                floor_layerwise_ms=1e3 * max((must + cost["conv_act_bytes"]) / bw, cost["flops"] / rate),
                floor_bound="compute" if cost["flops"] / rate >= must / bw else "memory")


def prepare(name, cfg, device, batch: int = 1) -> Subject:
    import copy

    import torch

    from kernels.fused_trunk import import_cache
    from kernels.selfcheck import filled_cache, max_err, random_frame_inputs, randomize_
    from neural_renderer.model.registry import build

    m32 = randomize_(build(cfg)).to(device).eval()
    model = copy.deepcopy(m32).to(torch.bfloat16).eval()
    H = W = cfg.resolution
    tokens = model.tokens_for(H, W)
    inp = random_frame_inputs(cfg, batch, H, W, device, torch.bfloat16)
    cache = lambda m, dt: filled_cache(m, batch, device, dt, None, tokens=tokens)  # noqa: E731  (full: warm)
    with torch.no_grad():
        ref32 = m32.forward_frame(*(t.float() for t in inp), cache(m32, torch.float32))
        same = model.forward_frame(*inp, cache(model, torch.bfloat16))
    del m32

    def new_cache(kernel_layout):
        c = cache(model, torch.bfloat16)
        return import_cache(c) if kernel_layout else c

    return Subject(name, cfg, model, inp, ref32, max_err(same, ref32), max(1.0, ref32.abs().max().item()),
                   new_cache, device)


def _serving(model, name, inp, dev):
    """`make` for serving arm `name`: its ArmStep on a copy of the model (an arm may convert its model), in a
    CUDA graph when the arm is one (the daemon's sampler replays its step that way)."""
    import copy

    from neural_renderer.serving.arm_table import ARMS, ArmStep

    arm = ARMS[name]

    def make(cache):
        step = ArmStep(copy.deepcopy(model), arm)
        run = lambda: step(*inp, cache)  # noqa: E731
        fn = graphed(run, (step, cache), dev) if arm.cuda_graph else run
        trunk = step.trunk
        if hasattr(trunk, "poison"):
            fn.poison, fn.spin_flag, fn.info = trunk.poison, trunk.spin_flag, trunk.build_info
        return fn
    return make


def arms(s: Subject, args, res: dict) -> list[ArmSpec]:
    from kernels.megakernel_trunk import MegakernelTrunk

    model, inp, dev = s.model, s.inputs, s.device
    out = [ArmSpec("eager", _serving(model, "eager", inp, dev), serving="eager")]
    out += compile_arms(model, inp, args)
    for name in SERVING_ARMS[1:]:
        fused = "fused" in name or name == "megakernel"
        out.append(ArmSpec(name, _serving(model, name, inp, dev), kernel_layout=fused, serving=name,
                           cuda_only=name.startswith("graph")))
    if s.name in args.variant_configs.split(","):
        def no_prefetch(cache):
            trunk = MegakernelTrunk(model, prefetch=False)
            fn = graphed(lambda: model.forward_frame(*inp, cache, trunk=trunk), (trunk, cache), dev)
            fn.poison, fn.spin_flag, fn.info = trunk.poison, trunk.spin_flag, trunk.build_info
            return fn
        out.append(ArmSpec("megakernel, no prefetch", no_prefetch, kernel_layout=True, cuda_only=True, extra=True,
                           est_s=60))
    return out


def summarize(res: dict) -> None:
    """The serving arm `--kernels auto` would pick by these step times (the fastest that passed; the daemon
    itself times whole frames at start), its ratio to the floor, and the megakernel against the fused trunk."""
    ms = {k: v["ms"] for k, v in res["arms"].items() if "ms" in v}
    serving = {v["serving_arm"]: ms[k] for k, v in res["arms"].items() if v.get("serving_arm") and k in ms}
    best = min(serving, key=serving.get) if serving else None
    f = res["floor_ms"]
    res["default_arm"] = best
    res["ratios"] = {
        "default_over_floor": serving[best] / f if best else None,
        "megakernel_vs_fused": ms["fused"] / ms["megakernel"] if "fused" in ms and "megakernel" in ms else None,
        "fused_vs_graph": ms["graph"] / ms["fused"] if "graph" in ms and "fused" in ms else None,
        "prefetch_gain": (ms["megakernel, no prefetch"] / ms["megakernel"]
                          if "megakernel" in ms and "megakernel, no prefetch" in ms else None),
        "over_floor": {k: v / f for k, v in ms.items()},
    }
