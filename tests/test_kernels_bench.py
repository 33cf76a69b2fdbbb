"""`neurender bench kernels`: the hourglass rows' roofline inputs against a count by hand on hg-micro, the floor is
the larger of its two bounds, the larger configs are what they say, and the command runs end to end on the CPU
(kernels under the Triton interpreter) with every arm checked against the fp32 model."""
import _kernels_helpers  # noqa: F401  (sets TRITON_INTERPRET before triton is imported)

import json  # noqa: E402

from bridge.channels import ACTION_DIM  # noqa: E402
from neural_renderer.commands import bench_kernels, bench_kernels_hourglass as hg  # noqa: E402
from neural_renderer.model.inputs import COND_CHANNELS  # noqa: E402
from neural_renderer.model.registry import build  # noqa: E402


def test_hourglass_step_cost_matches_a_hand_count_on_hg_micro():
    m = build("hg-micro")  # widths (8, 8, 16), enc (0, 0, 1), dec (0, 1, 1), trunk 64 x 2, 1 head, 3 slots
    c = 2 * 9  # 2 FLOPs a MAC, 3x3 kernel
    in_planes = 3 + COND_CHANNELS - 1 + 3 + 5
    conv = (c * 8 * 32 * 32 * in_planes                      # stem, full resolution
            + 2 * c * 16 * 8 * 8 * 16                        # encoder block at 1/4 (two 3x3 convs)
            + c * 8 * 16 * 16 * 8 + c * 16 * 8 * 8 * 8       # the two stride-2 convs
            + 2 * 64 * 16 * (16 * 4)                         # to_tokens: 2x2 stride 2 onto the 4x4 token grid
            + 2 * 16 * 16 * 64                               # from_tokens 1x1
            + 2 * c * 16 * 8 * 8 * 16                        # decoder block at 1/4
            + 2 * 8 * 16 * 16 * 16 + 2 * c * 8 * 16 * 16 * 8  # 1x1 up to 1/2 and its block
            + 2 * 8 * 32 * 32 * 8                            # 1x1 up to full resolution (no block there)
            + c * 3 * 32 * 32 * 8)                           # out conv
    T, D, keys = 16, 64, 3 * 16
    trunk = 2 * (2 * T * 12 * D * D + 2 * D * 6 * D + 4 * T * keys * D)
    other = (3 * 2 * (128 * D + D * D) + 2 * (ACTION_DIM * D + D * D) + 2 * 384 * D  # t, d, h, action, prompt
             + 2 * D * 2 * 16 * 2 + 2 * D * 2 * 8)                                  # FiLM of the three conv blocks
    cost = hg.step_cost(m, 32, 32)
    assert (cost["conv_flops"], cost["trunk_flops"], cost["other_flops"]) == (conv, trunk, other)
    assert cost["flops"] == conv + trunk + other
    assert cost["weight_bytes"] == 2 * sum(p.numel() for p in m.parameters())
    assert cost["io_bytes"] == 2 * 32 * 32 * (3 + COND_CHANNELS + 5 + 3)
    assert cost["kv_bytes"] == 2 * 2 * 2 * D * (keys + T)


def test_floor_is_the_larger_bound_and_the_configs_grow():
    m = build("hg-micro")
    bw, rate = 1e12, 1e14
    f = hg.floor(m, (32, 32), (bw, rate))
    must = f["weight_bytes"] + f["io_bytes"] + f["kv_bytes"]
    assert f["floor_ms"] == 1e3 * max(must / bw, f["flops"] / rate) and f["floor_bound"] == "memory"
    assert f["floor_layerwise_ms"] > f["floor_ms"]
    assert hg.floor(m, (32, 32), (1e15, 1e9))["floor_bound"] == "compute"
    cfgs = hg.configs()
    assert [(c.dim, c.depth, c.heads, c.resolution) for c in (cfgs[n] for n in bench_kernels.HOURGLASS)] == [
        (256, 8, 4, 512), (512, 12, 8, 512), (768, 16, 12, 512)]
    assert all(cfgs[n].arch == "hourglass" for n in bench_kernels.HOURGLASS)


def test_bench_kernels_runs_end_to_end_on_cpu(tmp_path, capsys):
    out = tmp_path / "kernels.json"
    assert bench_kernels.main(["--device", "cpu", "--configs", "hg-micro", "--arms", "eager,graph,fused,megakernel",
                               "--json", str(out)]) == 0
    r = json.loads(out.read_text())["configs"]["hg-micro"]
    arms = r["arms"]
    assert set(arms) == {"eager", "graph", "fused", "megakernel"}
    for name in ("eager", "fused", "megakernel"):
        assert arms[name]["pass"] and arms[name]["max_err"] <= arms[name]["bound"] and arms[name]["ms"] > 0, name
        assert arms[name]["over_floor"] == arms[name]["ms"] / r["floor_ms"]
    assert "needs CUDA" in arms["graph"]["skipped"]
    assert r["default_arm"] in ("eager", "fused", "megakernel") and r["ratios"]["megakernel_vs_fused"] > 0
    assert r["floor_ms"] > 0 and r["flops"] == hg.step_cost(build("hg-micro"), 32, 32)["flops"]
    assert "default serving arm by these times" in capsys.readouterr().out
