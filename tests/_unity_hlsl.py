"""Run the Unity package's HLSL compute shader without Unity or a GPU: glslang's HLSL front end
compiles one kernel to SPIR-V, spirv-cross turns that into GLSL 4.30, and moderngl runs it on
Mesa llvmpipe (EGL). The shader source is the package's own file; only `#pragma kernel` lines
(Unity's, not HLSL's) are dropped."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

TOOLS = ("glslangValidator", "spirv-cross")


def require_tools() -> None:
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        raise RuntimeError(f"{', '.join(missing)} not found: apt-get install glslang-tools spirv-cross "
                           "(.ci/setup does)")


def kernel_to_glsl(compute_file: Path, kernel: str, work_dir: Path) -> str:
    require_tools()
    src = compute_file.read_text()
    assert re.search(rf"^#pragma kernel {kernel}\b", src, re.M), f"{kernel} is not a kernel of {compute_file.name}"
    hlsl = work_dir / f"{kernel}.hlsl"
    hlsl.write_text(re.sub(r"^#pragma kernel .*$", "", src, flags=re.M))
    spv = work_dir / f"{kernel}.spv"
    r = subprocess.run(["glslangValidator", "-D", "-S", "comp", "-e", kernel, "-V", str(hlsl), "-o", str(spv)],
                       capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise RuntimeError(f"glslangValidator failed on {kernel}:\n{r.stdout}{r.stderr}")
    r = subprocess.run(["spirv-cross", str(spv), "--version", "430", "--no-es"], capture_output=True, text=True,
                       timeout=60)
    if r.returncode != 0:
        raise RuntimeError(f"spirv-cross failed on {kernel}:\n{r.stdout}{r.stderr}")
    return r.stdout
