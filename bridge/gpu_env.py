"""The environment every process started for multi-GPU work gets: NVLink multicast (NVLS) off.

The render workers, DDP training ranks and the multi-GPU benchmark scripts all read it from here.
"""
from __future__ import annotations

MULTI_GPU_ENV: dict[str, str] = {"NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1",
                                 "NVSHMEM_DISABLE_NVLS": "1"}


def shell_exports() -> str:
    """`export K=V` lines for a shell script (`eval "$(python -c ...)"`)."""
    return "\n".join(f"export {k}={v}" for k, v in MULTI_GPU_ENV.items())
