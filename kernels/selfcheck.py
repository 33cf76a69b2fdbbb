"""Random models, inputs and filled caches for checking a backend against the fp32 model, shared by
the tests, the backend self-check and the benchmark (timing does not depend on weight values, but a
check on zero-initialised adaLN/final layers would pass vacuously, so every weight gets a value)."""
from __future__ import annotations

import copy

import torch


def randomize_(model, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            v = torch.randn(p.shape, generator=g) * (0.5 / max(1, p.shape[-1]) ** 0.5 if p.dim() > 1 else 0.1)
            if name.endswith("norm.weight"):
                v = 1.0 + v
            p.copy_(v.to(p.device, p.dtype))
    return model


def random_inputs(cfg, B: int, device, dtype, seed: int = 1):
    """(x_noisy, cond, t, d, action, prompt) as CausalDiT.forward_frame takes them."""
    from bridge.channels import ACTION_DIM
    from neural_renderer.model.inputs import COND_CHANNELS, MATERIAL_CHANNEL
    from neural_renderer.model.dit import PROMPT_DIM

    g = torch.Generator().manual_seed(seed)
    R = cfg.resolution
    cond = torch.randn(B, COND_CHANNELS, R, R, generator=g)
    cond[:, MATERIAL_CHANNEL] = torch.randint(0, 32, (B, R, R), generator=g).float()
    out = (torch.randn(B, 3, R, R, generator=g), cond, torch.rand(B, generator=g), torch.rand(B, generator=g),
           torch.randn(B, ACTION_DIM, generator=g), torch.randn(B, PROMPT_DIM, generator=g))
    return tuple(t.to(device=device, dtype=dtype if i in (0, 1, 4, 5) else torch.float32) for i, t in enumerate(out))


def filled_cache(model, B: int, device, dtype, frames: int | None = None, seed: int = 2, tokens: int | None = None):
    """A KVCache in the model's layout holding random context, `frames` frames kept (default: full);
    `tokens` per frame (default: the config's square resolution)."""
    from neural_renderer.model.kv_cache import KVCache

    c = model.cfg
    cache = KVCache(c.depth, B, c.heads, tokens or c.tokens, c.window, c.sinks, device=device, dtype=dtype)
    g = torch.Generator().manual_seed(seed)
    cache.k.copy_(torch.randn(cache.k.shape, generator=g))
    cache.v.copy_(torch.randn(cache.v.shape, generator=g))
    n = len(cache.valid_table) - 1 if frames is None else frames
    cache.frames = n
    cache.valid.copy_(cache.valid_table[min(n, len(cache.valid_table) - 1)])
    return cache


def random_frame_inputs(cfg, B: int, height: int, width: int, device, dtype, seed: int = 1):
    """(x_noisy, cond, history, t, d, h, action, prompt) as HourglassGenerator.forward_frame takes them."""
    from bridge.channels import ACTION_DIM
    from neural_renderer.model.dit import PROMPT_DIM
    from neural_renderer.model.history import HISTORY_PLANES
    from neural_renderer.model.inputs import COND_CHANNELS, MATERIAL_CHANNEL

    g = torch.Generator().manual_seed(seed)
    cond = torch.randn(B, COND_CHANNELS, height, width, generator=g)
    cond[:, MATERIAL_CHANNEL] = torch.randint(0, 32, (B, height, width), generator=g).float()
    out = (torch.randn(B, 3, height, width, generator=g), cond, torch.randn(B, HISTORY_PLANES, height, width, generator=g),
           torch.rand(B, generator=g), torch.rand(B, generator=g), torch.rand(B, generator=g),
           torch.randn(B, ACTION_DIM, generator=g), torch.randn(B, PROMPT_DIM, generator=g))
    return tuple(t.to(device=device, dtype=torch.float32 if i in (3, 4, 5) else dtype) for i, t in enumerate(out))


BF16_ATOL = 2e-3  # relative to the reference's scale: the low-precision allowance of every kernel check


def atol_for(dtype) -> float:
    return 1e-5 if dtype == torch.float32 else BF16_ATOL


def tolerance(err_torch_same_dtype: float, ref_scale: float, atol: float = BF16_ATOL) -> float:
    """The flash-attention rule every kernel check uses: a kernel may be off the fp32 reference by
    twice what PyTorch itself is off in the same dtype, plus `atol` of the reference's scale."""
    return 2 * err_torch_same_dtype + atol * ref_scale


def max_err(out, ref) -> float:
    return (out.float() - ref.float()).abs().max().item()


def check_against_fp32(model, step_fn, B: int = 1, seed: int = 0, frames=None):
    """Run `step_fn(model_lowp, inputs, kernel-layout cache)` and the model in fp32 and in its own dtype.

    Returns (err_step, err_torch_same_dtype, ref_scale), to be judged by `tolerance`."""
    from kernels.fused_trunk import import_cache

    dev = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    m32 = copy.deepcopy(model).float()
    inp = random_inputs(model.cfg, B, dev, dtype, seed + 1)
    inp32 = tuple(t.float() for t in inp)
    with torch.no_grad():
        ref32 = m32.forward_frame(*inp32, filled_cache(m32, B, dev, torch.float32, frames, seed + 2))
        ref_same = model.forward_frame(*inp, filled_cache(model, B, dev, dtype, frames, seed + 2))
        kcache = import_cache(filled_cache(model, B, dev, dtype, frames, seed + 2))
        out = step_fn(inp, kcache)
    return max_err(out, ref32), max_err(ref_same, ref32), max(1.0, ref32.abs().max().item())


def check_frame_against_fp32(model, step_fn, height: int, width: int, kernel_layout: bool, B: int = 1,
                             seed: int = 0, frames=None):
    """The hourglass counterpart of `check_against_fp32`: `step_fn(inputs, cache)` (forward_frame's inputs,
    a filled cache in kernel layout when `kernel_layout`) against the model's own forward in fp32 and in its
    own dtype at height x width. Returns (err_step, err_torch_same_dtype, ref_scale)."""
    from kernels.fused_trunk import import_cache

    dev = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    m32 = copy.deepcopy(model).float()
    tokens = model.tokens_for(height, width)
    inp = random_frame_inputs(model.cfg, B, height, width, dev, dtype, seed + 1)
    inp32 = tuple(t.float() for t in inp)
    cache = lambda m, dt: filled_cache(m, B, dev, dt, frames, seed + 2, tokens)  # noqa: E731
    with torch.no_grad():
        ref32 = m32.forward_frame(*inp32, cache(m32, torch.float32))
        ref_same = model.forward_frame(*inp, cache(model, dtype))
        c = cache(model, dtype)
        out = step_fn(inp, import_cache(c) if kernel_layout else c)
    return max_err(out, ref32), max_err(ref_same, ref32), max(1.0, ref32.abs().max().item())
