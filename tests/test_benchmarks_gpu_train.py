"""The GPU training call's run table: every run is a valid TrainConfig of a registered model size, and
`--set FIELD=VALUE` overrides are cast to their field's type or refused by name."""
import pytest

from benchmarks.gpu_train import RUNS, parse_overrides
from neural_renderer.model.registry import MODELS
from neural_renderer.training.config import TrainConfig


@pytest.mark.parametrize("run", sorted(RUNS))
def test_every_run_is_a_train_config_of_a_registered_model(run):
    cfg = TrainConfig(out="/tmp/unused", **RUNS[run])
    assert cfg.model in MODELS
    assert cfg.own_output_rounds >= 1 and cfg.batch > 0 and cfg.clip_len >= 2


def test_overrides_are_cast_and_unknown_fields_refused():
    got = parse_overrides(["refresh_every=4", "own_output_rounds=3", "edge_loss=0.1", "world=false"])
    assert got == {"refresh_every": 4, "own_output_rounds": 3, "edge_loss": 0.1, "world": False}
    assert isinstance(got["refresh_every"], int) and isinstance(got["edge_loss"], float)
    with pytest.raises(SystemExit, match="not_a_field"):
        parse_overrides(["not_a_field=1"])


def test_stability_check_scores_each_trained_run_beside_the_shipped_model(tmp_path):
    """The long-run check's command, run for real at a tiny length: the shipped tiny (its sweep value 0) and the
    run's checkpoint (here a copy of the shipped weights, so both arms must score the same) over a training seed;
    a run without a checkpoint (its trainer died) is left out."""
    import json
    import shutil
    import subprocess

    from benchmarks.gpu_train import stability_commands
    from neural_renderer.model.checkpoint import SHIPPED_DIR

    (tmp_path / "tiny").mkdir()
    for f in ("tiny.json", "tiny.safetensors"):
        shutil.copy(SHIPPED_DIR / f, tmp_path / "tiny" / f)
    cmds = stability_commands(tmp_path, ["tiny", "tiny-rounds3"], "cpu", frames=3, seeds=(17,), looks=("night",))
    assert len(cmds) == 1 and cmds[0].count(f"generator:{tmp_path / 'tiny' / 'tiny.json'}") == 1
    assert not any("tiny-rounds3" in c for c in cmds[0])
    done = subprocess.run(cmds[0] + ["--threads", "1"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads((tmp_path / "stability_tiny" / "tune_history_noise.json").read_text())
    means = {arm: result["arms"][arm]["mean"]["psnr"] for arm in result["arms"]}
    assert len(means) == 2 and result["runs"] == [{"seed": 17, "look": "night"}]
    shipped, run = means["0"], means[f"generator:{tmp_path / 'tiny' / 'tiny.json'}"]
    assert abs(shipped - run) < 1e-3 and 5.0 < shipped < 40.0
