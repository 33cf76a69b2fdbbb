"""Reprojected history: `reproject` agrees pixel for pixel with the eval's warp (the metric and the
model see the same warp), integer motion is an exact shift, and the valid mask is hand-checked."""
import numpy as np
import torch

from neural_renderer.eval.metrics import warp_previous
from neural_renderer.model.history import HISTORY_PLANES, absent_history, history_planes, reproject


def test_reproject_equals_eval_warp():
    rng = np.random.default_rng(0)
    prev = rng.random((12, 20, 3)).astype(np.float32)
    motion = (rng.normal(0, 3, (12, 20, 2))).astype(np.float32)
    ref, inside = warp_previous(prev, motion)
    warped, valid = reproject(torch.from_numpy(prev).permute(2, 0, 1)[None],
                              torch.from_numpy(motion).permute(2, 0, 1)[None])
    np.testing.assert_allclose(warped[0].permute(1, 2, 0).numpy(), ref, atol=1e-5)
    np.testing.assert_array_equal(valid[0, 0].numpy().astype(bool), inside)


def test_integer_motion_is_an_exact_shift_and_marks_the_edge():
    prev = torch.arange(5 * 6, dtype=torch.float32).view(1, 1, 5, 6)
    motion = torch.zeros(1, 2, 5, 6)
    motion[:, 0] = 2.0  # every surface point was two pixels further right in the previous frame
    warped, valid = reproject(prev, motion)
    torch.testing.assert_close(warped[0, 0, :, :4], prev[0, 0, :, 2:])
    assert valid[0, 0, :, :4].all() and not valid[0, 0, :, 4:].any()  # came from outside the frame


def test_disocclusion_and_presence_clear_the_group():
    prev = torch.rand(2, 3, 4, 4) * 2 - 1
    dis = torch.zeros(2, 1, 4, 4)
    dis[:, :, 1, 2] = 1
    warped, valid = reproject(prev, torch.zeros(2, 2, 4, 4), dis)
    assert valid[0, 0, 1, 2] == 0 and valid.sum() == 2 * 15
    planes = history_planes(warped, valid, torch.tensor([1.0, 0.0]))
    assert planes.shape == (2, HISTORY_PLANES, 4, 4)
    torch.testing.assert_close(planes[0, :3], prev[0] * valid[0])
    assert planes[0, 4].eq(1).all() and planes[1].eq(0).all()  # an absent sample carries nothing
    assert absent_history(3, height=4, width=5).abs().sum() == 0


def test_edge_l1_compares_gradients_not_levels():
    from neural_renderer.training.history import edge_l1

    target = torch.zeros(1, 3, 4, 6)
    target[..., 3:] = 1.0  # one vertical edge: a step of 1 between columns 2 and 3
    assert float(edge_l1(target + 0.7, target)) == 0.0  # an offset has the same gradients
    flat = torch.full_like(target, 0.5)
    # the blurred guess misses the step in 4 of the 4*5 horizontal differences: mean 1/5, no vertical ones
    torch.testing.assert_close(edge_l1(flat, target), torch.tensor(0.2))
    noisy = target.clone()
    noisy[..., 1, 1] = 0.5  # a dot in each of 3 channels: per channel two horizontal, two vertical steps of 0.5
    torch.testing.assert_close(edge_l1(noisy, target), torch.tensor(6 * 0.5 / 60 + 6 * 0.5 / 54))
