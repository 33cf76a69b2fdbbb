"""The fused trunk (kernels.fused_trunk) and the megakernel trunk (kernels.megakernel_trunk) inside the hourglass
generator against the model's own PyTorch blocks, under the kernel tolerance rule: the frame it predicts and the
keys/values it writes into the cache's current slot, at a square size and at non-square ones (one not a multiple of
the trunk's factor, one whose token count leaves the megakernel's last row block part empty), with a full cache,
one frame of history and none."""
import _kernels_helpers as H  # noqa: F401  (sets TRITON_INTERPRET before triton is imported)

import pytest  # noqa: E402
import torch  # noqa: E402

from kernels.fused_trunk import FusedTrunk, export_keys, import_cache  # noqa: E402
from kernels.megakernel_trunk import MegakernelTrunk  # noqa: E402
from kernels.selfcheck import filled_cache, random_frame_inputs  # noqa: E402
from _models import randomised  # noqa: E402


TRUNKS = {  # small tiles: the interpreter's time grows with the tile, not with what the tile masks off
    "fused": lambda m: FusedTrunk(m, block_m=16, attn_block_n=16),
    "megakernel": lambda m: MegakernelTrunk(m, block_m=16, att_split=1, attn_block_n=16),
}


@pytest.mark.parametrize("trunk", list(TRUNKS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("size,frames", [((32, 32), None), ((24, 40), 1), ((20, 36), 0)])
def test_trunk_matches_the_plain_path(trunk, dtype, size, frames):
    m32 = randomised("hg-micro", seed=3)
    model = randomised("hg-micro", seed=3).to(dtype)
    Hh, W = size
    tokens = model.tokens_for(Hh, W)
    inp = random_frame_inputs(model.cfg, 1, Hh, W, "cpu", dtype, seed=5)
    cache = lambda m, dt: filled_cache(m, 1, "cpu", dt, frames, seed=7, tokens=tokens)  # noqa: E731
    c32, c_same = cache(m32, torch.float32), cache(model, dtype)
    kcache = import_cache(cache(model, dtype))
    with torch.no_grad():
        ref32 = m32.forward_frame(*(t.float() for t in inp), c32)
        ref_same = model.forward_frame(*inp, c_same)
        out = model.forward_frame(*inp, kcache, trunk=TRUNKS[trunk](model))
    assert out.shape == (1, 3, Hh, W)
    H.assert_rule("frame", out, ref32, ref_same, H.atol_for(dtype))
    H.assert_rule("current-slot keys", export_keys(kcache.k[:, :, :, -1]), c32.k[:, :, :, -1], c_same.k[:, :, :, -1],
                  H.atol_for(dtype))
    H.assert_rule("current-slot values", kcache.v[:, :, :, -1], c32.v[:, :, :, -1], c_same.v[:, :, :, -1],
                  H.atol_for(dtype))
    assert torch.equal(export_keys(kcache.k[:, :, :, :-1]), c_same.k[:, :, :, :-1])  # older slots untouched
    assert ref32.abs().max() > 0.05  # not vacuous: every layer is randomised, the frame carries signal
