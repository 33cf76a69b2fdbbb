"""`neurender demo`: the headless run end to end through a real daemon (passthrough backend), and the
choice of mode and defaults."""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import pytest

from neural_renderer.cli import build_parser, main

W, H, N = 64, 48, 8


@pytest.fixture
def runtime_dir():
    d = tempfile.mkdtemp(prefix="nrd-")  # short: ipc socket paths are limited to 107 characters
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.mark.parametrize("pipeline", [False, True], ids=["blocking", "pipelined"])
def test_headless_demo_through_a_real_daemon(tmp_path, runtime_dir, pipeline):
    out = tmp_path / "demo"
    rc = main(["demo", "--headless", "--frames", str(N), "--out", str(out), "--resolution", f"{W}x{H}",
               "--backend", "passthrough", "--runtime-dir", runtime_dir, "--style", "night", "--ssaa", "1",
               "--style-every", "5"] + (["--pipeline"] if pipeline else []))
    assert rc == 0
    stats = json.loads((out / "stats.json").read_text())
    assert stats["frames"] == N and stats["renderer"]["backend"] == "passthrough"
    assert stats["pipelined"] == pipeline
    assert 0 < stats["roundtrip_p50_ms"] <= stats["roundtrip_p99_ms"]
    frames = imageio.mimread(out / "demo.mp4")
    assert len(frames) == N
    assert frames[0].shape[:2] == (H, 3 * W + 4)  # engine | neural | reference, 2-pixel gaps
    for f in frames[1:]:
        engine, neural, ref = (f[22:, k * (W + 2): k * (W + 2) + W].astype(np.float32) for k in range(3))
        # below the labels (rows 4-20): passthrough hands the engine colour back, so the neural panel
        # is the engine panel up to the codec (pipelined: the engine frame the neural one came from)
        assert np.abs(engine - neural).mean() < 4.0
        assert np.abs(engine - ref).mean() > 8.0  # the night (then winter) reference look is another picture
    assert imageio.imread(out / "latency.png").shape[0] > 100
    sheet = imageio.imread(out / "contact_sheet.png")
    assert sheet.shape[0] == 3 * H + 4 and sheet.shape[1] >= 6 * W
    assert not list(Path(runtime_dir).glob("daemon.sock")), "the demo stops the daemon it started"


def test_no_display_means_headless_with_defaults():
    from demos.demo_cmd import HEADLESS_FRAMES, HEADLESS_OUT, resolve_mode

    args = build_parser().parse_args(["demo"])
    resolved = resolve_mode(args, has_display=False)
    assert resolved.headless and resolved.frames == HEADLESS_FRAMES and resolved.out == HEADLESS_OUT
    windowed = resolve_mode(build_parser().parse_args(["demo"]), has_display=True)
    assert not windowed.headless and windowed.frames is None
    with pytest.raises(ValueError):
        resolve_mode(build_parser().parse_args(["demo", "--frames", "0"]), has_display=False)


def test_default_backend_is_the_one_serve_defaults_to():
    from demos.daemon_link import serve_default

    assert build_parser().parse_args(["demo"]).backend is None  # the demo defers to serve
    assert serve_default("backend") == build_parser().parse_args(["serve"]).backend


@pytest.mark.parametrize("bad", ["64", "64x", "axb", "8x8", "64x99999"])
def test_bad_resolution_is_refused(bad, capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["demo", "--resolution", bad])
    assert "resolution" in capsys.readouterr().err


def test_unreachable_daemon_and_bad_backend_fail_cleanly(tmp_path, runtime_dir, capsys):
    rc = main(["demo", "--headless", "--frames", "2", "--out", str(tmp_path / "a"), "--resolution", "32x32",
               "--endpoint", f"ipc://{runtime_dir}/nobody.sock"])
    assert rc == 1
    assert "no neurender daemon answers" in capsys.readouterr().err
    rc = main(["demo", "--headless", "--frames", "2", "--out", str(tmp_path / "b"), "--resolution", "32x32",
               "--backend", "no-such-backend", "--runtime-dir", runtime_dir])
    assert rc == 1
    assert "did not start" in capsys.readouterr().err
    assert not (tmp_path / "b" / "demo.mp4").exists()


def test_cold_first_run_completes_however_long_the_daemon_takes(tmp_path, runtime_dir, monkeypatch, capsys):
    """The first run on a cold machine: the daemon's model load (2 s, before it serves), open (3 s) and
    first frame (3 s) take longer than the session timeout (0.5 s) and the demo's own wait (1.5 s).
    The demo says what it waits for and finishes; it used to die with SessionLost."""
    import demos.daemon_link as link
    root = Path(__file__).resolve().parents[1]
    monkeypatch.setenv("PYTHONPATH", str(root))  # the daemon subprocess imports the test backend
    monkeypatch.setattr(link, "SESSION_TIMEOUT_MS", 500)
    monkeypatch.setattr(link, "CLIENT_TIMEOUT_S", 1.5)
    monkeypatch.setattr(link, "WAIT_LINE_S", 0.5)
    out = tmp_path / "demo"
    rc = main(["demo", "--headless", "--frames", "3", "--out", str(out), "--resolution", "32x32", "--ssaa", "1",
               "--no-reference", "--backend", "tests._bridge_test_backends:slow,init=2,open=3,first=3",
               "--runtime-dir", runtime_dir])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert json.loads((out / "stats.json").read_text())["frames"] == 3
    assert "waiting for the daemon to start: loading the model" in err
    assert "waiting for the daemon: the renderer is preparing the session" in err
    assert "waiting for the daemon: the first frame is rendering" in err


def test_without_ffmpeg_the_demo_writes_png_frames_and_says_so(tmp_path, runtime_dir, monkeypatch, capsys):
    import demos.headless as headless
    monkeypatch.setattr(headless, "find_ffmpeg", lambda: None)
    out = tmp_path / "demo"
    rc = main(["demo", "--headless", "--frames", "3", "--out", str(out), "--resolution", "32x32", "--ssaa", "1",
               "--no-reference", "--backend", "passthrough", "--runtime-dir", runtime_dir])
    assert rc == 0
    assert "ffmpeg not found: writing PNG frames" in capsys.readouterr().err
    assert not (out / "demo.mp4").exists()
    frames = sorted((out / "frames").glob("*.png"))
    assert len(frames) == 3 and imageio.imread(frames[0]).shape[0] == 32
