"""Shared by tests/test_kernels_*.py: interpreter switch, the tolerance rule, a randomised tiny model.

TRITON_INTERPRET must be set before triton is imported (the kernels run on CPU tensors through the
interpreter in CI); the test modules import this file first.
"""
import os

os.environ["TRITON_INTERPRET"] = "1"

import torch  # noqa: E402

from kernels.selfcheck import atol_for, randomize_, tolerance  # noqa: E402,F401  (the self-check's own filler and rule)


def assert_rule(name, out, ref32, ref_same, rel_atol):
    """flash-attention rule: max|kernel - fp32_ref| <= 2 * max|torch_same_dtype - fp32_ref| + atol."""
    assert torch.isfinite(out).all(), f"{name}: non-finite output"
    scale = max(1.0, ref32.abs().max().item())
    err_k = (out.float() - ref32).abs().max().item()
    err_t = (ref_same.float() - ref32).abs().max().item()
    bound = tolerance(err_t, scale, rel_atol)
    assert err_k <= bound, f"{name}: kernel err {err_k:.3g} > bound {bound:.3g} (torch same-dtype err {err_t:.3g})"


def tiny_cfg(**kw):
    from neural_renderer.model.registry import GeneratorConfig

    base = dict(name="ktest", resolution=32, patch=8, dim=128, depth=2, heads=2, window=1, sinks=1)
    base.update(kw)
    return GeneratorConfig(**base)
