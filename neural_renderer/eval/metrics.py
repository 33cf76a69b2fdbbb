"""Per-frame image metrics: PSNR, SSIM and the warping error with the engine's exact motion.

Every function takes float images in [0, 1], shape (H, W, C), and returns plain Python floats so
callers can store them without holding arrays. Conventions for motion and disocclusion are the ones
of bridge/channels.py: motion points from a pixel of the current frame to where the same surface was
in the previous frame, prev_xy = (x + motion[..., 0], y + motion[..., 1]), in pixels.
"""
from __future__ import annotations

import math

import numpy as np

# Wang et al. 2004 constants for a data range of 1.
SSIM_K1, SSIM_K2 = 0.01, 0.03
SSIM_WINDOW, SSIM_SIGMA = 11, 1.5


def _as_image(x: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim == 2:
        x = x[..., None]
    if x.ndim != 3:
        raise ValueError(f"{name}: expected an (H, W, C) image, got shape {x.shape}")
    return x.astype(np.float64, copy=False)


def _pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = _as_image(a, "a"), _as_image(b, "b")
    if a.shape != b.shape:
        raise ValueError(f"image shapes differ: {a.shape} vs {b.shape}")
    return a, b


def mse(a: np.ndarray, b: np.ndarray) -> float:
    a, b = _pair(a, b)
    return float(np.mean((a - b) ** 2))


def psnr_from_mse(m: float, data_range: float = 1.0) -> float:
    """10 log10(range^2 / MSE) in dB; +inf for identical images. The project's one PSNR convention:
    callers holding tensors (training, rollouts) compute the MSE their way and convert here."""
    if m == 0.0:
        return math.inf
    return 10.0 * math.log10(data_range * data_range / m)


def psnr(a: np.ndarray, b: np.ndarray, data_range: float = 1.0) -> float:
    """PSNR of two images in [0, data_range]; +inf for identical images."""
    return psnr_from_mse(mse(a, b), data_range)


def _gaussian_taps(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> np.ndarray:
    r = np.arange(size, dtype=np.float64) - (size - 1) / 2
    w = np.exp(-(r * r) / (2 * sigma * sigma))
    return w / w.sum()


def _filter_valid(x: np.ndarray, taps: np.ndarray) -> np.ndarray:
    """Separable 'valid' filtering over the two image axes, as in the reference MATLAB ssim."""
    k = len(taps)
    h, w = x.shape[0] - k + 1, x.shape[1] - k + 1
    rows = sum(t * x[i:i + h] for i, t in enumerate(taps))
    return sum(t * rows[:, i:i + w] for i, t in enumerate(taps))


def ssim(a: np.ndarray, b: np.ndarray, data_range: float = 1.0) -> float:
    """Mean SSIM (Gaussian window 11, sigma 1.5, 'valid' region), averaged over channels."""
    a, b = _pair(a, b)
    if min(a.shape[:2]) < SSIM_WINDOW:
        raise ValueError(f"SSIM needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW}, got {a.shape[:2]}")
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    taps = _gaussian_taps()
    mu_a, mu_b = _filter_valid(a, taps), _filter_valid(b, taps)
    var_a = _filter_valid(a * a, taps) - mu_a * mu_a
    var_b = _filter_valid(b * b, taps) - mu_b * mu_b
    cov = _filter_valid(a * b, taps) - mu_a * mu_b
    num = (2 * mu_a * mu_b + c1) * (2 * cov + c2)
    den = (mu_a * mu_a + mu_b * mu_b + c1) * (var_a + var_b + c2)
    return float(np.mean(num / den))


def warp_previous(prev: np.ndarray, motion: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bring the previous frame into the current one along the engine's motion vectors.

    Returns (warped (H, W, C), inside (H, W) bool): warped[y, x] = prev sampled bilinearly at
    (x + mv_x, y + mv_y); `inside` is False where that point lies outside the previous frame.
    """
    prev = _as_image(prev, "prev")
    motion = np.asarray(motion, dtype=np.float64)
    if motion.ndim != 3 or motion.shape[2] != 2 or motion.shape[:2] != prev.shape[:2]:
        raise ValueError(f"motion must be (H, W, 2) matching the image {prev.shape[:2]}, got {motion.shape}")
    h, w = prev.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    px, py = xs + motion[..., 0], ys + motion[..., 1]
    inside = (px >= 0) & (px <= w - 1) & (py >= 0) & (py <= h - 1)
    px, py = np.clip(px, 0, w - 1), np.clip(py, 0, h - 1)
    x0, y0 = np.floor(px).astype(np.intp), np.floor(py).astype(np.intp)
    x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
    fx, fy = (px - x0)[..., None], (py - y0)[..., None]
    top = prev[y0, x0] * (1 - fx) + prev[y0, x1] * fx
    bottom = prev[y1, x0] * (1 - fx) + prev[y1, x1] * fx
    return top * (1 - fy) + bottom * fy, inside


def warping_error(prev: np.ndarray, cur: np.ndarray, motion: np.ndarray,
                  disocclusion: np.ndarray | None = None) -> float:
    """The warping error (temporal stability) of one frame pair, with exact engine motion instead of estimated flow.

    E_t = sum_i M(i) * ||cur(i) - warp(prev)(i)||^2 / sum_i M(i): the squared L2 norm over colour
    channels, averaged over the pixels M marks valid (not disoccluded, and their previous position
    inside the previous frame). Returns NaN when no pixel is valid (e.g. a full cut).
    """
    prev, cur = _pair(prev, cur)
    warped, inside = warp_previous(prev, motion)
    valid = inside
    if disocclusion is not None:
        d = np.asarray(disocclusion)
        if d.ndim == 3:
            d = d[..., 0]
        if d.shape != valid.shape:
            raise ValueError(f"disocclusion must be (H, W[, 1]) matching {valid.shape}, got {np.shape(disocclusion)}")
        valid = valid & (d < 0.5)
    n = int(valid.sum())
    if n == 0:
        return math.nan
    sq = np.sum((cur - warped) ** 2, axis=-1)
    return float(sq[valid].sum() / n)


def error_map(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-pixel absolute error, mean over channels, (H, W) float32: what the report's grid shows."""
    a, b = _pair(a, b)
    return np.mean(np.abs(a - b), axis=-1).astype(np.float32)


def block_grid(img: np.ndarray, tile: int) -> float:
    """How visible a tile grid of `tile` pixels is: the mean absolute gradient across tile borders
    (between pixel k*tile - 1 and k*tile, both axes) over the mean absolute gradient everywhere else.
    About 1 for a natural image; a model that paints patch by patch shows its grid as > 1."""
    x = _as_image(img, "img")
    gx = np.abs(np.diff(x, axis=1)).mean(axis=(0, 2))  # (W-1,): gradient between columns c and c+1
    gy = np.abs(np.diff(x, axis=0)).mean(axis=(1, 2))  # (H-1,)
    ratios = []
    for g in (gx, gy):
        border = (np.arange(g.size) + 1) % tile == 0
        if border.any() and (~border).any() and g[~border].mean() > 0:
            ratios.append(g[border].mean() / g[~border].mean())
    return float(np.mean(ratios)) if ratios else math.nan
