"""Drift, responsiveness and latency figures against hand-computed values."""
import math

import pytest

from neural_renderer.eval import scores


def test_drift_compares_like_with_like():
    psnr = [30, 30, 28, 28, 10, 10, 25, 25]
    warp = [1e-3, 1e-3, 2e-3, 2e-3, 9.0, 9.0, 4e-3, 4e-3]
    d = scores.drift(psnr, warp, ["a"] * 4 + ["b"] * 2 + ["a"] * 2, window=2)
    assert d["psnr_windows"] == [30, 28, 10, 25] and d["last_window"] == 3
    assert d["psnr_last_minus_first"] == -5 and d["warp_last_over_first"] == pytest.approx(4.0)
    # a window straddling a switch is not "one look": only window 0 shows "a", so no headline
    d = scores.drift(psnr, warp, ["a"] * 3 + ["b"] * 5, window=2)
    assert d["last_window"] is None and math.isnan(d["psnr_last_minus_first"])
    d = scores.drift(psnr, warp, ["a"] * 6 + ["b"] * 2, window=2)
    assert d["last_window"] == 2 and d["psnr_last_minus_first"] == -20
    d = scores.drift(psnr[:2], warp[:2], ["a", "a"], window=2)
    assert math.isnan(d["psnr_last_minus_first"])


def test_recovery_counts_frames_to_settled_level():
    p = [12, 14, 19.5, 20, 20.2, 19.9, 20, 20.1]
    r = scores.recovery(p, 0, len(p))
    assert r["settled_psnr"] == pytest.approx(20.05) and r["frames_to_recover"] == 2  # 19.5 >= 19.05
    assert scores.recovery([float("inf")] * 4, 0, 4)["frames_to_recover"] == 0
    assert scores.recovery([1, 2, 3, 30, 30, 30], 0, 6)["frames_to_recover"] == 3
    sw, rs = scores.events([0, 12, 24], [0, 6, 30], 36)
    assert sw == [{"frame": 12, "end": 24}, {"frame": 24, "end": 30}]
    assert rs == [{"frame": 6, "end": 12}, {"frame": 30, "end": 36}]


def test_latency_percentiles():
    lat = scores.latency([0.001] * 99 + [0.101])
    assert lat["p50_ms"] == pytest.approx(1.0) and lat["frames"] == 100
    assert lat["mean_ms"] == pytest.approx(2.0) and lat["fps"] == pytest.approx(500.0)
    assert lat["p99_ms"] == pytest.approx(1.0 + 0.01 * 100, rel=1e-6)  # numpy linear interpolation
    assert math.isnan(scores.latency([])["p50_ms"])
