"""`neurender bench serve` end to end on a CPU at tiny sizes (hg-micro with random weights, the narrow
baseline config): the JSON it writes holds every figure, and the derived ones are computed from the measured."""
import json
import subprocess
import sys

import pytest

FIGURES = ("roundtrip_p50_ms", "roundtrip_p99_ms", "render_p50_ms", "render_p99_ms", "model_p50_ms", "model_p99_ms",
           "host_share_p50_ms")


def test_bench_serve_writes_every_figure(tmp_path):
    out = tmp_path / "serve.json"
    proc = subprocess.run([sys.executable, "-m", "neural_renderer.cli", "bench", "serve", "--model", "hg-micro",
                           "--device", "cpu", "--sizes", "64x64", "48x32", "--steps", "1", "--frames", "6",
                           "--warmup", "2", "--baseline-size", "64x64", "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(out.read_text())
    assert (res["device"], res["dtype"], res["steps"], res["transport"]) == ("cpu", "float32", 1, "shm")
    assert [(r["size"], r["width"], r["height"], r["frames"]) for r in res["rows"]] == [("64x64", 64, 64, 6),
                                                                                        ("48x32", 48, 32, 6)]
    for r in res["rows"]:
        assert r["kernels"] == "cpu"  # the CPU arm passes its self-check against the plain path
        assert all(isinstance(r[k], float) and r[k] > 0 or k == "host_share_p50_ms" for k in FIGURES), r
        assert r["roundtrip_p99_ms"] >= r["roundtrip_p50_ms"] and r["model_p99_ms"] >= r["model_p50_ms"]
        assert r["host_share_p50_ms"] == pytest.approx(r["roundtrip_p50_ms"] - r["model_p50_ms"], abs=1e-9)
    b = res["baseline"]
    assert (b["config"], b["size"], b["dtype"], b["cuda_graph"], b["frames"]) == ("tiny", "64x64", "float32", False, 6)
    assert b["unet_params"] == 3_222_692 and b["model_p99_ms"] >= b["model_p50_ms"] > 0
    assert [r["size"] for r in res["ratios"]] == ["64x64", "48x32"]
    for ratio, row in zip(res["ratios"], res["rows"]):
        assert ratio["ours_roundtrip_p50_ms"] == row["roundtrip_p50_ms"]
        assert ratio["baseline_model_p50_ms"] == b["model_p50_ms"]
        assert ratio["ours_over_baseline"] == pytest.approx(row["roundtrip_p50_ms"] / b["model_p50_ms"], rel=1e-12)
    assert "vs baseline 64x64 model" in proc.stdout


def test_baseline_has_sd_turbo_shapes():
    """The GPU baseline's UNet is SD-turbo's size: 865,910,724 parameters (the SD 2.1 UNet), built on the meta
    device (no memory); the VAE is TAESD's size, 1,222,532 + 1,222,531."""
    import torch

    from neural_renderer.serving.baseline_img2img import Img2ImgStep, UNetConfig, params

    with torch.device("meta"):
        m = Img2ImgStep(UNetConfig.sd_turbo())
    assert (params(m.unet), params(m.encoder), params(m.decoder)) == (865_910_724, 1_222_532, 1_222_531)
