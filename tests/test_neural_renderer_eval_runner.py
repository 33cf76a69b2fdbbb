"""run_eval end to end on the quick suite's shapes with synthetic cached frames (no OpenGL): baselines,
the reference floor, a noise renderer, responsiveness, report and JSON."""
import json
import math

import numpy as np
import pytest

from _eval_synthetic import LaggingOracle, NoiseRenderer, OracleRenderer, synth_sequence, write_suite_cache
from neural_renderer.data import SequenceDataset
from neural_renderer.eval import metrics, run_eval
from neural_renderer.eval.suites import get_suite


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    d = tmp_path_factory.mktemp("evalcache")
    write_suite_cache(get_suite("quick"), d, reset_at=(6,))
    return d


def _clips(cache):
    s = get_suite("quick")
    return [SequenceDataset(cache / q.cache_key(s.width, s.height), split="eval").clip(0) for q in s.sequences]


def test_noise_scores_worse_than_engine_pass_and_passthrough_equals_engine(cache, tmp_path):
    res = run_eval(NoiseRenderer(), "quick", vs="passthrough", cache_dir=cache, progress=False,
                   json_path=tmp_path / "r.json", report_dir=tmp_path / "rep")
    sysm = {k: v["summary"] for k, v in res["systems"].items()}
    assert set(sysm) == {"engine", "reference", "noise", "passthrough"}
    eng, noise, pt, ref = sysm["engine"], sysm["noise"], sysm["passthrough"], sysm["reference"]
    assert noise["psnr"] < eng["psnr"] - 3 and noise["ssim"] < eng["ssim"] - 0.2
    assert noise["warp_error"] > 10 * eng["warp_error"]
    # The same code scores the passthrough renderer and the engine pass: identical frames, identical numbers.
    for k in ("psnr", "ssim", "warp_error"):
        assert pt[k] == eng[k]
    assert ref["psnr"] == math.inf and ref["ssim"] == pytest.approx(1.0, abs=1e-12)
    assert "latency" in noise and noise["latency"]["frames"] == (36 - 2) + (24 - 2)
    assert "latency" not in eng and "daemon_render_p50_ms" not in noise["latency"]
    # drift: longest run (36 frames) in windows of 8
    assert eng["drift"]["windows"] == 4
    # events: prompt switches at 12 and 24 in the first run; the synthetic cut at 6 in both runs
    assert [e["frame"] for e in eng["prompt_switch"]["events"]] == [12, 24]
    assert [e["frame"] for e in eng["reset"]["events"]] == [6, 6, 12]  # + the suite's own reset at 12
    # this synthetic scene pans by whole pixels: the reference (and the flat engine colour) warp exactly
    assert ref["warp_error"] == 0.0 and eng["warp_error"] == 0.0
    # drift compares windows of the same look: [0, 8) and [24, 32) are both "sunny"
    assert eng["drift"]["last_window"] == 3
    on_disk = json.loads((tmp_path / "r.json").read_text())
    assert on_disk["systems"]["noise"]["summary"]["psnr"] == pytest.approx(noise["psnr"])
    assert on_disk["systems"]["reference"]["summary"]["psnr"] == math.inf
    assert len(on_disk["systems"]["noise"]["per_frame"][0]["psnr"]) == 36
    md = (tmp_path / "rep" / "README.md").read_text()
    for name in ("engine", "reference", "noise", "passthrough"):
        assert f"| {name} |" in md
    for png in ("psnr_vs_frame.png", "warp_vs_frame.png", "drift.png", "samples.png"):
        assert (tmp_path / "rep" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_engine_and_passthrough_psnr_by_hand(cache):
    """The engine pass (and passthrough, which returns it) scored against the reference look, frame by
    frame, equals 10 log10(1 / MSE) worked out here from the synthetic scene's own formulas: engine
    colour 0.6 tex + 0.1 (grey), reference tex * tint, stored as float16."""
    res = run_eval("passthrough", "quick", cache_dir=cache, progress=False)
    s = get_suite("quick")
    q = s.sequences[0]
    frames = list(synth_sequence(q.seed, q.frames, s.width, s.height, q.styles, reset_at=(6,)))
    for t in (1, 5, 13, 30):
        f = frames[t]
        engine = f.engine["color"].astype(np.float16).astype(np.float64)
        reference = f.reference[q.style_at(t)].astype(np.float16).astype(np.float64)
        want = 10 * np.log10(1.0 / np.mean((engine - reference) ** 2))
        for system in ("engine", "passthrough"):
            assert res["systems"][system]["per_frame"][0]["psnr"][t] == pytest.approx(want, abs=0.02), (system, t)


def test_reference_scored_against_itself_through_the_host(cache):
    res = run_eval(OracleRenderer(_clips(cache)), "quick", cache_dir=cache, progress=False)
    o = res["systems"]["oracle"]["summary"]
    assert o["psnr"] == math.inf and all(p == math.inf for r in res["systems"]["oracle"]["per_frame"] for p in r["psnr"])
    assert o["warp_error"] == res["systems"]["reference"]["summary"]["warp_error"]
    assert o["warp_error"] == 0.0  # the synthetic scene pans by whole pixels: the reference warps exactly
    assert o["prompt_switch"]["mean_frames"] == 0 and o["reset"]["mean_frames"] == 0


@pytest.mark.parametrize("lag", [2, 4])
def test_responsiveness_counts_the_frames_a_renderer_lags(cache, lag):
    res = run_eval(LaggingOracle(_clips(cache), lag), "quick", cache_dir=cache, progress=False)
    s = res["systems"]["lagging-oracle"]["summary"]
    assert s["prompt_switch"]["mean_frames"] == lag
    assert s["reset"]["mean_frames"] == lag and s["reset"]["max_frames"] == lag
    assert s["prompt_switch"]["settled_psnr"] == math.inf


def test_bad_arguments(cache):
    with pytest.raises(KeyError, match="unknown suite"):
        run_eval("passthrough", "huge", cache_dir=cache, progress=False)
    with pytest.raises(ValueError, match="unknown channel"):
        run_eval("passthrough", "quick", cache_dir=cache, channels=["colour"], progress=False)
    from bridge.backends import BackendUnavailable
    with pytest.raises(BackendUnavailable):
        run_eval("nonsense", "quick", cache_dir=cache, progress=False)


def test_through_a_real_daemon_reports_what_the_bridge_delivers(cache):
    """--endpoint: the same passthrough, hosted by `neurender serve` over ZeroMQ + shared memory,
    scores exactly what the in-process engine baseline scores, with round-trip latency recorded."""
    from bridge.daemon import spawn_daemon

    with spawn_daemon(backend="passthrough", runtime_dir="private") as d:
        res = run_eval("passthrough", "quick", endpoint=d.endpoint, cache_dir=cache, progress=False)
        assert d.alive()
        with pytest.raises(ValueError, match="hosts backend 'passthrough', not 'generator:tiny'"):
            run_eval("generator:tiny", "quick", endpoint=d.endpoint, cache_dir=cache, progress=False)
        assert d.alive()
    name = f"passthrough"
    s, eng = res["systems"][name]["summary"], res["systems"]["engine"]["summary"]
    for k in ("psnr", "ssim", "warp_error"):
        assert s[k] == eng[k]
    assert s["latency"]["frames"] == (36 - 2) + (24 - 2) and s["latency"]["p50_ms"] > 0
    assert res["hosts"][name]["host"].startswith("daemon at ipc://") and res["hosts"][name]["dropped_frames"] == 0
    # the daemon's own render time is part of the round trip the caller measured
    assert 0 <= s["latency"]["daemon_render_p50_ms"] <= s["latency"]["p50_ms"]


def test_nonfinite_output_is_counted_and_scored_as_black(cache):
    from _eval_synthetic import NaNRenderer

    res = run_eval(NaNRenderer(), "quick", cache_dir=cache, progress=False)
    s = res["systems"]["nan"]["summary"]
    assert s["nonfinite_frames"] == 36 + 24 and res["systems"]["engine"]["summary"]["nonfinite_frames"] == 0
    clip = _clips(cache)[1]  # seed 1000001, "night" throughout
    black = np.zeros((64, 64, 3), np.float32)
    want = metrics.psnr(black, np.asarray(clip.reference["night"][5], np.float32))
    assert res["systems"]["nan"]["per_frame"][1]["psnr"][5] == pytest.approx(want, rel=1e-12)
    assert s["warp_error"] == 0.0  # a constant black output is perfectly stable, and that is what is reported


@pytest.mark.parametrize("argv,message", [
    (["--renderer", "nonsense"], "unknown backend 'nonsense'"),
    (["--renderer", "generator:/nonexistent/ckpt.safetensors"], "error:"),
    (["--renderer", "passthrough", "--endpoint", "ipc:///nonexistent/nr.sock"], "no neurender daemon answered"),
    (["--renderer", "passthrough", "--channels", "colour"], "unknown channel 'colour'"),
    (["--renderer", "passthrough", "--output-format", "rgb32"], "unknown output format 'rgb32'"),
    (["--renderer", "passthrough", "--resolution", "64by64"], "resolution must look like"),
])
def test_cli_bad_arguments_exit_2_with_a_message(cache, argv, message):
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "neural_renderer.cli", "eval", "--suite", "quick", "--no-progress",
                        "--cache-dir", str(cache), *argv], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and message in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
