"""Triton kernels for the generator hot path, each with its plain PyTorch reference beside it.

Light at import: `select_backend(device) -> "megakernel" | "fused" | "eager"` imports torch/triton
only when called.
"""


def select_backend(device) -> str:
    from kernels.step_builder import select_backend as _select

    return _select(device)
