"""A generator session's frame traffic (neural_renderer.serving.staging): the daemon reads an input slot
straight into the session's staging buffer (no packing on the host), arrays from elsewhere are packed,
both give the same device tensors in wire dtype, and the output is packed on the device into every
output format exactly as the reference formula says."""
import numpy as np
import pytest
import torch

from bridge.layout import SlotLayout
from bridge.shm import SlotIO
from neural_renderer.serving.staging import FrameIO

CHANNELS = {"color": "float16", "depth": "float32", "material_id": "uint16", "motion": "float16",
            "disocclusion": "uint8", "final": "uint8"}


def engine(H, W, seed=0):
    rng = np.random.default_rng(seed)
    return {"color": rng.random((H, W, 3)).astype(np.float16), "depth": rng.random((H, W, 1)).astype(np.float32) * 90,
            "material_id": rng.integers(0, 65535, (H, W, 1)).astype(np.uint16),
            "motion": rng.normal(size=(H, W, 2)).astype(np.float16),
            "disocclusion": (rng.random((H, W, 1)) > 0.5).astype(np.uint8), "final": np.zeros((H, W, 3), np.uint8)}


def expected(name, a):
    return torch.from_numpy(a.astype(np.int32)) if a.dtype == np.uint16 else torch.from_numpy(a.copy())


def test_shared_memory_views_and_arrays_go_up_in_wire_dtype(tmp_path):
    """Read-only views of a session's shared memory (what the daemon hands a renderer) and plain arrays give
    the same device tensors, in wire dtype (uint16 widened), with the action vector behind them."""
    H, W = 6, 10
    layout = SlotLayout.build(W, H, CHANNELS, "rgb8", slots=2)
    frame = engine(H, W)
    mem = bytearray(layout.size)
    for name, view in layout.input_views(mem, 1).items():
        view[...] = frame[name]
    io = SlotIO(memoryview(mem), layout)
    pixels = {k: v for k, v in io.read(1).items() if k != "final"}
    assert not any(v.flags.writeable for v in pixels.values())
    action = np.arange(9, dtype=np.float32)
    got, act = FrameIO("cpu", extra_bytes=36).upload(pixels, action)
    packed, act2 = FrameIO("cpu", extra_bytes=36).upload({k: frame[k] for k in pixels}, action)
    for name in pixels:
        assert got[name].shape == (H, W, frame[name].shape[-1])
        assert torch.equal(got[name], expected(name, frame[name])), name
        assert torch.equal(packed[name], expected(name, frame[name])), name
    assert torch.equal(act, torch.from_numpy(action)) and torch.equal(act2, act)
    frame["color"][...] = 0  # the device copy does not follow later writes to the source
    assert torch.equal(got["color"], expected("color", engine(H, W)["color"]))


@pytest.mark.parametrize("fmt,dtype,comps", [("rgb8", np.uint8, 3), ("rgba8", np.uint8, 4), ("rgb16f", np.float16, 3)])
def test_download_packs_every_output_format(fmt, dtype, comps):
    y = torch.linspace(-1.2, 1.2, 3 * 5 * 7).reshape(1, 3, 5, 7)
    out = np.full((5, 7, comps), 7, dtype)
    FrameIO.download(y, out)
    img = ((y[0] + 1) * 0.5).clamp(0, 1).permute(1, 2, 0).numpy()
    ref = (img * 255 + 0.5).astype(np.uint8) if dtype == np.uint8 else img.astype(np.float16)
    np.testing.assert_array_equal(out[..., :3], ref)
    if comps == 4:
        assert (out[..., 3] == 255).all()
    strided = np.zeros((5, 7, 4), dtype)[..., :comps]  # not contiguous: still written, through a host copy
    FrameIO.download(y, strided)
    np.testing.assert_array_equal(strided[..., :3], ref)
