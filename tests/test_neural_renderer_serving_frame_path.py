"""The whole-frame program (neural_renderer.serving.frame_path): on CPU it runs eagerly and must give the plain
per-frame path's output bit for bit, frame after frame, through a reset, a look switch, a frame without camera
constants and one without motion vectors; its buffers are static; its arms are never offered without CUDA."""
import _kernels_helpers  # noqa: F401  (sets TRITON_INTERPRET before triton is imported)

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from bridge.backends import BackendUnavailable, FrameInputs, SessionSpec  # noqa: E402
from bridge.styles import STYLES  # noqa: E402
from neural_renderer.model.checkpoint import load_model, save_checkpoint  # noqa: E402
from neural_renderer.model.inputs import GROUP_FLAG, PLANES  # noqa: E402
from neural_renderer.serving import arms, frame_program  # noqa: E402
from neural_renderer.serving.frame_check import camera, engine_frame, pair, run, stream  # noqa: E402
from neural_renderer.serving.frame_path import FramePath  # noqa: E402
from neural_renderer.serving.renderer import GeneratorRenderer  # noqa: E402
from _models import randomised  # noqa: E402

ARM = arms.ARMS["frame-graph"]


def _err(a, b) -> float:
    return float(np.abs(a.astype(np.float32) - b.astype(np.float32)).max())


@pytest.mark.parametrize("name,H,W", [("hg-micro", 32, 32), ("hg-micro", 24, 40), ("tiny", 64, 64)])
def test_whole_frame_equals_the_plain_path(name, H, W):
    """12 frames (cache filling, then steady; reset at 4, look switch at 6, no constants at 2, no motion at 3):
    the same bytes out, in rgb8 (and rgba16f on hg-micro)."""
    m = randomised(name, seed=1) if name == "hg-micro" else load_model("tiny")
    frames = stream(H, W, 12)
    for fmt in ((np.uint8, 3), (np.float16, 4))[: 2 if name == "hg-micro" else 1]:
        (plain, s0), (whole, s1) = pair(m, ARM, (H, W))
        a, b = run(plain, s0, frames, fmt), run(whole, s1, frames, fmt)
        assert [_err(x, y) for x, y in zip(a, b)] == [0.0] * 12
    assert _err(a[1], a[2]) > 0.05 and _err(a[5], a[11]) > 0.05  # frames differ: not a constant output
    if fmt[1] == 4:
        assert (b[0][..., 3] == 1.0).all() and (a[0][..., 3] == 1.0).all()


def test_world_planes_and_history_follow_the_frame():
    """What the program feeds the model is what each frame carries: the world planes and their flag with a
    camera, zeros without; the history used after a frame, absent after a reset; the same noise stream."""
    m = randomised("hg-micro", seed=1)
    H, W = 24, 40
    (plain, s0), (whole, s1) = pair(m, ARM, (H, W))
    frames = stream(H, W, 6)
    wf, wn = PLANES["world"]
    for t, f in enumerate(frames):
        run(whole, s1, [f])
        prog = next(e.program for e in whole.entries.values() if e.program.layout.has("motion") == ("motion" in f["pixels"]))
        cond = prog.cond[0]
        world = cond[wf:wf + wn]
        if f["constants"] is None:
            assert float(world.abs().max()) == 0.0 and float(cond[GROUP_FLAG["world"]].abs().max()) == 0.0
        else:
            assert float(world.abs().max()) > 0.5 and float(cond[GROUP_FLAG["world"]].min()) == 1.0
            assert float(world[:, : H // 4, : W // 3].abs().max()) == 0.0  # sky: no surface
        run(plain, s0, [f])
        assert torch.equal(s1.rng.get_state(), s0.rng.get_state())  # the same draws, in the same order
    # without motion vectors anywhere, frame 1 differs: the history is used when it is there
    (p2, s2), _ = pair(m, ARM, (H, W))
    still = [dict(f, pixels={k: v for k, v in f["pixels"].items() if k not in ("motion", "disocclusion")}) for f in frames]
    (p3, s3), _ = pair(m, ARM, (H, W))
    assert _err(run(p2, s2, frames[:2])[1], run(p3, s3, still[:2])[1]) > 1e-3


def test_buffers_are_static():
    """One program per layout; its output, conditioning and previous-output buffers are the same memory frame
    after frame, and what render returns is the static output."""
    m = randomised("hg-micro", seed=1)
    _, (whole, s) = pair(m, ARM, (32, 32))
    pixels, out = engine_frame(32, 32, 0), np.zeros((32, 32, 3), np.uint8)
    ptrs = set()
    for t in range(6):
        y = whole.render(pixels, camera(float(t), 1.0), np.zeros(9, np.float32), out)
        (e,) = whole.entries.values()
        ptrs.add((y.data_ptr(), e.program.out.data_ptr(), e.program.cond.data_ptr(), e.program.prev.data_ptr(),
                  s.prev.data_ptr(), s.cache.k.data_ptr()))
    assert len(ptrs) == 1 and len(whole.entries) == 1


def test_the_check_passes_it_and_refuses_a_broken_program(monkeypatch):
    m = randomised("hg-micro", seed=1)
    ok, detail = arms.check(m, ARM, (16, 24))
    assert ok and "frame err 0 <= bound" in detail
    monkeypatch.setattr(frame_program.FrameProgram, "_history", lambda self, chans, vec: self.absent)
    ok, detail = arms.check(m, ARM, (16, 24))
    assert not ok and "frame err" in detail and "> bound" in detail


def test_not_offered_without_cuda(tmp_path):
    assert not any(arms.ARMS[n].frame for n in arms.candidates(torch.device("cpu")))
    assert {"frame-graph", "frame-graph+fused"} <= set(arms.candidates(torch.device("cuda")))
    m = randomised("hg-micro")
    ck = save_checkpoint(m.state_dict(), m.cfg, tmp_path / "hg", dtype=torch.float32)
    assert GeneratorRenderer(str(ck), device="cpu").describe()["kernels"] == "cpu"
    for name in ("frame-graph", "frame-graph+fused"):
        with pytest.raises(BackendUnavailable, match="CUDA graph needs a CUDA device"):
            GeneratorRenderer(str(ck), device="cpu", kernels=name)


def test_a_session_on_the_whole_frame_path_serves_what_the_plain_session_does(tmp_path):
    """Through the backend's own sessions (events, prompt table, staging): a reset, a switch of look by name, a
    frame without constants, one without motion."""
    m = randomised("hg-micro", seed=2)
    ck = save_checkpoint(m.state_dict(), m.cfg, tmp_path / "hg", dtype=torch.float32)
    r = GeneratorRenderer(str(ck), device="cpu", kernels="eager")
    H, W = 24, 40
    spec = SessionSpec(width=W, height=H, channels={k: np.dtype(v).name for k, v in
                                                    {**{c: np.float16 for c in ("color", "depth", "normals", "albedo")},
                                                     "material_id": np.uint8, "motion": np.float16, "disocclusion": np.uint8}.items()},
                       action_dim=9, output_format="rgb8", prompt=STYLES["sunny"], steps=None)
    plain, whole = r.open_session(spec), r.open_session(spec)
    whole.frame = FramePath(whole.gen, whole.io, whole.size, True, cuda_graph=False)
    outs = []
    for rs in (plain, whole):
        seq = []
        for t, f in enumerate(stream(H, W, 9, seed=3)):
            fi = FrameInputs(seq=t, pixels=f["pixels"], constants=f["constants"], action=f["action"], reset=f["reset"],
                             prompt=STYLES["winter"] if t == 6 else None)
            out = np.zeros((H, W, 3), np.uint8)
            rs.render(fi, out)
            seq.append(out)
        outs.append(seq)
    assert [_err(a, b) for a, b in zip(*outs)] == [0.0] * 9
    assert torch.equal(plain.gen.prompt, whole.gen.prompt) and whole.frame.entries


def test_whole_frame_equals_the_plain_path_with_sink_refresh():
    """`sink_every=2` (the refresh runs before the frame's forwards, outside the program): the whole-frame path
    still gives the plain path's bytes, and the refresh changes the frames against the shipped run."""
    m = randomised("hg-micro", seed=1)
    frames = stream(32, 32, 12)
    (plain, s0), _ = pair(m, ARM, (32, 32))
    shipped = run(plain, s0, frames, (np.uint8, 3))
    m.cfg.sink_every = 2
    (plain, s0), (whole, s1) = pair(m, ARM, (32, 32))
    a, b = run(plain, s0, frames, (np.uint8, 3)), run(whole, s1, frames, (np.uint8, 3))
    assert [_err(x, y) for x, y in zip(a, b)] == [0.0] * 12
    assert max(_err(x, y) for x, y in zip(a, shipped)) > 0.05
