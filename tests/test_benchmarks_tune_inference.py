"""benchmarks/tune_inference.py, the inference-knob sweep: its suite is a tuning suite of training seeds (an
evaluation seed is refused), and its per-look scores split each run into the frames before and after the split."""
import importlib.util
import math
from pathlib import Path

import pytest

from neural_renderer.eval.suites import EVAL_SEED_BASE


def _module():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "tune_inference.py"
    spec = importlib.util.spec_from_file_location("tune_inference", path)
    m = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(m)
    return m


def test_the_sweep_runs_on_training_seeds_only():
    t = _module()
    s = t.tuning_suite([17, 230, 512], ["sunset", "night"], frames=8, size=32)
    assert s.split == "train" and [q.seed for q in s.sequences] == [17, 230, 512]
    assert [q.schedule for q in s.sequences] == [((0, "sunset"),), ((0, "night"),), ((0, "sunset"),)]
    with pytest.raises(ValueError, match="not a training seed"):
        t.tuning_suite([17, EVAL_SEED_BASE + 5], ["sunset"], frames=8, size=32)


def test_scores_per_look_and_halves_and_merged_sweeps():
    t = _module()
    frames = [{"psnr": [10.0, 10.0, 20.0, 20.0], "ssim": [0.5] * 4, "warp": [math.nan, 1.0, 1.0, 3.0]},
              {"psnr": [30.0] * 4, "ssim": [0.7] * 4, "warp": [math.nan, 2.0, 2.0, 2.0]},
              {"psnr": [20.0] * 4, "ssim": [0.5] * 4, "warp": [math.nan, 1.0, 1.0, 1.0]}]
    runs = [{"seed": 1, "look": "sunset"}, {"seed": 2, "look": "night"}, {"seed": 3, "look": "sunset"}]
    rows = t.run_scores(frames, runs, split=2)
    assert rows[0]["seed"] == 1 and rows[0]["psnr_early"] == pytest.approx(10.0) and rows[0]["psnr_late"] == pytest.approx(20.0)
    s = t.aggregate(rows)
    assert s["sunset"]["psnr"] == pytest.approx(17.5) and s["sunset"]["psnr_early"] == pytest.approx(15.0)
    assert s["sunset"]["psnr_late"] == pytest.approx(20.0) and s["sunset"]["warp"] == pytest.approx((5 / 3 + 1) / 2)
    assert s["mean"]["psnr"] == pytest.approx((17.5 + 30.0) / 2) and s["mean"]["ssim"] == pytest.approx(0.6)

    def sweep(rows_, extra):  # what a sweep writes, less what merge does not read
        per_run = {"0": rows_, "engine": rows_, "reference": rows_, **({"stateless": rows_} if extra else {})}
        return {"model": "tiny", "size": 32, "frames": 4, "split_frame": 2, "steps": None, "values": [0.0],
                "value_arms": ["0"], "specs": {n: n for n in per_run}, "runs": [{k: r[k] for k in ("seed", "look")} for r in rows_],
                "looks": list(dict.fromkeys(r["look"] for r in rows_)), "per_run": per_run,
                "hosts": {n: {} for n in per_run}, "seconds": {n: 1.0 for n in per_run}}

    m = t.merge([sweep(rows[:2], True), sweep(rows[2:], False)])
    assert m["arms"]["0"] == s and set(m["arms"]) == {"0"} and m["seeds"] == [1, 2, 3]
    with pytest.raises(SystemExit, match="seed appears twice"):
        t.merge([sweep(rows[:2], False), sweep(rows[:1], False)])


def test_the_swept_option_is_named_and_old_sweeps_read_as_history_noise():
    """`--option sink_every --values 0 16`: integer values, the option recorded (files tune_<option>.*); a sweep
    written before --option reads as a history_noise sweep, and sweeps of different options do not merge."""
    t = _module()
    assert t.parse_values("sink_every", ["0", "16", "64"]) == [0, 16, 64]
    assert t.parse_values("history_noise", ["0", "0.05"]) == [0.0, 0.05]
    with pytest.raises(SystemExit, match="not a number"):
        t.parse_values("sink_every", ["x"])
    assert t.option_of({}) == "history_noise" and t.option_of({"option": "sink_every"}) == "sink_every"
    base = {"model": "tiny", "size": 32, "frames": 4, "split_frame": 2, "steps": None, "values": [0], "value_arms": ["0"],
            "specs": {"0": "generator:tiny?sink_every=0"}, "runs": [{"seed": 1, "look": "night"}], "looks": ["night"],
            "per_run": {}, "hosts": {}, "seconds": {}}
    with pytest.raises(SystemExit, match="option differs"):
        t.merge([{**base, "option": "sink_every"}, {**base, "runs": [{"seed": 2, "look": "night"}]}])
