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
