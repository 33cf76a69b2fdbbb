"""The Unity layer's GPU pack kernels (unity_client/Runtime/Resources/Neurender/NeurenderPack.compute),
run for real: compiled from the package's HLSL by glslang, translated by spirv-cross, executed by
Mesa llvmpipe through moderngl (tests/_unity_hlsl.py). Each kernel turns a captured channel texture into
the protocol's bytes: (H, W, C) of the declared dtype, little-endian, row 0 = top of the screen (the
texture's last row when _FlipY is set). Checked byte for byte against numpy over a grid of sizes and
component counts chosen to hit partial last words, with the row flip on and off, through the 2D dispatch
path, and with the words past the end left untouched."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from _unity_hlsl import kernel_to_glsl

PACK = Path(__file__).resolve().parents[1] / "unity_client" / "Runtime" / "Resources" / "Neurender" / "NeurenderPack.compute"
KERNELS = {"PackF32": ("<f4", 4), "PackF16": ("<f2", 2), "PackU8": ("u1", 1)}
CANARY = 0xAB


@pytest.fixture(scope="module")
def gl():
    import moderngl
    ctx = moderngl.create_standalone_context(backend="egl", require=430)
    yield ctx
    ctx.release()


@pytest.fixture(scope="module")
def programs(gl, tmp_path_factory):
    work = tmp_path_factory.mktemp("unity_hlsl")
    out = {}
    for kernel in KERNELS:
        src = kernel_to_glsl(PACK, kernel, work)
        block = re.search(r"uniform \w+\s*\{([^}]*)\}", src).group(1)
        members = re.findall(r"uint (\w+);", block)  # std140: consecutive uints, 4 bytes apart
        sampler = re.search(r"uniform sampler2D (\w+);", src).group(1)
        out[kernel] = (gl.compute_shader(src), members, sampler)
    return out


def _texture_values(rng, kernel: str, h: int, w: int) -> np.ndarray:
    """(H, W, 4) float32 that each dtype represents exactly (no rounding-mode ambiguity between GPUs)."""
    if kernel == "PackF16":
        return rng.normal(0, 100, (h, w, 4)).astype(np.float16).astype(np.float32)
    if kernel == "PackU8":  # (k + 0.25 or 0.75) / 255: well inside a rounding bucket, on both sides of
        # the half that + 0.5 rounds at; plus values the kernel must clip
        v = (rng.integers(0, 256, (h, w, 4)) + rng.choice([0.25, 0.75], (h, w, 4))) / 255.0
        v[rng.random((h, w, 4)) < 0.1] = -0.3
        v[rng.random((h, w, 4)) < 0.1] = 1.7
        return v.astype(np.float32)
    return rng.normal(0, 1e3, (h, w, 4)).astype(np.float32)


def _run(gl, programs, kernel, tex_vals, components, flip, groups_x):
    prog, members, sampler = programs[kernel]
    h, w, _ = tex_vals.shape
    dtype, size = KERNELS[kernel]
    nbytes = w * h * components * size
    words = (nbytes + 3) // 4
    tex = gl.texture((w, h), 4, tex_vals.tobytes(), dtype="f4")  # data row 0 = texel row 0
    tex.filter = (gl.NEAREST, gl.NEAREST)
    ssbo = gl.buffer(bytes([CANARY]) * ((words + 16) * 4))
    params = {"_Width": w, "_Height": h, "_Components": components, "_Words": words, "_GroupsX": groups_x,
              "_FlipY": int(flip)}
    ubo = gl.buffer(np.array([params[m] for m in members] + [0] * 4, "<u4").tobytes())
    tex.use(0)
    prog[sampler] = 0
    ubo.bind_to_uniform_block(0)
    ssbo.bind_to_storage_buffer(0)
    groups = (words + 63) // 64
    prog.run(min(groups, groups_x), (groups + groups_x - 1) // groups_x, 1)
    gl.finish()
    data = ssbo.read()
    for o in (tex, ssbo, ubo):
        o.release()
    return data, nbytes, words


def _reference(kernel, tex_vals, components, flip) -> bytes:
    img = tex_vals[::-1] if flip else tex_vals
    vals = img[..., :components].reshape(-1)
    if kernel == "PackU8":
        return (np.clip(vals, 0, 1) * np.float32(255) + np.float32(0.5)).astype(np.uint8).tobytes()
    return vals.astype(KERNELS[kernel][0]).tobytes()


# (H, W, components): odd element counts (float16 tail half), counts not divisible by 4 (uint8 tail
# bytes), one row, one column, and one size big enough for several 64-thread groups.
SHAPES = [(3, 5, 1), (4, 7, 3), (5, 6, 2), (2, 9, 3), (1, 13, 3), (11, 1, 2), (17, 23, 3)]


@pytest.mark.parametrize("kernel", list(KERNELS))
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_pack_kernel_matches_numpy(gl, programs, kernel, shape):
    h, w, comps = shape
    rng = np.random.default_rng(h * 1000 + w * 10 + comps)
    tex_vals = _texture_values(rng, kernel, h, w)
    for flip in (True, False):
        data, nbytes, words = _run(gl, programs, kernel, tex_vals, comps, flip, groups_x=1024)
        ref = _reference(kernel, tex_vals, comps, flip)
        assert data[:nbytes] == ref, f"{kernel} {shape} flip={flip}: first bad byte " \
            f"{next(i for i in range(nbytes) if data[i] != ref[i])}"
        assert data[nbytes:words * 4] == bytes(words * 4 - nbytes), "the last word's padding must be zero"
        assert data[words * 4:] == bytes([CANARY]) * (len(data) - words * 4), "wrote past _Words"


def test_pack_kernel_two_dimensional_dispatch(gl, programs):
    """Large images need more than 65535 groups in x; the kernel then runs as (GroupsX, rows of groups)."""
    rng = np.random.default_rng(7)
    tex_vals = _texture_values(rng, "PackF16", 40, 50)
    data, nbytes, _ = _run(gl, programs, "PackF16", tex_vals, 3, True, groups_x=2)
    assert data[:nbytes] == _reference("PackF16", tex_vals, 3, True)
