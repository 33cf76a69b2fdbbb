"""`neurender bench bridge --clients K --fps F` with the render thread and with 2 worker processes
(the 1-GPU vs 2-GPU comparison, here on CPU): every tick of every client is accounted for."""
from __future__ import annotations

import json
import subprocess
import sys
from _images import assert_drawing


def test_paced_clients_bench_accounts_for_every_tick(tmp_path):
    out = tmp_path / "clients.json"
    cmd = [sys.executable, "-m", "neural_renderer.cli", "bench", "bridge", "--clients", "2", "--fps", "30",
           "--seconds", "1", "--workers", "0", "2", "--width", "32", "--height", "16", "--json", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    doc = json.loads(out.read_text())
    assert_drawing(out.with_suffix(".png"))
    assert [c["label"] for c in doc["configs"]] == ["render thread", "2 worker processes"]
    assert doc["configs"][0]["renderer"].get("workers") is None and doc["configs"][1]["renderer"]["workers"] == 2
    for c in doc["configs"]:
        assert not c["errors"] and len(c["sessions"]) == 2
        for s in c["sessions"]:
            assert 29 <= s["ticks"] <= 31  # 1 s at 30 ticks/s
            assert s["ticks"] == s["done"] + s["dropped"] + s["missed"]  # a tick is rendered, replaced or skipped
            assert 0 < s["achieved_fps"] <= 30 * 1.15
        # the two sessions of the pool sit on different workers; the thread has no worker index
        workers = sorted(s["worker"] for s in c["sessions"]) if c["renderer"].get("workers") else None
        assert workers in (None, [0, 1])
    assert "render thread" in r.stdout and "2 worker processes" in r.stdout
