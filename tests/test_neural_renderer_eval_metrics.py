"""Metric functions against values computed by hand on small arrays."""
import math

import numpy as np
import pytest

from neural_renderer.eval import metrics


def test_psnr_hand_values():
    a = np.zeros((8, 8, 3), np.float32)
    assert metrics.psnr(a, a + 0.1) == pytest.approx(20.0, abs=1e-5)  # MSE 0.01
    assert metrics.psnr(a, a + 0.01) == pytest.approx(40.0, abs=1e-4)  # MSE 1e-4
    b = a.copy()
    b[0, 0, 0] = 1.0  # one wrong value among 192: MSE = 1/192
    assert metrics.psnr(a, b) == pytest.approx(10 * math.log10(192), abs=1e-9)
    assert metrics.psnr(a, a) == math.inf


def test_ssim_hand_values():
    rng = np.random.default_rng(0)
    x = rng.random((16, 16, 3))
    assert metrics.ssim(x, x) == pytest.approx(1.0, abs=1e-12)
    # Constant images: variances and covariance are zero, so SSIM is the luminance term alone.
    a, b = np.full((16, 16, 3), 0.2), np.full((16, 16, 3), 0.6)
    c1 = 0.01 ** 2
    assert metrics.ssim(a, b) == pytest.approx((2 * 0.2 * 0.6 + c1) / (0.2 ** 2 + 0.6 ** 2 + c1), abs=1e-12)
    # Same mean, structure inverted: strongly negative.
    checker = (np.indices((16, 16)).sum(0) % 2).astype(np.float64)[..., None]
    assert metrics.ssim(checker, 1 - checker) < -0.9


def test_ssim_rejects_tiny_and_mismatched():
    with pytest.raises(ValueError, match="at least 11"):
        metrics.ssim(np.zeros((8, 8, 3)), np.zeros((8, 8, 3)))
    with pytest.raises(ValueError, match="shapes differ"):
        metrics.ssim(np.zeros((16, 16, 3)), np.zeros((16, 17, 3)))


def _ramp_pair(h, w, dx, dy, slope_x=0.01, slope_y=0.005):
    """prev(x, y) = linear ramp; cur(x, y) = prev(x + dx, y + dy): the scene slid by (-dx, -dy)."""
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    f = lambda x, y: np.stack([slope_x * x + slope_y * y, 0.5 * slope_x * x, 0.3 + slope_y * y], -1)
    return f(xs, ys), f(xs + dx, ys + dy)


@pytest.mark.parametrize("dx,dy", [(2, 0), (0, 3), (-1, 2), (1.5, -0.5)])
def test_known_shift_zero_under_right_motion(dx, dy):
    prev, cur = _ramp_pair(12, 16, dx, dy)
    motion = np.zeros((12, 16, 2))
    motion[..., 0], motion[..., 1] = dx, dy
    assert metrics.warping_error(prev, cur, motion) == pytest.approx(0.0, abs=1e-20)


def test_known_shift_known_error_under_wrong_motion():
    prev, cur = _ramp_pair(12, 16, 2, 0)
    zero = np.zeros((12, 16, 2))
    # Every pixel differs by 2 * slope in channels 0 and 1: (0.02)^2 + (0.01)^2.
    assert metrics.warping_error(prev, cur, zero) == pytest.approx(0.02 ** 2 + 0.01 ** 2, rel=1e-9)
    # Motion pointing the wrong way: difference doubles (4 px), squared error x4.
    wrong = np.zeros((12, 16, 2))
    wrong[..., 0] = -2
    assert metrics.warping_error(prev, cur, wrong) == pytest.approx(4 * (0.02 ** 2 + 0.01 ** 2), rel=1e-9)


def test_disocclusion_and_out_of_frame_pixels_are_excluded():
    prev, cur = _ramp_pair(12, 16, 2, 0)
    motion = np.zeros((12, 16, 2))
    motion[..., 0] = 2
    cur = cur.copy()
    cur[:, :4] = 9.0  # garbage where the engine says the surface was not visible before
    disocc = np.zeros((12, 16, 1), np.uint8)
    disocc[:, :4] = 1
    assert metrics.warping_error(prev, cur, motion, disocc) == pytest.approx(0.0, abs=1e-20)
    # Without the mask the garbage counts: 4 of the 14 in-frame columns (2 fall outside) are off by ~9.
    assert metrics.warping_error(prev, cur, motion) > 1.0
    warped, inside = metrics.warp_previous(prev, motion)
    assert inside[:, :14].all() and not inside[:, 14:].any()
    everything = np.ones((12, 16), np.uint8)
    assert math.isnan(metrics.warping_error(prev, cur, motion, everything))


def test_warp_rejects_bad_shapes():
    with pytest.raises(ValueError, match="motion"):
        metrics.warping_error(np.zeros((4, 4, 3)), np.zeros((4, 4, 3)), np.zeros((4, 5, 2)))
    with pytest.raises(ValueError, match="disocclusion"):
        metrics.warping_error(np.zeros((4, 4, 3)), np.zeros((4, 4, 3)), np.zeros((4, 4, 2)), np.zeros((3, 4)))
