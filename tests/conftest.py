"""Fixtures shared across the test files.

`one_thread`: torch on one intra-op thread for the test (CI has 2 cores; the threads of tiny matmuls
only fight each other and the other processes a test starts).
Triton is imported first, before any test loads Mesa's EGL (the other order crashes the process).
`gl_context`: one headless OpenGL context (Mesa EGL on CI) for the whole session; creating one costs
a noticeable fraction of a second and a test never needs a fresh one.
"""
from __future__ import annotations

import os

import pytest

# Triton reads TRITON_INTERPRET when it is imported (the kernel tests run through its interpreter on CPU
# tensors, tests/_kernels_helpers.py), and it is imported here first: Triton's import after Mesa's EGL
# driver is loaded segfaults in its LLVM; before it, both work.
os.environ.setdefault("TRITON_INTERPRET", "1")
try:
    import triton  # noqa: F401
except ImportError:  # the GPU-less paths do not need it
    pass


@pytest.fixture
def one_thread():
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def gl_context():
    from demos.gl import create_context, release_context

    ctx = create_context(headless=True)
    yield ctx
    release_context(ctx)
