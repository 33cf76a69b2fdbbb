"""`neurender bench sessions` end to end on a CPU (a real daemon serving hg-micro with random weights at 64x64,
paced client processes over shared memory at 10 frames/s): every measured frame of every session is answered,
once, in order, the counts add up, the JSON and the PNG are written; and the hold rule on constructed numbers,
including sessions that must fail it."""
import json
import subprocess
import sys

import pytest
from _images import assert_drawing

from neural_renderer.serving.bench_sessions import holds, summarise
from neural_renderer.serving.paced_session import session_figures

FPS = 10


def test_bench_sessions_runs_paced_sessions_through_a_real_daemon(tmp_path):
    out = tmp_path / "sessions.json"
    # a p99 limit a loaded 2-core machine meets: what is tested here is the accounting, not CPU speed
    proc = subprocess.run([sys.executable, "-m", "neural_renderer.cli", "bench", "sessions", "--model", "hg-micro",
                           "--device", "cpu", "--size", "64x48", "--fps", str(FPS), "--counts", "1,2", "--seconds", "2",
                           "--long", "3:3", "--warmup", "0.5", "--steps", "1", "--p99-ms", "1000", "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(out.read_text())
    assert_drawing(out.with_suffix(".png"))
    assert (res["device"], res["dtype"], res["width"], res["height"], res["fps"], res["transport"]) == (
        "cpu", "float32", 64, 48, FPS, "shm")
    assert res["renderer"]["kernels"] == "cpu" and res["phase"] == "aligned"
    rows = res["counts"] + [res["long"]]
    assert [(r["sessions"], r["seconds"]) for r in rows] == [(1, 2), (2, 2), (3, 3)]
    for r in rows:
        assert not r["errors"] and len(r["per_session"]) == r["sessions"]
        assert [s["index"] for s in r["per_session"]] == list(range(r["sessions"]))
        assert r["batch_wait_max_ms"] >= 0 and all(s["batch_wait_max_ms"] >= 0 for s in r["per_session"])
        for s in r["per_session"]:
            ticks = round(r["seconds"] * FPS)
            assert s["ticks"] == ticks == s["submitted"] + s["missed"]
            assert s["submitted"] == s["answered"] + s["dropped"] + s["failed"]  # every frame accounted for
            assert s["unaccounted"] == s["answered_twice"] == 0 and s["in_order"]
            assert s["answered"] == ticks and s["dropped"] == s["missed"] == s["failed"] == 0  # 10 fps is easy
            assert s["answered_fps"] == pytest.approx(FPS)
            assert 0 < s["latency_p50_ms"] <= s["latency_p99_ms"] <= s["latency_max_ms"] < 1000
            assert 0 <= s["late"] <= s["answered"] and s["render_p50_ms"] > 0
            assert sum(s["batch_histogram"].values()) == s["answered"]
            assert all(1 <= int(k) <= r["sessions"] for k in s["batch_histogram"])
            assert s["kernels"] == "cpu" and s["held"]
        assert r["held"] and r["sessions_held"] == r["sessions"] and r["reasons"] == {}
        assert r["submitted"] == r["answered"] == r["sessions"] * round(r["seconds"] * FPS)
        assert r["fps_min"] == pytest.approx(FPS) and r["fps_total"] == pytest.approx(FPS * r["sessions"])
        assert 1 <= r["batch_mean"] <= r["sessions"]
    assert res["counts"][0]["batch_histogram"] == {"1": 2 * FPS}  # alone: never batched
    # three sessions submitting on the same tick: while the first one's frame renders the others wait, and go together
    assert max(int(k) for k in res["long"]["batch_histogram"]) >= 2 and res["long"]["batch_mean"] > 1
    assert res["largest_held"] == 2 and res["long_held"] is True
    assert "largest count that held: 2" in proc.stdout and "3 sessions for 3 s: held" in proc.stdout


def good(**kw) -> dict:
    s = {"index": 0, "error": None, "ticks": 600, "submitted": 600, "answered": 600, "dropped": 0, "failed": 0,
         "missed": 0, "unaccounted": 0, "answered_twice": 0, "in_order": True, "late": 2, "answered_fps": 60.0,
         "latency_p50_ms": 9.0, "latency_p99_ms": 15.9, "latency_max_ms": 17.0, "render_p50_ms": 7.0,
         "queue_p50_ms": 1.0, "batch_histogram": {"1": 200, "2": 400}, "client_lag_p99_ms": 0.1,
         "client_lag_max_ms": 0.3}
    s.update(kw)
    return s


@pytest.mark.parametrize("bad, why", [
    ({"dropped": 1, "answered": 599, "answered_fps": 59.9}, ["1 dropped"]),
    ({"latency_p99_ms": 16.01}, ["p99 16.01 ms > 16 ms"]),
    ({"latency_p99_ms": float("nan"), "answered": 0}, ["p99 nan ms > 16 ms"]),
    ({"answered_fps": 59.3}, ["59.30 frames/s < 99% of 60"]),
    ({"missed": 3}, ["3 missed"]),
    ({"failed": 1}, ["1 failed"]),
    ({"in_order": False}, ["answered out of order"]),
    ({"error": "TimeoutError: x"}, ["error: TimeoutError: x"]),
])
def test_a_session_that_misses_the_target_does_not_hold(bad, why):
    assert holds(good(**bad), 60, 16) == why
    row = summarise([good(index=1), good(index=0, **bad)], 2, 10, 60, 16)
    assert not row["held"] and row["sessions_held"] == 1 and row["reasons"] == {"0": why}


def test_sessions_on_target_hold_and_the_row_sums_them():
    assert holds(good(), 60, 16) == [] and holds(good(answered_fps=59.4, latency_p99_ms=16.0), 60, 16) == []
    row = summarise([good(index=1, latency_p99_ms=12.0), good(index=0)], 2, 10, 60, 16)
    assert row["held"] and row["sessions_held"] == 2 and row["reasons"] == {}
    assert (row["submitted"], row["answered"], row["dropped"], row["late"]) == (1200, 1200, 0, 4)
    assert row["latency_p99_ms_max"] == 15.9 and row["fps_total"] == 120.0
    assert row["batch_histogram"] == {"1": 400, "2": 800}
    assert row["batch_mean"] == pytest.approx(1200 / (400 + 400))  # 400 frames alone + 800 frames in 400 pairs
    assert not summarise([good()], 2, 10, 60, 16)["held"]  # a session that never reported is not a session held


def test_session_figures_count_only_the_measured_ticks():
    """Ticks 0-1 warm up; of the 4 measured ticks one was missed, one frame dropped, one failed, one late."""
    tick_of = {0: 0, 1: 1, 2: 2, 3: 3, 4: 5}  # seq -> tick; tick 4 had no free slot
    answered = [(0, 5.0, 1.0, 0.1, 1, 0.0), (1, 150.0, 1.0, 0.1, 2, 1.5), (3, 120.0, 1.0, 0.1, 2, 0.5),
                (4, 20.0, 1.0, 0.1, 1, 2.0)]
    f = session_figures(tick_of, answered, dropped=[2], failed=[], missed=[4], lag_ms=[0.1] * 4, warm=2, timed=4,
                        fps=10)
    assert (f["ticks"], f["submitted"], f["answered"], f["dropped"], f["missed"], f["failed"]) == (4, 3, 2, 1, 1, 0)
    assert f["unaccounted"] == 0 and f["in_order"] and f["late"] == 1  # 120 ms > the 100 ms period; 20 ms is not
    assert f["answered_fps"] == pytest.approx(5.0) and f["batch_histogram"] == {"1": 1, "2": 1}
    assert f["latency_max_ms"] == 120.0
    assert (f["batch_wait_p50_ms"], f["batch_wait_max_ms"]) == (1.25, 2.0)  # the daemon's holds of seqs 3 and 4
    g = session_figures(tick_of, answered[::-1], dropped=[], failed=[], missed=[4], lag_ms=[], warm=2, timed=4, fps=10)
    assert not g["in_order"] and g["unaccounted"] == 1  # seq 2: neither answered nor dropped
