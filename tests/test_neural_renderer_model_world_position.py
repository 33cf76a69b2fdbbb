"""The world group: world positions from depth + camera constants against the world renderer's own geometry
(an analytic scene, and a real sequence through its motion vectors), the planes' values, and absence
without a camera or a depth."""
import numpy as np
import pytest
import torch

from _demos_scenes import ground_and_box
from demos.camera import Camera, frame_constants
from demos.materials import MATERIAL_ID
from neural_renderer.model.inputs import (BASE_COND_CHANNELS, COND_CHANNELS, GROUP_FLAG, PLANES, WORLD_PERIODS,
                                          engine_to_cond, world_features)
from neural_renderer.model.world_position import world_position

W, H = 80, 60
CAMERAS = (Camera((0.3, 1.7, 0.5), yaw_deg=8.0, pitch_deg=-18.0, aspect=W / H),
           Camera((3.0, 3.5, -2.0), yaw_deg=-25.0, pitch_deg=-25.0, aspect=W / H))


def engine_frame(ctx, scene, cam):
    from demos.engine_pass import EngineRenderer

    eng = EngineRenderer(ctx, scene, W, H)
    m = scene.models()
    eng.render(cam, cam, m, m, True)
    out = eng.read()
    eng.release()
    return out


@pytest.mark.parametrize("cam", CAMERAS)
def test_positions_land_on_the_scenes_surfaces(gl_context, cam):
    scene = ground_and_box()  # ground top at y = 0, crate [-1, 1] x [0, 2] x [-9, -7]
    out = engine_frame(gl_context, scene, cam)
    xyz, valid, known = world_position(torch.from_numpy(out["depth"]), frame_constants(cam, cam, 1 / 30))
    xyz, valid = xyz.permute(1, 2, 0).numpy(), valid[0].numpy()
    mat = out["material_id"][..., 0]
    ground, crate, sky = (mat == MATERIAL_ID["concrete"]), (mat == MATERIAL_ID["wood"]), (mat == 0)
    assert bool(known) and ground.sum() > 1000 and crate.sum() > 50 and sky.sum() > 100
    np.testing.assert_allclose(xyz[ground][:, 1], 0.0, atol=1e-3)
    assert np.abs(xyz[ground][:, [0, 2]]).max() > 5  # spread over the plane, not collapsed
    c = xyz[crate]
    assert (c >= np.array([-1, 0, -9]) - 1e-3).all() and (c <= np.array([1, 2, -7]) + 1e-3).all()
    # every crate pixel lies on one of the box's faces
    on_face = np.minimum.reduce([np.abs(np.abs(c[:, 0]) - 1), np.abs(c[:, 1] - 2), np.abs(c[:, 2] + 7),
                                 np.abs(c[:, 2] + 9)])
    assert on_face.max() < 1e-3
    assert (valid[ground | crate] == 1).all() and (valid[sky] == 0).all()  # sky: depth = far, no surface
    assert (xyz[sky] == 0).all()


def test_consecutive_frames_agree_through_the_motion_vectors(gl_context):
    """A real sequence (moving camera): the surface point under a pixel, looked up where the motion vectors
    say it was in the previous frame, has the same world position there."""
    from neural_renderer.data.world import render_sequence

    a, b = list(render_sequence(3, 3, 96, 64, ctx=gl_context))[1:]
    xa = world_position(torch.from_numpy(a.engine["depth"]), a.constants)[0]
    xb, vb, _ = world_position(torch.from_numpy(b.engine["depth"]), b.constants)
    ys, xs = np.mgrid[0:64, 0:96] + 0.5
    mv = b.engine["motion"]
    grid = np.stack([(xs + mv[..., 0]) / 96 * 2 - 1, (ys + mv[..., 1]) / 64 * 2 - 1], -1)
    xa_prev = torch.nn.functional.grid_sample(xa[None], torch.from_numpy(grid[None]).float(), align_corners=False)[0]
    seen = (b.engine["disocclusion"][..., 0] == 0) & (vb[0].numpy() > 0)
    err = (xa_prev - xb).norm(dim=0).numpy()[seen]
    moved = (torch.from_numpy(np.asarray(mv)).norm(dim=-1).numpy()[seen])
    assert seen.sum() > 2000 and np.median(moved) > 0.3  # the camera moved: the lookup is not trivial
    assert np.median(err) < 0.02, np.median(err)
    still = (xa - xb).norm(dim=0).numpy()[seen]  # without the motion vectors the positions disagree
    assert np.median(still) > 5 * np.median(err)


def flat_frame(depth: float = 5.0):
    """A camera at the origin looking down -z at a wall z = -depth; the right half of the frame is sky."""
    cam = Camera((0.0, 0.0, 0.0), yaw_deg=0.0, pitch_deg=0.0, aspect=1.0, far=400.0)
    d = np.full((16, 16, 1), depth, np.float32)
    d[:, 8:] = cam.far
    return {"depth": d, "color": np.zeros((16, 16, 3), np.float32)}, frame_constants(cam, cam, 1 / 30)


def test_world_planes_values_and_sky():
    eng, consts = flat_frame()
    c = engine_to_cond(eng, constants=consts)
    assert c.shape == (COND_CHANNELS, 16, 16) and (c[GROUP_FLAG["world"]] == 1).all()
    first, n = PLANES["world"]
    world = c[first:first + n].view(len(WORLD_PERIODS), 3, 2, 16, 16)
    assert (world[..., 8:] == 0).all()  # sky
    xyz, valid, _ = world_position(torch.from_numpy(eng["depth"]), consts)
    np.testing.assert_allclose(xyz[2, :, :8].numpy(), -5.0, atol=1e-5)  # the wall z = -5
    step = 2 * 5.0 * np.tan(np.radians(35.0)) / 16  # the wall's width per pixel
    for k, period in enumerate(WORLD_PERIODS):
        amp = np.sinc(step / period) if step < period else 0.0  # box filter over the pixel along x and y
        phase = 2 * np.pi * xyz[0, 4, 2].item() / period
        torch.testing.assert_close(world[k, 0, :, 4, 2], torch.tensor([np.sin(phase), np.cos(phase)], dtype=torch.float32)
                                   * float(amp), atol=2e-4, rtol=1e-3)
        # z is constant over the wall: no footprint along it, full amplitude
        phase_z = 2 * np.pi * -5.0 / period
        torch.testing.assert_close(world[k, 2, :, 4, 2], torch.tensor([np.sin(phase_z), np.cos(phase_z)],
                                                                      dtype=torch.float32), atol=2e-4, rtol=1e-3)
    # far away a pixel spans more than the short periods: those fade to 0, the long ones stay
    far_eng, _ = flat_frame(depth=60.0)
    wf = engine_to_cond(far_eng, constants=consts)[first:first + n].view(len(WORLD_PERIODS), 3, 2, 16, 16)
    assert wf[0, 0, :, :, :8].abs().max() == 0 and wf[-1, 0, :, :, :8].abs().max() > 0.3


def test_group_absent_without_camera_or_depth():
    eng, consts = flat_frame()
    first, n = PLANES["world"]
    zero_consts = {k: np.zeros_like(v) for k, v in consts.items()}  # what a recording stores for unsent constants
    for c in (engine_to_cond(eng),  # no constants
              engine_to_cond({"color": eng["color"]}, constants=consts),  # no depth
              engine_to_cond(eng, constants={"dt": np.array([0.03], np.float32)}),  # no matrices
              engine_to_cond(eng, constants=zero_consts)):  # zero matrices
        assert (c[GROUP_FLAG["world"]] == 0).all() and torch.count_nonzero(c[first:first + n]) == 0
    # the planes before the group do not depend on it
    torch.testing.assert_close(engine_to_cond(eng, constants=consts)[:BASE_COND_CHANNELS],
                               engine_to_cond(eng)[:BASE_COND_CHANNELS])


def test_frames_of_a_clip_use_their_own_cameras():
    cams = [Camera((0.0, 1.0, 0.0), yaw_deg=0.0, pitch_deg=-30.0), Camera((2.0, 1.5, 1.0), yaw_deg=40.0, pitch_deg=-20.0)]
    consts = [frame_constants(c, c, 1 / 30) for c in cams]
    depth = np.random.default_rng(0).uniform(1, 30, (2, 8, 8, 1)).astype(np.float32)
    clip = {k: np.stack([c[k] for c in consts]) for k in consts[0]}
    both = engine_to_cond({"depth": depth}, constants=clip)
    for i in range(2):
        torch.testing.assert_close(both[i], engine_to_cond({"depth": depth[i]}, constants=consts[i]))
    assert not torch.allclose(both[0, PLANES["world"][0]:], both[1, PLANES["world"][0]:])


def test_features_of_invalid_pixels_and_isolated_pixels_are_zero():
    xyz = torch.randn(3, 4, 4) * 10
    valid = torch.zeros(1, 4, 4)
    valid[0, 1, 1] = 1.0  # no valid neighbour: its footprint is unknown
    assert torch.count_nonzero(world_features(xyz, valid)) == 0
