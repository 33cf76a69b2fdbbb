"""The `quick` suite end to end on CPU, as CI runs it: frames rendered by the world renderer from eval
seeds (llvmpipe), the passthrough renderer hosted in-process, JSON + report, and the cache reused."""
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from neural_renderer.data import SequenceDataset
from neural_renderer.eval.suites import get_suite


def test_quick_suite_end_to_end(tmp_path):
    cache = tmp_path / "cache"
    cmd = [sys.executable, "-m", "neural_renderer.cli", "eval", "--renderer", "passthrough", "--suite", "quick",
           "--json", str(tmp_path / "r.json"), "--report", str(tmp_path / "rep"), "--cache-dir", str(cache)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    res = json.loads((tmp_path / "r.json").read_text())
    s = {k: v["summary"] for k, v in res["systems"].items()}
    assert set(s) == {"engine", "reference", "passthrough"}
    # passthrough returns the engine colour: the same code must give it exactly the engine's figures
    for k in ("psnr", "ssim", "warp_error"):
        assert s["passthrough"][k] == s["engine"][k]
    assert 5 < s["engine"]["psnr"] < 40 and 0 < s["engine"]["ssim"] < 1
    assert s["reference"]["psnr"] == math.inf and s["reference"]["warp_error"] > 0
    assert s["passthrough"]["latency"]["frames"] > 0 and s["passthrough"]["latency"]["fps"] > 0
    assert s["engine"]["prompt_switch"]["events"] and s["engine"]["reset"]["events"]
    assert "| passthrough |" in (tmp_path / "rep" / "README.md").read_text()
    assert "| passthrough |" in r.stdout
    # frames were cached as eval-split datasets of evaluation seeds; a second run renders nothing
    roots = [Path(q["cache"]) for q in res["sequences"]]
    assert all(p.parent == cache for p in roots) and len(roots) == len(get_suite("quick").sequences)
    assert all(SequenceDataset(p, split="eval").sequences[0].seed >= 1_000_000 for p in roots)
    stamps = [(p / "index.json").stat().st_mtime_ns for p in roots]
    r2 = subprocess.run(cmd + ["--no-progress"], capture_output=True, text=True, timeout=120)
    assert r2.returncode == 0, r2.stderr
    assert [(p / "index.json").stat().st_mtime_ns for p in roots] == stamps
    assert json.loads((tmp_path / "r.json").read_text())["systems"]["passthrough"]["summary"]["psnr"] == s["passthrough"]["psnr"]


@pytest.fixture(scope="module")
def world_cache(tmp_path_factory):
    from neural_renderer.eval.cache import sequence_dataset

    d = tmp_path_factory.mktemp("worldcache")
    s = get_suite("quick")
    return d, [sequence_dataset(q, s.width, s.height, d, progress=False) for q in s.sequences]


def test_on_world_frames_noise_is_worse_than_the_engine_pass_and_the_reference_is_the_floor(world_cache):
    """The same checks as the synthetic runner tests, on frames of the real world renderer."""
    from _eval_synthetic import NoiseRenderer, OracleRenderer

    from neural_renderer.eval import run_eval

    tmp_path = world_cache[0]
    res = run_eval(NoiseRenderer(), "quick", vs="passthrough", cache_dir=tmp_path, progress=False)
    s = {k: v["summary"] for k, v in res["systems"].items()}
    assert s["noise"]["psnr"] < s["engine"]["psnr"] - 2
    assert s["noise"]["ssim"] < s["engine"]["ssim"] - 0.1
    assert s["noise"]["warp_error"] > 10 * s["engine"]["warp_error"]
    assert s["passthrough"]["psnr"] == s["engine"]["psnr"]
    clips = [SequenceDataset(q["cache"], split="eval").clip(0) for q in res["sequences"]]
    oracle = run_eval(OracleRenderer(clips), "quick", cache_dir=tmp_path, progress=False)
    o = oracle["systems"]["oracle"]["summary"]
    assert o["psnr"] == math.inf and o["warp_error"] == s["reference"]["warp_error"] > 0


def test_world_motion_vectors_and_the_warp_agree_on_convention(world_cache):
    """Warping consecutive engine frames along the world's motion vectors must beat not warping and
    warping the opposite way: a sign or axis mismatch between demos/ and eval would fail here."""
    import numpy as np

    from neural_renderer.eval import metrics

    for ds in world_cache[1]:
        c = ds.clip(0)
        err = {"engine": [], "zero": [], "negated": []}
        for t in range(1, len(c)):
            if c.reset[t]:
                continue
            prev, cur = (np.asarray(c.engine["color"][k], np.float32) for k in (t - 1, t))
            mv, d = np.asarray(c.engine["motion"][t]), c.engine["disocclusion"][t]
            for name, m in (("engine", mv), ("zero", 0 * mv), ("negated", -mv)):
                err[name].append(metrics.warping_error(prev, cur, m, d))
        assert np.abs(c.engine["motion"]).mean() > 0.1  # the scripted player moves
        mean = {k: float(np.mean(v)) for k, v in err.items()}
        assert mean["engine"] < 0.75 * mean["zero"] and mean["engine"] < 0.75 * mean["negated"], mean
