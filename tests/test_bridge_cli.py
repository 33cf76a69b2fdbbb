"""The bridge's command-line pieces and backend registry: `neurender keys`, backend specs, light
imports, and a small `neurender bench bridge` run whose JSON must hold every arm."""
from __future__ import annotations

import json
import subprocess
import sys
import types

import numpy as np
import pytest

from bridge import keys
from bridge.backends import BackendUnavailable, FrameInputs, SessionSpec, create_renderer
from bridge.backends.passthrough import to_output
from neural_renderer.cli import main
from _images import assert_drawing


def test_keys_command_add_allow_list_revoke(tmp_path, capsys):
    kd = str(tmp_path / "k")
    assert main(["keys", "--keys-dir", kd, "init"]) == 0
    server_pub = keys.load_public(tmp_path / "k" / "server.key")
    assert main(["keys", "--keys-dir", kd, "add", "alice"]) == 0
    assert (tmp_path / "k" / "clients" / "alice.key_secret").stat().st_mode & 0o777 == 0o600
    other_pub = b"rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7"
    assert main(["keys", "--keys-dir", kd, "allow", "bob", other_pub.decode()]) == 0
    capsys.readouterr()
    assert main(["keys", "--keys-dir", kd, "list"]) == 0
    out = capsys.readouterr().out
    assert server_pub.decode() in out and "alice" in out and other_pub.decode() in out
    assert set(keys.allowed(tmp_path / "k")) == {"alice", "bob"}
    assert main(["keys", "--keys-dir", kd, "add", "alice"]) == 1  # exists already
    assert main(["keys", "--keys-dir", kd, "add", "../evil"]) == 1  # not a plain name
    assert main(["keys", "--keys-dir", kd, "allow", "carol", "tooshort"]) == 1
    assert main(["keys", "--keys-dir", kd, "revoke", "bob"]) == 0
    assert main(["keys", "--keys-dir", kd, "revoke", "bob"]) == 1
    assert set(keys.allowed(tmp_path / "k")) == {"alice"}


def test_backend_specs(monkeypatch):
    r = create_renderer("passthrough", steps=None, device=None)
    assert r.describe() == {"backend": "passthrough", "model": None, "steps": 0, "device": "cpu"}
    with pytest.raises(BackendUnavailable, match="unknown backend"):
        create_renderer("magic")
    with pytest.raises(BackendUnavailable, match="no argument"):
        create_renderer("passthrough:tiny")
    calls = []
    fake = types.ModuleType("neural_renderer.serving.renderer")
    fake.GeneratorRenderer = lambda arg, **opts: calls.append((arg, opts)) or "renderer"
    monkeypatch.setitem(sys.modules, "neural_renderer.serving.renderer", fake)
    assert create_renderer("generator:/x/ckpt.safetensors", steps=3, device=None) == "renderer"
    assert create_renderer("generator") == "renderer"
    assert calls == [("/x/ckpt.safetensors", {"steps": 3}), (None, {})]
    monkeypatch.setitem(sys.modules, "neural_renderer.serving.renderer", None)  # import now fails
    with pytest.raises(BackendUnavailable, match="neural_renderer.serving.renderer"):
        create_renderer("generator:tiny")


def test_passthrough_conversions_match_fp32_reference():
    rng = np.random.default_rng(0)
    c = (rng.random((5, 7, 3)) * 1.4 - 0.2).astype(np.float16)  # includes values outside [0, 1]
    c[0, 0] = [np.nan, np.inf, -np.inf]
    out = np.empty((5, 7, 4), np.uint8)
    to_output(c, out)
    ref = (np.clip(np.nan_to_num(c.astype(np.float32), nan=0.0), 0, 1) * 255 + 0.5).astype(np.uint8)
    np.testing.assert_array_equal(out[..., :3], ref)
    assert (out[..., 3] == 255).all() and list(out[0, 0, :3]) == [0, 255, 0]
    out3 = np.empty((5, 7, 3), np.uint8)  # the contiguous rgb8 path (table lookup straight into out)
    to_output(c, out3)
    np.testing.assert_array_equal(out3, ref)
    f = np.empty((5, 7, 3), np.float16)
    to_output(c[..., :3].astype(np.float32), f)
    np.testing.assert_array_equal(f, c.astype(np.float32).astype(np.float16))
    u = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    to_output(u, f)
    np.testing.assert_allclose(f, u / 255.0, atol=1e-3)
    # the depth-only fallback is a deterministic grey, nearer is brighter
    s = create_renderer("passthrough").open_session(SessionSpec(2, 1, {"depth": "float32"}, 9, "rgb8", None, None))
    out = np.empty((1, 2, 3), np.uint8)
    s.render(FrameInputs(0, {"depth": np.array([[[1.0], [100.0]]], np.float32)}, {}, np.zeros(9, np.float32),
                         None, False), out)
    assert out[0, 0, 0] > out[0, 1, 0] and (out[..., 0] == out[..., 2]).all()


def test_bridge_imports_no_torch_and_serve_help():
    code = ("import sys; import bridge.server, bridge.client, bridge.daemon, bridge.serve_cmd, bridge.bench_cmd, "
            "bridge.keys_cmd; from bridge.backends import create_renderer; create_renderer('passthrough'); "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    out = subprocess.run([sys.executable, "-m", "neural_renderer.cli", "serve", "--help"], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0 and "--backend" in out.stdout and "--insecure" in out.stdout


def test_bench_bridge_small_run_writes_every_arm(tmp_path):
    path = tmp_path / "bench.json"
    assert main(["bench", "bridge", "--width", "32", "--height", "16", "--frames", "20", "--warmup", "2",
                 "--json", str(path)]) == 0
    data = json.loads(path.read_text())
    arms = data["arms"]
    assert set(arms) == {"shm", "shm+copy", "inline-ipc", "inline-tcp", "inline-tcp+curve", "raw-ipc/hdr",
                         "raw-tcp/hdr", "raw-ipc/inline", "raw-tcp/inline"}
    for name, a in arms.items():
        assert 0 < a["p50_ms"] <= a["p99_ms"] and a["fps"] > 0 and a["n"] == 20, name
    for name in ("shm", "shm+copy", "inline-ipc", "inline-tcp", "inline-tcp+curve"):
        assert arms[name]["max_abs_error_vs_color"] <= 0.5 / 255 + 1e-6  # the passthrough returned the color
    assert data["ratios"]["inline-tcp_p50 / shm_p50"] == pytest.approx(arms["inline-tcp"]["p50_ms"] /
                                                                       arms["shm"]["p50_ms"])
    assert data["input_bytes"] == 32 * 16 * 12 * 2 and data["output_bytes"] == 32 * 16 * 3
    assert_drawing(path.with_suffix(".png"))
