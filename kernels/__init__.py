"""Triton kernels for the generator hot path, each with its plain PyTorch reference beside it."""
