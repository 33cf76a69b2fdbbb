"""Shortcut distillation: the self-consistency target against hand-computed numbers, its invariants,
and a short `neurender distill` run on the micro config that measurably lowers the self-consistency
loss against fixed (frozen-teacher) targets and writes a loadable shortcut checkpoint."""
import json

import pytest
import torch

from neural_renderer.training.shortcut import masked_shortcut_target, shortcut_target, step_sizes, velocity
from neural_renderer.model.dit import CausalDiT
from neural_renderer.model.registry import micro
from _images import assert_drawing



def test_shortcut_target_by_hand():
    # a linear "model": x0_hat = 0.5 x + 0.2 t + 0.4 d. From x = 1, t = 0.5, d = 0.25:
    #   x0_hat = 0.5 + 0.1 + 0.1 = 0.7, v1 = (1 - 0.7) / 0.5 = 0.6
    #   x_mid = 1 - 0.25 * 0.6 = 0.85 at t = 0.25: x0_hat = 0.425 + 0.05 + 0.1 = 0.575,
    #   v2 = (0.85 - 0.575) / 0.25 = 1.1
    #   target v = (0.6 + 1.1) / 2 = 0.85, target x0 = 1 - 0.5 * 0.85 = 0.575
    def predict(x, t, d):
        return 0.5 * x + 0.2 * t.view(-1, 1) + 0.4 * d.view(-1, 1)

    x0, v = shortcut_target(predict, torch.tensor([[1.0]], dtype=torch.float64), torch.tensor([0.5], dtype=torch.float64),
                            torch.tensor([0.25], dtype=torch.float64))
    assert float(v) == pytest.approx(0.85, abs=1e-12)
    assert float(x0) == pytest.approx(0.575, abs=1e-12)


def test_straight_path_is_a_fixed_point():
    """A model that always predicts the same x0 follows a straight line: two half steps = one step,
    so the target is that x0 and the target velocity is (x_t - x0) / t."""
    g = torch.Generator().manual_seed(0)
    x0_true = torch.randn(3, 2, 3, 4, 4, generator=g, dtype=torch.float64)
    x_t = torch.randn(3, 2, 3, 4, 4, generator=g, dtype=torch.float64)
    t = torch.tensor([[1.0, 0.5], [0.25, 0.75], [0.5, 1.0]], dtype=torch.float64)
    d = torch.tensor([[0.5, 0.125], [0.125, 0.25], [0.25, 0.03125]], dtype=torch.float64)
    x0, v = shortcut_target(lambda x, tt, dd: x0_true, x_t, t, d)
    torch.testing.assert_close(x0, x0_true)
    torch.testing.assert_close(v, velocity(x_t, x0_true, t))


def test_context_frames_stay_put():
    """Only target frames take the intermediate step; context frames are fed x_t both times."""
    seen = []

    def predict(x, t, d):
        seen.append(x.clone())
        return torch.zeros_like(x)

    x_t = torch.arange(2 * 3 * 1 * 2 * 2, dtype=torch.float64).view(2, 3, 1, 2, 2) + 1.0
    tgt = torch.tensor([[False, False, True], [False, True, True]])
    t = torch.where(tgt, 0.5, 1.0).double()
    d = torch.where(tgt, 0.25, 0.0).double()
    masked_shortcut_target(predict, x_t, t, d, tgt)
    assert len(seen) == 2
    m = tgt.view(2, 3, 1, 1, 1)
    torch.testing.assert_close(torch.where(m, 0.0, seen[1]), torch.where(m, 0.0, x_t))  # context unchanged
    # target frames moved by -d * v1 with v1 = x_t / t (the model predicts 0): x_t * (1 - 0.25 / 0.5)
    torch.testing.assert_close(torch.where(m, seen[1], 0.0), torch.where(m, 0.5 * x_t, 0.0))


def test_step_sizes_are_powers_of_two():
    assert step_sizes(32) == [1 / 32, 1 / 16, 1 / 8, 1 / 4, 1 / 2, 1.0]
    assert step_sizes(1) == [1.0]
    with pytest.raises(ValueError):
        step_sizes(24)


def test_cli_rejects_bad_finest(tmp_path):
    from neural_renderer.cli import main

    with pytest.raises(SystemExit, match="power of two"):
        main(["distill", "--from", str(tmp_path / "x.json"), "--finest", "24"])
    with pytest.raises(SystemExit, match="sc-frac"):
        main(["distill", "--from", str(tmp_path / "x.json"), "--sc-frac", "1.5"])


def _random_teacher(path):
    """A micro model with every layer filled (the zero-initialised ones too), so predictions depend on
    the input and 1, 2 and 32 steps give different frames; not a shortcut model."""
    from neural_renderer.model.checkpoint import save_checkpoint

    torch.manual_seed(0)
    m = CausalDiT(micro())
    with torch.no_grad():
        for p in m.parameters():
            if p.dim() >= 2:
                p.normal_(0, 0.08)
    return save_checkpoint(m.state_dict(), m.cfg, path, dtype=torch.float32)


def test_distill_run_lowers_self_consistency_loss(tmp_path, one_thread, capsys):
    from neural_renderer.model.checkpoint import load_model
    from neural_renderer.cli import main

    teacher = _random_teacher(tmp_path / "teacher" / "micro")
    out = tmp_path / "out"
    # --ema 1 freezes the target model at the teacher, so the targets are fixed and the loss on
    # held-out fixed clips must fall; --sc-frac 1: every clip gets self-consistency targets
    rc = main(["distill", "--from", str(teacher), "--out", str(out), "--data", "synthetic", "--steps", "60",
               "--batch", "4", "--clip-len", "3", "--pool", "4", "--warmup", "3", "--lr", "1e-3", "--sc-frac", "1",
               "--ema", "1", "--recommended-steps", "4", "--log-every", "10", "--no-progress"])
    assert rc == 0
    res = json.loads((out / "distill_result.json").read_text())
    before, after = res["vs_teacher_two_steps_before"], res["vs_teacher_two_steps_after"]
    assert before > 1e-3  # the teacher is not self-consistent to begin with
    assert after < 0.75 * before, (before, after)
    assert res["steps"] == 60 and res["n_self_consistency_clips"] == 4
    for name in ("loss.png", "sampling.png"):
        assert_drawing(out / name)

    doc = json.loads((out / "micro.json").read_text())
    assert doc["config"]["shortcut"] is True and doc["config"]["steps"] == 4
    assert doc["train"]["kind"] == "shortcut" and doc["train"]["recommended_steps"] == 4
    assert doc["train"]["step_sizes"] == step_sizes(32)
    student = load_model(out / "micro.safetensors")
    base = load_model(teacher)
    assert student.cfg.shortcut and not base.cfg.shortcut
    ref = {k: v.bfloat16().float() for k, v in base.state_dict().items()}  # checkpoints are stored in bf16
    changed = [k for k, v in student.state_dict().items() if not torch.equal(v, ref[k])]
    assert any(k.startswith("d_embed") for k in changed)  # the step size is now used


def test_shipped_shortcut_checkpoint_loads_as_a_shortcut_model():
    """The committed `tiny-shortcut` (the H100 run in benchmarks/RESULTS.md) resolves by name, is marked a
    shortcut model with its recommended steps, and its step-size embedding differs from the teacher's."""
    from neural_renderer.model.checkpoint import load_model, load_state

    cfg, state, meta = load_state("tiny-shortcut")
    assert cfg.shortcut and cfg.steps == meta["recommended_steps"] == 2
    assert meta["kind"] == "shortcut" and meta["step_sizes"] == step_sizes(meta["finest_steps"])
    student = load_model("tiny-shortcut")
    assert (student.cfg.resolution, student.cfg.dim, student.cfg.depth) == (128, 128, 6)
    _, teacher_state, _ = load_state("dit-tiny")
    assert not torch.equal(state["d_embed.mlp.2.weight"], teacher_state["d_embed.mlp.2.weight"])


@pytest.mark.parametrize("cmd,flag", [("distill", "--from"), ("prune", "--from")])
def test_cli_names_a_missing_checkpoint(tmp_path, cmd, flag):
    from neural_renderer.cli import main

    with pytest.raises(SystemExit, match="not found"):
        main([cmd, flag, str(tmp_path / "nope.json"), "--out", str(tmp_path / "o"), "--data", "synthetic", "--no-progress"])
    with pytest.raises(SystemExit, match="no shipped checkpoint"):
        main([cmd, flag, "nosuchmodel", "--out", str(tmp_path / "o"), "--data", "synthetic", "--no-progress"])
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())  # nothing half-written


def test_recovery_loss_parts():
    """Output matching is zero for a student identical to the teacher; the flow part is the MSE to the
    true frames; the total is match_weight * match + flow."""
    import copy

    from neural_renderer.training.clip_sources import ClipBatch
    from neural_renderer.training.distill import NoisyClips, recovery_loss
    from neural_renderer.model.inputs import COND_CHANNELS
    from neural_renderer.model.flow import add_noise

    torch.manual_seed(0)
    teacher = CausalDiT(micro())
    with torch.no_grad():
        for p in teacher.parameters():
            if p.dim() >= 2:
                p.normal_(0, 0.08)
    g = torch.Generator().manual_seed(1)
    B, L, R = 2, 3, 32
    batch = ClipBatch(torch.randn(B, L, COND_CHANNELS, R, R, generator=g).clamp(0, 3), torch.rand(B, L, 3, R, R, generator=g) * 2 - 1,
                      torch.randn(B, L, 9, generator=g), torch.randn(B, 384, generator=g))
    t = torch.rand(B, L, generator=g)
    nc = NoisyClips(batch.cond, batch.target, torch.randn(B, L, 3, R, R, generator=g), t, t > 0.2)
    student = copy.deepcopy(teacher)
    loss, parts = recovery_loss(student, teacher, batch, nc, 32, g, None, match_weight=3.0)
    assert float(parts["match"]) == 0.0
    with torch.no_grad():
        pred = teacher(add_noise(nc.source, nc.noise, t), batch.cond, t, torch.zeros_like(t), batch.action, batch.prompt)
    assert float(parts["flow"]) == pytest.approx(float(((pred - batch.target) ** 2).mean()), rel=1e-5)
    with torch.no_grad():
        student.final.linear.bias.add_(0.1)
    loss, parts = recovery_loss(student, teacher, batch, nc, 32, g, None, match_weight=3.0)
    assert float(parts["match"]) > 0
    assert float(loss.detach()) == pytest.approx(3.0 * float(parts["match"]) + float(parts["flow"]), rel=1e-5)


# -- the hourglass -----------------------------------------------------------------------------------


def _hg_batch(B=2, L=3, R=32, seed=1):
    """A fixed batch at hg-micro's size with motion and disocclusion (the history path is live)."""
    from neural_renderer.training.clip_sources import ClipBatch
    from neural_renderer.model.inputs import COND_CHANNELS, MATERIAL_CHANNEL

    g = torch.Generator().manual_seed(seed)
    cond = torch.randn(B, L, COND_CHANNELS, R, R, generator=g)
    cond[:, :, MATERIAL_CHANNEL] = torch.randint(0, 32, (B, L, R, R), generator=g).float()
    return ClipBatch(cond, torch.rand(B, L, 3, R, R, generator=g) * 2 - 1, torch.randn(B, L, 9, generator=g),
                     torch.randn(B, 384, generator=g), torch.randn(B, L, 2, R, R, generator=g),
                     (torch.rand(B, L, 1, R, R, generator=g) > 0.8).float())


def test_hourglass_loss_unchanged_by_the_inputs_refactor(one_thread):
    """hourglass_loss on fixed inputs gives the numbers it gave before its inputs moved to hourglass_inputs
    (measured on the earlier code, with and without the own-output history)."""
    from _models import randomised
    from neural_renderer.training.history import HistoryAugment, hourglass_loss

    m, batch = randomised("hg-micro"), _hg_batch()
    for own, want in ((0.0, 0.6304314136505127), (1.0, 0.6285464763641357)):
        got = hourglass_loss(m, m, batch, HistoryAugment(own_output_frac=own), torch.Generator().manual_seed(5), None)
        assert float(got.detach()) == pytest.approx(want, rel=1e-6)


class _LinearClipModel(torch.nn.Module):
    """An hourglass stand-in whose prediction is known in closed form: frame i's x0_hat =
    0.5 x_i + 0.1 x_{i-1} + 0.2 t_i + 0.4 d_i (x_{-1} = 0), so a frame depends on the one before it."""

    def __init__(self):
        super().__init__()
        from types import SimpleNamespace

        self.cfg = SimpleNamespace(shortcut=True, arch="hourglass")
        self.w = torch.nn.Parameter(torch.tensor(1.0))

    def forward(self, x, cond, hist, t, d, h, action, prompt):
        prev = torch.cat([torch.zeros_like(x[:, :1]), x[:, :-1]], dim=1)
        e = lambda s: s[..., None, None, None]
        return self.w * (0.5 * x + 0.1 * prev + 0.2 * e(t) + 0.4 * e(d))

    forward_clip = forward


def test_hourglass_shortcut_target_by_hand():
    """The loss's self-consistency frame: its level on the D-grid, its target two D/2-steps of the EMA
    model with the frame before it held at x_t, every other frame plain flow at d = 1/M; loss and parts
    against the closed form of the linear stand-in, with the random draws replayed."""
    from neural_renderer.training.distill_hourglass import hourglass_shortcut_loss
    from neural_renderer.training.history import HistoryAugment, hourglass_inputs
    from neural_renderer.training.shortcut import big_steps

    batch, aug, M, n_sc = _hg_batch(B=3, L=3, R=8), HistoryAugment(own_output_frac=0.0), 8, 2
    loss, parts = hourglass_shortcut_loss(_LinearClipModel(), _LinearClipModel(), batch, aug, n_sc, M,
                                          torch.Generator().manual_seed(7), None)
    g = torch.Generator().manual_seed(7)  # replay the draws
    x = hourglass_inputs(None, batch, aug, g, None)
    D, t_grid = big_steps(n_sc, 1, M, g)
    frame = torch.randint(3, (n_sc,), generator=g).tolist()
    assert set(D.tolist()) <= {0.25, 0.5, 1.0}
    for k in range(n_sc):
        assert float(t_grid[k, 0] / D[k]) in {1.0, 2.0, 3.0, 4.0} and float(t_grid[k, 0]) <= 1.0
    t = x.t.clone()
    d = torch.full_like(t, 1.0 / M)
    target = batch.target.clone()
    for r, f in enumerate(frame):
        t[r, f], d[r, f] = t_grid[r, 0], D[r]
    x_t = (1 - t[..., None, None, None]) * batch.target + t[..., None, None, None] * x.noise
    for r, f in enumerate(frame):
        a, tt, half = x_t[r, f], float(t[r, f]), float(D[r]) / 2
        c = x_t[r, f - 1] if f > 0 else torch.zeros_like(a)  # the frame before stays at x_t
        v1 = (a - (0.5 * a + 0.1 * c + 0.2 * tt + 0.4 * half)) / tt
        a_mid = a - half * v1
        v2 = (a_mid - (0.5 * a_mid + 0.1 * c + 0.2 * (tt - half) + 0.4 * half)) / (tt - half)
        target[r, f] = a - tt * (v1 + v2) / 2
    prev = torch.cat([torch.zeros_like(x_t[:, :1]), x_t[:, :-1]], dim=1)
    pred = 0.5 * x_t + 0.1 * prev + 0.2 * t[..., None, None, None] + 0.4 * d[..., None, None, None]
    err = (pred - target).pow(2).mean(dim=(2, 3, 4))
    sc = torch.zeros(3, 3, dtype=torch.bool)
    for r, f in enumerate(frame):
        sc[r, f] = True
    assert float(loss.detach()) == pytest.approx(float(err.mean()), rel=1e-5)
    assert float(parts["sc"]) == pytest.approx(float(err[sc].mean()), rel=1e-5)
    assert float(parts["flow"]) == pytest.approx(float(err[~sc].mean()), rel=1e-5)


def test_folded_step_embedding_is_the_teacher_at_every_step_size():
    """A student from a plain teacher computes the teacher's d = 0 prediction whatever d it is told."""
    import copy

    from _models import randomised
    from neural_renderer.training.history import HistoryAugment, hourglass_inputs
    from neural_renderer.training.shortcut import fold_step_embedding

    teacher, batch = randomised("hg-micro"), _hg_batch()
    x = hourglass_inputs(teacher, batch, HistoryAugment(), torch.Generator().manual_seed(3), None)
    student = copy.deepcopy(teacher)
    fold_step_embedding(student)
    args = lambda d: (x.x_t, x.cond, x.hist, x.t, d, x.h, batch.action, batch.prompt)
    with torch.no_grad():
        want = teacher(*args(torch.zeros_like(x.t)))
        for d in (0.0, 1 / 32, 0.5, 1.0):
            # equal up to float32 reassociation (the folded bias sums the same terms in another order: seen 1.9e-6)
            torch.testing.assert_close(student(*args(torch.full_like(x.t, d))), want, atol=1e-5, rtol=1e-5)
        assert float((teacher(*args(torch.full_like(x.t, 0.5))) - want).abs().max()) > 1e-3  # unfolded, d matters
    assert float(student.d_embed.mlp[-1].weight.detach().abs().max()) == 0.0


def test_distill_hourglass_end_to_end(tmp_path, one_thread, capsys):
    """`neurender distill` on an hg-micro teacher: the student starts as the teacher (its 32-step output is
    the teacher's), the loss is finite and its flow part falls, the student's self-consistency error falls,
    the teacher-vs-student table has every step count, and the checkpoint is a shortcut hourglass that
    round-trips and streams at its recommended 2 steps."""
    import math

    from _models import randomised
    from neural_renderer.cli import main
    from neural_renderer.model.checkpoint import load_model, load_state, save_checkpoint
    from neural_renderer.serving.stream import StreamingSampler

    m = randomised("hg-micro")
    teacher = save_checkpoint(m.state_dict(), m.cfg, tmp_path / "teacher" / "hg-micro", dtype=torch.float32)
    out = tmp_path / "out"
    rc = main(["distill", "--from", str(teacher), "--out", str(out), "--data", "synthetic", "--steps", "30", "--batch", "4",
               "--clip-len", "3", "--pool", "4", "--warmup", "3", "--lr", "1e-3", "--sc-frac", "0.5", "--ema", "1",
               "--log-every", "10", "--no-progress"])
    assert rc == 0
    res = json.loads((out / "distill_result.json").read_text())
    assert res["steps"] == 30 and res["n_self_consistency_clips"] == 2
    assert all(math.isfinite(v) for _, v in res["history"]["loss"])
    flow = [v for _, v in res["history"]["flow"]]
    assert flow[-1] < 0.6 * flow[0], flow
    assert res["self_consistency_after"] < 0.5 * res["self_consistency_before"], res
    assert res["sampling_before"]["student_32"]["psnr_vs_teacher"] > 100  # the folded student is the teacher
    for k in (1, 2, 4, 32):
        row = res["sampling_after"][f"student_{k}"]
        assert row["steps"] == k and math.isfinite(row["psnr_vs_teacher"]) and math.isfinite(row["psnr_vs_truth"])
    for name in ("loss.png", "sampling.png"):
        assert_drawing(out / name)

    cfg, state, meta = load_state(out / "hg-micro.json")
    assert cfg.arch == "hourglass" and cfg.shortcut and cfg.steps == 2 and meta["kind"] == "shortcut"
    student = load_model(out / "hg-micro.safetensors")
    for k, v in student.state_dict().items():
        assert torch.equal(v, state[k].float()), k
    assert not torch.equal(state["d_embed.mlp.2.weight"].float(), m.state_dict()["d_embed.mlp.2.weight"].bfloat16().float())
    batch = _hg_batch(B=1)
    s = StreamingSampler(student, batch.prompt, seed=0)
    assert s.steps == 2 and float(s.d[0]) == 0.5  # a shortcut model is told its step size
    frame = s.step(batch.cond[:, 0], batch.action[:, 0], batch.motion[:, 0], batch.disocclusion[:, 0])
    assert frame.shape == (1, 3, 32, 32) and bool(frame.isfinite().all())
