"""demos.bench_render runs end to end and writes the numbers RESULTS.md quotes."""
from __future__ import annotations

import json

import numpy as np
import pytest

from demos.bench_render import main


def test_bench_render_writes_its_json(tmp_path, capsys):
    out = tmp_path / "world.json"
    assert main(["--json", str(out), "--sizes", "32", "--frames", "3", "--styles", "sunny", "night", "--ssaa", "1", "--repeats", "2"]) == 0
    r = json.loads(out.read_text())
    assert isinstance(r["gl_renderer"], str) and r["gl_renderer"]
    s = r["sizes"]["32"]
    for k in ("engine_sync_fps", "engine_pbo_fps", "engine_render_only_fps", "reference_fps_mean"):
        assert s[k] > 0, k
    assert set(s["reference_fps"]) == {"sunny", "night"}
    assert len(s["engine_sync_fps_rounds"]) == 2
    assert s["engine_sync_fps"] == pytest.approx(float(np.median(s["engine_sync_fps_rounds"])))
    assert s["all_styles_shared_fps"] > 0
    assert abs(s["all_styles_separate_fps"] - 1 / sum(1 / v for v in s["reference_fps"].values())) < 1e-9
    assert abs(s["pbo_over_sync"] - s["engine_pbo_fps"] / s["engine_sync_fps"]) < 1e-9
    assert "32x32: engine pass" in capsys.readouterr().out
