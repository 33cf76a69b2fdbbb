"""Your own game, end to end on CPU: `neurender demo --record` plays two short sequences of the unseen ink
look through a real daemon, `neurender train --look` fine-tunes micro on them (loss goes down), a daemon
serves the checkpoint and selects the look by its name, `neurender eval --data` scores it on the held-out
sequence; and the commands refuse what they cannot use."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from bridge.client import Client
from bridge.daemon import spawn_daemon
from neural_renderer.data import SequenceDataset
from neural_renderer.data.recording import held_out, training_sequences
from _images import assert_drawing

REPO = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")


def cli(*args, check=True, timeout=240):
    r = subprocess.run([sys.executable, "-m", "neural_renderer.cli", *map(str, args)], cwd=REPO, env=ENV,
                       capture_output=True, text=True, timeout=timeout)
    if check and r.returncode:
        raise AssertionError(f"neurender {' '.join(map(str, args))} -> {r.returncode}\n{r.stderr[-3000:]}")
    return r


@pytest.fixture(scope="module")
def micro_init(tmp_path_factory):
    from neural_renderer.model.checkpoint import save_checkpoint
    from neural_renderer.model.dit import CausalDiT
    from neural_renderer.model.registry import MODELS

    torch.manual_seed(0)
    cfg = MODELS["micro"]()
    return save_checkpoint(CausalDiT(cfg).state_dict(), cfg, tmp_path_factory.mktemp("init") / "micro")


def test_record_finetune_serve_score(tmp_path, micro_init, monkeypatch):
    rec = tmp_path / "recordings"
    with spawn_daemon("passthrough", runtime_dir="private", extra_args=["--recordings-dir", str(rec)]) as d:
        cli("demo", "--record", "inkgame", "--style", "ink", "--sequences", 2, "--frames", 10,
            "--resolution", "32x32", "--endpoint", d.endpoint)
    ds = SequenceDataset(rec / "inkgame")
    assert [s.frames for s in ds.sequences] == [10, 10] and ds.index["look"]["name"] == "inkgame"
    final = np.asarray(ds.clip(0).engine["final"], np.float32)
    assert final.std() > 0.01 and np.abs(final[..., 0] - final[..., 1]).max() < 2e-3  # ink: no colour at all
    assert held_out(2) == [1] and training_sequences(2) == [0]

    out = tmp_path / "ft"
    train = ["train", "--data", rec / "inkgame", "--look", "inkgame", "--from", f"generator:{micro_init}", "--out", out,
             "--batch", 4, "--clip-len", 4, "--pool", 8, "--refresh-every", 0, "--mix", "synthetic", "--lr", 2e-3,
             "--log-every", 5, "--no-progress"]
    cli(*train, "--steps", 20)
    cli(*train, "--steps", 30, "--resume", out / "train_state.pt")  # continues at step 20
    assert json.loads((out / "train_result.json").read_text())["steps"] == 30
    hist = json.loads((out / "loss_history.json").read_text())
    assert [h[0] for h in hist] == [5, 10, 15, 20, 25, 30]
    assert hist[-1][1] < 0.8 * hist[0][1], hist
    doc = json.loads((out / "micro.json").read_text())
    emb = doc["train"]["looks"]["inkgame"]
    assert len(emb) == 384 and abs(np.linalg.norm(emb) - 1) < 1e-3
    for png in ("loss.png", "samples.png"):
        assert_drawing(out / png, min_side=32)

    # the look's prompt resolves from the checkpoint alone: no text encoder is loaded to serve it
    from neural_renderer.serving import prompts
    from neural_renderer.serving.renderer import GeneratorRenderer

    monkeypatch.setattr(prompts, "_shared_encoder", lambda: pytest.fail("the text encoder was loaded"))
    renderer = GeneratorRenderer(str(out / "micro.json"), device="cpu")
    got = renderer.prompts.submit("inkgame")
    assert got.done() and torch.equal(got.result(), torch.tensor(emb, dtype=torch.float32))
    renderer.close()

    with spawn_daemon(f"generator:{out / 'micro.json'}", runtime_dir="private", device="cpu", timeout=120) as d:
        with Client(d.endpoint) as c:
            s = c.open_session(32, 32, {"color": "float16", "depth": "float32"}, prompt="inkgame", timeout=30)
            assert s.info["renderer"]["looks"] == ["inkgame"]
            clip = ds.clip(1, 0, 2)
            r = s.render({"color": np.array(clip.engine["color"][0]), "depth": np.array(clip.engine["depth"][0])})
            assert r.image.shape == (32, 32, 3)
            s.close()
        res = cli("eval", "--renderer", f"generator:{out / 'micro.json'}", "--data", rec / "inkgame", "--endpoint",
                  d.endpoint, "--json", tmp_path / "eval.json", "--no-progress")
    result = json.loads((tmp_path / "eval.json").read_text())
    assert result["suite"] == "recording:inkgame" and [q["seed"] for q in result["sequences"]] == [1]
    head = result["headline"][f"generator:{out / 'micro.json'}"]
    assert np.isfinite(head["psnr"]) and result["headline"]["reference"]["psnr"] == float("inf")
    assert "| engine |" in res.stdout


def test_commands_refuse_what_they_cannot_use(tmp_path, micro_init):
    world = tmp_path / "not_a_recording"
    world.mkdir()
    # train --look: no --from; a directory with no index; eval --data on it
    r = cli("train", "--data", world, "--look", "x", "--out", tmp_path / "o", check=False)
    assert r.returncode == 2 and "--from" in r.stderr
    r = cli("train", "--data", world, "--look", "x", "--from", micro_init, "--out", tmp_path / "o", check=False)
    assert r.returncode == 2 and "index.json" in r.stderr
    r = cli("eval", "--renderer", "passthrough", "--data", world, check=False)
    assert r.returncode == 2 and "index.json" in r.stderr
    # a recording of one sequence has nothing held out to score
    rec = tmp_path / "rec"
    with spawn_daemon("passthrough", runtime_dir="private", extra_args=["--recordings-dir", str(rec)]) as d:
        with Client(d.endpoint) as c:
            s = c.open_session(8, 8, {"color": "float16", "final": "float16"}, record="one")
            for _ in range(3):
                s.render({"color": np.zeros((8, 8, 3), np.float16), "final": np.ones((8, 8, 3), np.float16)})
            s.close()
    from demos.record_script import wait_for_sequences

    assert wait_for_sequences(rec / "one", 1) is not None
    r = cli("eval", "--renderer", "passthrough", "--data", rec / "one", check=False)
    assert r.returncode == 2 and "none held out" in r.stderr
    # the clips are shorter than asked; a look share outside (0, 1]; --model against the --from checkpoint
    r = cli("train", "--data", rec / "one", "--look", "one", "--from", micro_init, "--out", tmp_path / "o",
            "--clip-len", 6, "--steps", 1, "--mix", "synthetic", "--pool", 2, check=False)
    assert r.returncode == 2 and "6 frames" in r.stderr
    r = cli("train", "--data", rec / "one", "--look", "one", "--from", micro_init, "--out", tmp_path / "o",
            "--look-share", 0, "--clip-len", 2, "--steps", 1, "--mix", "synthetic", "--pool", 2, check=False)
    assert r.returncode == 2 and "look share" in r.stderr
    r = cli("train", "--data", rec / "one", "--look", "one", "--from", micro_init, "--model", "tiny",
            "--out", tmp_path / "o", check=False)
    assert r.returncode == 2 and "micro checkpoint" in r.stderr
    # demo --record refuses a name the daemon cannot take
    with spawn_daemon("passthrough", runtime_dir="private", extra_args=["--recordings-dir", str(rec)]) as d:
        r = cli("demo", "--record", "../up", "--frames", 1, "--resolution", "16x16", "--endpoint", d.endpoint,
                check=False)
    assert r.returncode == 1 and "bad_field" in r.stderr


def test_the_unseen_look_is_in_no_default_data():
    """ink stands in for a user's game only: the world renderer draws it, nothing trains or scores on it."""
    from demos.styles import LOOKS, STYLES, UNSEEN_STYLES, prompt_of
    from neural_renderer.eval.suites import SUITES
    from neural_renderer.serving.prompts import load_table

    assert "ink" in LOOKS and "ink" in UNSEEN_STYLES and "ink" not in STYLES
    assert prompt_of("ink") == UNSEEN_STYLES["ink"] and prompt_of("night") == STYLES["night"]
    texts, styles, _ = load_table()  # the trainer's prompt table
    assert "ink" not in styles and UNSEEN_STYLES["ink"] not in texts
    for name, make in SUITES.items():  # every eval suite's looks
        assert all("ink" not in seq.styles for seq in make().sequences), name
