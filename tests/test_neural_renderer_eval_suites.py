"""The suites: held-out seeds only, the sizes the issue asks for, and drift windows that compare one look."""
import pytest

from demos.seeds import is_eval_seed
from bridge.styles import STYLES
from neural_renderer.eval.suites import SUITES, get_suite


@pytest.mark.parametrize("name", list(SUITES))
def test_suites_use_eval_seeds_and_known_styles(name):
    s = get_suite(name)
    seeds = [q.seed for q in s.sequences]
    assert all(is_eval_seed(x) for x in seeds) and len(set(seeds)) == len(seeds)
    for q in s.sequences:
        assert q.schedule[0][0] == 0 and set(st for _, st in q.schedule) <= set(q.styles) <= set(STYLES)
        assert all(0 < r < q.frames for r in q.resets)
    longest = max(s.sequences, key=lambda q: q.frames)
    # the drift headline needs a later window in the first window's look
    w = s.drift_window
    firsts = {longest.style_at(t) for t in range(w)}
    lasts = {longest.style_at(t) for t in range(longest.frames - w, longest.frames)}
    assert len(firsts) == 1 and lasts == firsts


def test_suite_sizes():
    q, f = get_suite("quick"), get_suite("full")
    assert q.width * q.height <= 96 * 96 and sum(x.frames for x in q.sequences) <= 100
    assert max(x.frames for x in f.sequences) == 10_000 and f.drift_window == 1000
    assert get_suite("standard", (256, 144)).width == 256
    with pytest.raises(KeyError, match="unknown suite"):
        get_suite("nope")


def test_cache_keys_differ_by_everything_that_changes_frames():
    q = get_suite("quick").sequences[0]
    assert q.cache_key(64, 64) != q.cache_key(96, 96)
    assert q.cache_key(64, 64) != get_suite("quick").sequences[1].cache_key(64, 64)


def test_cache_key_follows_the_world_renderer_sources(tmp_path, monkeypatch):
    """Editing anything the world renders with (a shader here) gives new cache keys: no stale frames."""
    import shutil
    from pathlib import Path

    import demos
    from neural_renderer.eval import suites

    copy = tmp_path / "demos"
    shutil.copytree(Path(demos.__file__).parent, copy, ignore=shutil.ignore_patterns("__pycache__"))
    q = get_suite("quick").sequences[0]
    suites.world_fingerprint.cache_clear()
    monkeypatch.setattr(demos, "__file__", str(copy / "__init__.py"))
    try:
        before = q.cache_key(64, 64)
        shader = sorted((copy / "shaders").iterdir())[0]
        shader.write_bytes(shader.read_bytes() + b"\n// edited\n")
        suites.world_fingerprint.cache_clear()
        after = q.cache_key(64, 64)
    finally:
        suites.world_fingerprint.cache_clear()
    assert before != after and before.split("-")[2:] == after.split("-")[2:]


def test_a_suite_holds_the_seeds_of_its_split_only(tmp_path):
    """Eval suites take evaluation seeds only; a tuning suite (split "train") training seeds only, and its frames are
    a train-split dataset (the writer's own guard refuses the other split's seeds too)."""
    from neural_renderer.data.format import EvalSeedError
    from neural_renderer.eval.cache import sequence_dataset
    from neural_renderer.eval.suites import EVAL_SEED_BASE, EvalSequence, Suite

    train, held_out = EvalSequence(17, 4, ("night",), ((0, "night"),)), EvalSequence(EVAL_SEED_BASE, 4, ("night",), ((0, "night"),))
    assert Suite("tune", 32, 32, (train,), 2, split="train").split == "train"
    with pytest.raises(ValueError, match="not an evaluation seed"):
        Suite("x", 32, 32, (train,), 2)
    with pytest.raises(ValueError, match="not a training seed"):
        Suite("tune", 32, 32, (held_out,), 2, split="train")
    with pytest.raises(ValueError, match="not a training seed"):
        Suite("tune", 32, 32, (EvalSequence(5000, 4, ("night",), ((0, "night"),)),), 2, split="train")
    with pytest.raises(ValueError, match="split"):
        Suite("tune", 32, 32, (train,), 2, split="test")
    with pytest.raises(EvalSeedError):
        sequence_dataset(held_out, 16, 16, tmp_path, progress=False, split="train")
    assert get_suite("quick", (96, 96)).split == "eval"
