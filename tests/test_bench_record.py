"""`neurender bench record` end to end on CPU: a real daemon (passthrough), recording off and on in blocks.
Checks what the benchmark reports against what it did: every frame of every "on" block is in the recording,
the arms have their frame counts, and the bytes per frame match the channels' storage dtypes."""
import argparse
import json

from bridge.bench_record import RECORD_CHANNELS, configure, run


def test_bench_record_counts_what_it_recorded(tmp_path):
    p = argparse.ArgumentParser()
    configure(p)
    args = p.parse_args(["--sizes", "32", "--block", "6", "--repeats", "2", "--warmup", "2", "--fps", "0",
                         "--dir", str(tmp_path / "rec"), "--json", str(tmp_path / "r.json")])
    assert run(args) == 0
    r = json.loads((tmp_path / "r.json").read_text())
    assert r["backend"] == "passthrough"
    s = r["sizes"]["32"]
    assert s["off_frames"] == s["on_frames"] == 12  # repeats x block, warm-up frames not timed
    assert s["frames_sent_recording"] == 16 and s["frames_recorded"] + s["frames_skipped"] == 16
    assert s["frames_recorded"] == 16  # a 32x32 frame never waits on this disk
    assert s["record_errors"] == []
    itemsize = {"float16": 2, "float32": 4, "uint16": 2, "uint8": 1}
    chans = {"color": 3, "depth": 1, "normals": 3, "motion": 2, "albedo": 3, "material_id": 1, "disocclusion": 1,
             "final": 3}
    pixels = sum(chans[c] * itemsize[d] for c, d in RECORD_CHANNELS.items()) * 32 * 32
    assert pixels <= s["bytes_per_frame"] <= pixels + 2048  # the arrays plus per-frame actions, constants, headers
    assert 0 < s["off_p50_ms"] <= s["off_p99_ms"]
