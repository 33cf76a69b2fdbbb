"""`neurender bench soak` for half a minute (the 60-minute run's figures are in benchmarks/RESULTS.md):
paced clients with bad messages between good frames, SIGKILLed clients, one daemon restart. Nothing
accepted may go unanswered, be answered twice or out of order, or come back with the wrong pixels; NaN
pixels come back repaired; no session file is left; the daemon's memory is sampled throughout."""
from __future__ import annotations

import json
import os
from pathlib import Path

from neural_renderer.cli import main
from _images import assert_drawing


def test_soak_one_minute(tmp_path, capsys):
    out, png = tmp_path / "soak.json", tmp_path / "soak.png"
    rc = main(["bench", "soak", "--minutes", "1", "--sessions", "3", "--kill-every", "8", "--seed", "1",
               "--json", str(out), "--plot", str(png)])
    r = json.loads(out.read_text())
    assert rc == 0, {k: v for k, v in r.items() if k != "rss"}
    assert r["frames_rendered"] > 500 and r["client_kills"] >= 2 and len(r["daemon_restarts"]) == 1
    assert r["frames_lost"] == r["frames_reordered"] == r["frames_answered_twice"] == r["wrong_pixels"] == 0
    assert r["nan_frames_repaired"] > 0 and r["nan_frames_not_repaired"] == 0
    # all answered, but for the few sent into the daemon restart (or by a client as it was killed)
    assert r["bad_messages_sent"] > 20 and r["bad_messages_sent"] - 6 <= r["bad_messages_answered"] <= r["bad_messages_sent"]
    assert {"bad_msgpack", "unknown_session", "bad_field"} <= set(r["errors_by_code"])
    assert r["session_files_left_daemon_running"] == [] and r["session_files_left_after_stop"] == []
    assert r["session_memories_left_daemon_running"] == [] and r["wrong_frames"] == []
    assert r["daemon_restarts"][0]["files_left_by_old_daemon"] == []
    assert len(r["rss"]) >= 20 and r["rss_kib_max"] < 400 * 1024
    assert_drawing(png)


def test_soak_reports_each_wrong_frame_with_what_came_before(tmp_path, monkeypatch):
    """A renderer that blackens the bottom half of every 7th frame: each such frame is reported with
    its session, seq, size, the pixels that differ and the client's events before it."""
    monkeypatch.setenv("PYTHONPATH", f"{Path(__file__).resolve().parents[1]}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    out = tmp_path / "soak.json"
    rc = main(["bench", "soak", "--minutes", "0.12", "--sessions", "1", "--kill-every", "600", "--no-restart",
               "--backend", "tests._bridge_test_backends:blot,every=7", "--json", str(out)])
    r = json.loads(out.read_text())
    assert rc == 1 and r["wrong_pixels"] == len(r["wrong_frames"]) > 0
    assert r["frames_rendered"] // 7 - 3 <= r["wrong_pixels"] <= r["frames_rendered"] // 7 + 3
    for w in r["wrong_frames"]:
        width, height = w["size"]
        assert w["wrong_pixels"] == width * (height - height // 2) and w["of"] == width * height
        assert w["rows"] == [height // 2, height - 1] and w["got_values"] == [0] != [w["expected"]]
        assert w["transport"] in ("shm", "inline") and w["seq"] >= 0 and len(w["session"]) == 16
        assert w["session_opened"][1].startswith(f"opened {w['session']} {width}x{height}") and w["recent"]
        assert w["soak_events_before"] == [] or w["soak_events_before"][0][1] == "soak started"
