"""Training: loss falls on learnable data, history augmentation does what it says, checkpoints
round-trip (sharded too), resume continues, and a 2-process torchrun (gloo) keeps ranks in sync."""
import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from neural_renderer.model import checkpoint
from neural_renderer.model.dit import CausalDiT
from neural_renderer.model.registry import build
from neural_renderer.training.config import TrainConfig
from neural_renderer.training.train import blur, frame_levels, history_augment, train
from _images import assert_drawing

REPO = Path(__file__).resolve().parents[1]


def micro_cfg(tmp_path, **kw):
    base = dict(model="micro", out=str(tmp_path / "run"), data="synthetic", steps=40, batch=4, clip_len=4,
                pool=8, refresh_every=0, lr=2e-3, warmup=5, log_every=10, ckpt_every=0, styles=["sunny", "night"])
    base.update(kw)
    return TrainConfig(**base)


def test_loss_falls_and_checkpoint_is_written(tmp_path):
    cfg = micro_cfg(tmp_path, steps=40)
    res = train(cfg, progress=False)
    hist = json.loads((tmp_path / "run" / "loss_history.json").read_text())
    first, last = hist[0][1], hist[-1][1]
    assert last < 0.6 * first, hist
    assert res["steps"] == 40
    assert_drawing(tmp_path / "run" / "loss.png")
    m = checkpoint.load_model(tmp_path / "run" / "micro.json")
    assert m.cfg.name == "micro"
    # it learned: on held-out synthetic clips the saved weights predict the clean frames better than the
    # weights the run started from (train seeds torch with cfg.seed before building the model)
    torch.manual_seed(cfg.seed)
    start = CausalDiT(m.cfg)
    assert held_out_loss(m) < 0.8 * held_out_loss(start)


def held_out_loss(model) -> float:
    from neural_renderer.model.flow import add_noise
    from neural_renderer.serving.prompts import style_embeddings
    from neural_renderer.training.clip_sources import ClipPool, synthetic_clips

    styles = ["sunny", "night"]
    pool = ClipPool(4, 4, model.cfg.resolution, styles, style_embeddings(), device="cpu")
    for clip in itertools.islice(synthetic_clips(4, model.cfg.resolution, styles, seed=4242), 4):
        pool.add(clip)
    g = torch.Generator().manual_seed(0)
    batch = pool.sample(4, g)
    t = torch.full(batch.target.shape[:2], 0.6)
    x_t = add_noise(batch.target, torch.randn(batch.target.shape, generator=g), t)
    with torch.no_grad():
        pred = model(x_t, batch.cond, t, torch.zeros_like(t), batch.action, batch.prompt)
    return float(((pred - batch.target) ** 2).mean())


def test_resume_continues_from_saved_state(tmp_path):
    cfg = micro_cfg(tmp_path, steps=6)
    train(cfg, progress=False)
    state = torch.load(tmp_path / "run" / "train_state.pt", weights_only=True)
    assert state["step"] == 6
    cfg2 = micro_cfg(tmp_path, steps=9, resume=str(tmp_path / "run" / "train_state.pt"))
    res = train(cfg2, progress=False)
    assert res["steps"] == 9
    state2 = torch.load(tmp_path / "run" / "train_state.pt", weights_only=True)
    assert state2["step"] == 9
    changed = [k for k in state["model"] if not torch.equal(state["model"][k], state2["model"][k])]
    assert changed  # it kept training from the loaded weights


def test_history_augmentation():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 5, 3, 8, 8) * 2 - 1
    cfg = TrainConfig(blur_p=1.0, color_shift_p=0.0)
    torch.testing.assert_close(history_augment(x, cfg, g), blur(x.view(10, 3, 8, 8)).view_as(x).clamp(-1, 1))
    const = torch.full((1, 3, 6, 6), 0.3)
    torch.testing.assert_close(blur(const), const)  # a box blur keeps flat regions
    cfg = TrainConfig(blur_p=0.0, color_shift_p=0.0)
    torch.testing.assert_close(history_augment(x, cfg, g), x)
    cfg = TrainConfig(blur_p=0.0, color_shift_p=1.0)
    assert not torch.allclose(history_augment(x, cfg, g), x)
    t = frame_levels(64, 6, TrainConfig(context_frac=0.5, context_max_noise=0.2), g, "cpu")
    assert (t[:, -1] > 0).all() and ((t < 0.2).float().mean() > 0.3)
    assert t.min() >= 0 and t.max() <= 1


def test_checkpoint_shards_round_trip(tmp_path, monkeypatch):
    m = build("micro")
    with torch.no_grad():
        for p in m.parameters():
            p.normal_()
    cap = 400_000  # above the largest tensor (patch embed, ~295 kB in fp32)
    monkeypatch.setattr(checkpoint, "MAX_SHARD_BYTES", cap)
    cfg_path = checkpoint.save_checkpoint(m.state_dict(), m.cfg, tmp_path / "micro", dtype=torch.float32)
    doc = json.loads(cfg_path.read_text())
    assert len(doc["shards"]) > 1
    assert all((tmp_path / s).stat().st_size < cap + 16_000 for s in doc["shards"])  # + safetensors header
    for spec in (cfg_path, tmp_path / doc["shards"][1]):
        m2 = checkpoint.load_model(spec)
        for (k, a), b in zip(m.state_dict().items(), m2.state_dict().values()):
            assert torch.equal(a, b), k
    # saving again unsharded removes the stale shards
    monkeypatch.setattr(checkpoint, "MAX_SHARD_BYTES", 10 ** 9)
    checkpoint.save_checkpoint(m.state_dict(), m.cfg, tmp_path / "micro")
    assert sorted(p.name for p in tmp_path.glob("*.safetensors")) == ["micro.safetensors"]
    with pytest.raises(FileNotFoundError):
        checkpoint.resolve(tmp_path / "nope.json")


DDP_SCRIPT = """
import sys, torch, torch.distributed as dist
from neural_renderer.training.train import TrainConfig, train
out = sys.argv[1]
cfg = TrainConfig(model="micro", out=out, data="synthetic", steps=4, batch=2, clip_len=3, pool=4,
                  refresh_every=0, log_every=2, ckpt_every=0, styles=["sunny"], time_budget_s=1e6)
train(cfg, progress=False)
"""


@pytest.mark.timeout(180)
def test_torchrun_two_processes_gloo(tmp_path):
    script = tmp_path / "ddp_train.py"
    script.write_text(DDP_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    # --max-restarts 1: on a loaded 2-core CI machine gloo's start-up has aborted once ("terminate called
    # without an active exception" before any output was written); torchrun restarts the whole group then.
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "--max-restarts", "1",
           str(script), str(tmp_path / "run")]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=170, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads((tmp_path / "run" / "train_result.json").read_text())
    assert res["world_size"] == 2 and res["steps"] == 4
    state = torch.load(tmp_path / "run" / "train_state.pt", weights_only=True)
    assert state["step"] == 4


def test_edge_loss_weight_adds_the_gradient_term(tmp_path):
    """The hourglass objective with edge_loss > 0 equals its plain MSE plus the weighted edge term on the
    same draws (same seeds), and a short run with it trains."""
    from neural_renderer.serving.prompts import style_embeddings
    from neural_renderer.training.clip_sources import ClipPool, synthetic_clips
    from neural_renderer.training.history import HistoryAugment, edge_l1, hourglass_loss
    from neural_renderer.model.registry import MODELS

    model = build(MODELS["hg-micro"]())
    pool = ClipPool(2, 3, 32, ["sunny"], style_embeddings(), device="cpu")
    for clip in itertools.islice(synthetic_clips(3, 32, ["sunny"], seed=5), 2):
        pool.add(clip)
    batch = pool.sample(2, torch.Generator().manual_seed(1))
    aug = HistoryAugment(own_output_frac=0.0)
    plain = hourglass_loss(model, model, batch, aug, torch.Generator().manual_seed(3), None)
    both = hourglass_loss(model, model, batch, aug, torch.Generator().manual_seed(3), None, edge_weight=0.5)
    assert float(both.detach()) > float(plain.detach())
    # recover the prediction's edge term: the difference is exactly 0.5 * edge_l1(pred, target)
    captured = {}
    orig = model.forward
    model.forward = lambda *a, **k: captured.setdefault("pred", orig(*a, **k))
    hourglass_loss(model, model, batch, aug, torch.Generator().manual_seed(3), None)
    model.forward = orig
    torch.testing.assert_close(both - plain, 0.5 * edge_l1(captured["pred"].float(), batch.target), rtol=1e-4, atol=1e-6)
    res = train(micro_cfg(tmp_path, model="hg-micro", steps=20, edge_loss=0.2), progress=False)
    hist = json.loads((tmp_path / "run" / "loss_history.json").read_text())
    assert res["steps"] == 20 and hist[-1][1] < hist[0][1], hist


def test_own_output_rounds_chain_the_models_predictions_as_history():
    """With own_output_rounds = R the history is the model's prediction fed back 1..R times (drawn per batch):
    a fake model that adds 0.1 to the history it is given shows how deep the chain is at every frame: after k
    rounds frame i's history holds 0.1 * min(k, i) (frame 0 has none; a frame can be at most i generations
    deep). R = 1 is one prediction, as before; R < 1 is refused."""
    from types import SimpleNamespace

    from neural_renderer.model.inputs import COND_CHANNELS
    from neural_renderer.training.clip_sources import ClipBatch
    from neural_renderer.training.history import HistoryAugment, hourglass_inputs

    B, L, H, W = 2, 5, 4, 4
    batch = ClipBatch(cond=torch.zeros(B, L, COND_CHANNELS, H, W), target=torch.zeros(B, L, 3, H, W),
                      action=torch.zeros(B, L, 8), prompt=torch.zeros(B, 4),
                      motion=torch.zeros(B, L, 2, H, W), disocclusion=torch.zeros(B, L, 1, H, W))

    class Fake:
        cfg = SimpleNamespace(shortcut=False)
        calls = 0

        def forward_clip(self, noise, cond, hist, t, d, h, action, prompt):
            self.calls += 1
            return hist[:, :, :3] + 0.1

    def run(rounds, seed):
        fake = Fake()
        aug = HistoryAugment(own_output_frac=1.0, own_output_rounds=rounds, history_noise_p=0.0, history_drop_p=0.0,
                             blur_p=0.0, color_shift_p=0.0, drop_group_p=0.0)
        x = hourglass_inputs(fake, batch, aug, torch.Generator().manual_seed(seed), None)
        return fake.calls, x.hist[:, :, :3].mean(dim=(0, 2, 3, 4))  # history colour per frame

    seen = set()
    for seed in range(12):
        k, colour = run(3, seed)
        seen.add(k)
        torch.testing.assert_close(colour, torch.tensor([0.1 * min(k, i) for i in range(L)]))
    assert seen == {1, 2, 3}, seen
    for seed in range(3):
        k, colour = run(1, seed)
        assert k == 1
        torch.testing.assert_close(colour, torch.tensor([0.0] + [0.1] * (L - 1)))
    with pytest.raises(ValueError, match="own_output_rounds"):
        HistoryAugment(own_output_rounds=0)
