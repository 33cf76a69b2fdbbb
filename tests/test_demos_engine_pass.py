"""The engine pass against analytic geometry (bridge/channels.py conventions), on a real llvmpipe context."""
from __future__ import annotations

import numpy as np
import pytest

from _demos_scenes import ground_and_box, pixel_centres, pixel_rays, project
from bridge.channels import CHANNELS
from demos.camera import Camera, frame_constants
from demos.engine_pass import EngineRenderer
from demos.materials import MATERIAL_ID

W, H = 80, 60
CAM = Camera((0.3, 1.7, 0.5), yaw_deg=8.0, pitch_deg=-18.0, aspect=W / H)


@pytest.fixture(scope="module")
def ctx():
    from demos.gl import create_context

    c = create_context(headless=True)
    yield c
    c.release()


def render(ctx, scene, frames):
    """frames: list of (camera, models, reset); returns the engine output of the last one."""
    eng = EngineRenderer(ctx, scene, W, H)
    prev_cam, prev_models = frames[0][0], frames[0][1]
    for cam, models, reset in frames:
        eng.render(cam, prev_cam, models, prev_models, reset)
        prev_cam, prev_models = cam, models
    out = eng.read()
    eng.release()
    return out


def test_depth_is_the_analytic_distance_to_the_ground_plane(ctx):
    scene = ground_and_box()
    out = render(ctx, scene, [(CAM, scene.models(), True)])
    rays = pixel_rays(CAM, W, H)  # view-space z of each ray is -1, so the ray parameter IS the linear depth
    t = -CAM.position[1] / rays[..., 1]  # hits y = 0
    ground = out["material_id"][..., 0] == MATERIAL_ID["concrete"]
    assert ground.sum() > 0.3 * W * H
    got = out["depth"][..., 0][ground]
    np.testing.assert_allclose(got, t[ground], rtol=2e-4, atol=1e-4)
    # the crate's front face is the plane z = -7: depth = (cam.z + 7) / (-ray.z in world)
    crate = out["material_id"][..., 0] == MATERIAL_ID["wood"]
    front = crate & (np.abs(out["normals"][..., 2] - CAM.world_to_view()[2, 2]) < 1e-3)
    assert front.sum() > 20
    t_front = (-7.0 - CAM.position[2]) / rays[..., 2]
    np.testing.assert_allclose(out["depth"][..., 0][front], t_front[front], rtol=2e-4)


def test_normals_of_axis_aligned_faces_are_the_view_rotated_axes(ctx):
    scene = ground_and_box()
    cam = Camera((3.0, 3.5, -2.0), yaw_deg=-25.0, pitch_deg=-25.0, aspect=W / H)  # sees the crate's top, front, right
    out = render(ctx, scene, [(cam, scene.models(), True)])
    rot = cam.world_to_view()[:3, :3]
    n = out["normals"].reshape(-1, 3)
    mat = out["material_id"].reshape(-1)
    np.testing.assert_allclose(np.linalg.norm(n[mat > 0], axis=1), 1.0, atol=1e-4)
    up = rot @ np.array([0.0, 1.0, 0.0])
    np.testing.assert_allclose(n[mat == MATERIAL_ID["concrete"]], np.broadcast_to(up, n[mat == MATERIAL_ID["concrete"]].shape), atol=1e-4)
    faces = {name: rot @ np.array(v, float) for name, v in
             {"+x": (1, 0, 0), "+y": (0, 1, 0), "+z": (0, 0, 1)}.items()}
    crate = n[mat == MATERIAL_ID["wood"]]
    dist = np.stack([np.linalg.norm(crate - f, axis=1) for f in faces.values()], 1)
    assert dist.min(1).max() < 1e-4, "every crate pixel has exactly one of the three visible face normals"
    counts = np.bincount(dist.argmin(1), minlength=3)
    assert (counts > 10).all(), counts
    assert (out["normals"][out["material_id"][..., 0] == 0] == 0).all(), "sky has no surface normal"


def test_static_camera_gives_zero_motion_and_no_disocclusion(ctx):
    scene = ground_and_box()
    m = scene.models()
    out = render(ctx, scene, [(CAM, m, True), (CAM, m, False)])
    assert np.abs(out["motion"]).max() < 1e-3
    assert out["disocclusion"].max() == 0


def test_reset_frame_has_no_motion_and_everything_disoccluded(ctx):
    scene = ground_and_box()
    moved = Camera((1.0, 1.7, 0.0), yaw_deg=20.0, pitch_deg=-10.0, aspect=W / H)
    out = render(ctx, scene, [(CAM, scene.models(), True), (moved, scene.models(), True)])
    assert np.abs(out["motion"]).max() == 0
    assert (out["disocclusion"] == 1).all()


def test_camera_motion_matches_reprojection_of_the_depth(ctx):
    scene = ground_and_box()
    cam0 = CAM
    cam1 = Camera((0.8, 1.75, 0.1), yaw_deg=11.0, pitch_deg=-16.5, aspect=W / H)  # moved and turned
    m = scene.models()
    out = render(ctx, scene, [(cam0, m, True), (cam1, m, False)])
    surf = (out["material_id"][..., 0] > 0) & (out["disocclusion"][..., 0] == 0)
    assert surf.sum() > 0.5 * W * H
    # the surface point of each pixel, from cam1's depth, projected into cam0
    p = np.asarray(cam1.position) + pixel_rays(cam1, W, H) * out["depth"]
    expected = project(p, cam0, W, H) - pixel_centres(W, H)
    np.testing.assert_allclose(out["motion"][surf], expected[surf], atol=0.02)
    assert np.abs(expected[surf]).max() > 3.0, "the test motion must be large enough to mean something"
    # the same reprojection through the published constants (clip_to_prev_clip)
    c = frame_constants(cam1, cam0, 1 / 30)
    c2p = c["clip_to_prev_clip"].reshape(4, 4)
    clip = np.concatenate([p, np.ones(p.shape[:-1] + (1,))], -1) @ (cam1.view_to_clip() @ cam1.world_to_view()).T
    prev = clip @ c2p.T
    ndc = prev[..., :2] / prev[..., 3:4]
    via_constants = np.stack([(ndc[..., 0] * 0.5 + 0.5) * W, (0.5 - 0.5 * ndc[..., 1]) * H], -1) - pixel_centres(W, H)
    np.testing.assert_allclose(out["motion"][surf], via_constants[surf], atol=0.02)
    # sky: a point at infinity moves with the rotation only
    sky = (out["material_id"][..., 0] == 0) & (out["disocclusion"][..., 0] == 0)
    assert sky.sum() > 0.1 * W * H
    far = np.asarray(cam1.position) + pixel_rays(cam1, W, H) * 1e6
    rotated_only = Camera(cam1.position, cam0.yaw_deg, cam0.pitch_deg, aspect=W / H)
    sky_expected = project(far, rotated_only, W, H) - pixel_centres(W, H)
    np.testing.assert_allclose(out["motion"][sky], sky_expected[sky], atol=0.05)
    np.testing.assert_allclose(out["depth"][out["material_id"] == 0], cam1.far)


def test_object_motion_and_the_disocclusion_it_leaves_behind(ctx):
    scene = ground_and_box(box_obj=1)
    cam = Camera((0.0, 1.7, 0.0), yaw_deg=0.0, pitch_deg=-12.0, aspect=W / H)
    m0, m1 = scene.models(), scene.models()
    m0[1][:3, 3] = (-1.0, 0.0, -8.0)
    m1[1][:3, 3] = (0.6, 0.0, -8.0)  # the crate slid 1.6 m to the right
    out = render(ctx, scene, [(cam, m0, True), (cam, m1, False)])
    mat, dis = out["material_id"][..., 0], out["disocclusion"][..., 0]
    crate = mat == MATERIAL_ID["wood"]
    assert crate.sum() > 50
    p = np.asarray(cam.position) + pixel_rays(cam, W, H) * out["depth"]
    expected = project(p - np.array([1.6, 0.0, 0.0]), cam, W, H) - pixel_centres(W, H)
    vis = crate & (dis == 0)
    np.testing.assert_allclose(out["motion"][vis], expected[vis], atol=0.02)
    assert out["motion"][vis][:, 0].max() < -5.0, "the crate moved right, so its previous position is to the left"
    ground = mat == MATERIAL_ID["concrete"]
    assert np.abs(out["motion"][ground]).max() < 1e-3, "the camera is static: the ground does not move"
    # ground the crate covered last frame and uncovers now is disoccluded; ground far from it is not
    old = render(ctx, scene, [(cam, m0, True)])
    was_crate = old["material_id"][..., 0] == MATERIAL_ID["wood"]
    uncovered = ground & was_crate
    assert uncovered.sum() > 20
    assert dis[uncovered].mean() > 0.95
    assert dis[ground & ~was_crate].mean() < 0.01


def test_readback_into_caller_buffers_in_every_allowed_dtype(ctx):
    scene = ground_and_box()
    eng = EngineRenderer(ctx, scene, W, H)
    eng.render(CAM, CAM, scene.models(), scene.models(), True)
    ref = eng.read()
    for name, spec in CHANNELS.items():
        for dt in spec.dtypes:
            buf = np.full((H, W, spec.components), 7, dt)
            eng.read(out={name: buf}, channels=[name])
            if dt == "uint8" and name in ("color", "albedo"):
                np.testing.assert_array_equal(buf, np.rint(np.clip(ref[name], 0, 1) * 255).astype(np.uint8))
            else:
                np.testing.assert_allclose(buf.astype(np.float32), ref[name], rtol=1e-3, atol=1e-3)
    with pytest.raises(ValueError, match="dtype"):
        eng.read(out={"depth": np.zeros((H, W, 1), np.int32)}, channels=["depth"])
    with pytest.raises(ValueError, match="shape"):
        eng.read(out={"color": np.zeros((H, W + 1, 3), np.float32)}, channels=["color"])
    # asynchronous (PBO) readback gives the same frame
    eng.read_async()
    got = eng.collect()
    for name in CHANNELS:
        np.testing.assert_array_equal(got[name], ref[name])
    with pytest.raises(RuntimeError):
        eng.collect()
    eng.release()


def test_depth_and_normal_of_a_sloped_plane(ctx):
    """A 20-degree slope (a ramp's top): depth from the ray-plane intersection, one constant view normal."""
    from _demos_scenes import Scene
    from demos import geometry

    slope = np.radians(20.0)
    n = np.array([0.0, np.cos(slope), np.sin(slope)])  # faces up and towards +z (the camera)
    p0 = np.array([0.0, 0.0, -6.0])
    u = np.array([1.0, 0.0, 0.0])
    v = np.cross(n, u)  # in the plane, pointing away from the camera and up
    corners = [p0 + 50 * (-u - v), p0 + 50 * (u - v), p0 + 50 * (u + v), p0 + 50 * (-u + v)]
    scene = Scene([geometry.quad(corners, MATERIAL_ID["marble"])])
    out = render(ctx, scene, [(CAM, scene.models(), True)])
    hit = out["material_id"][..., 0] == MATERIAL_ID["marble"]
    assert hit.sum() > 0.4 * W * H
    rays = pixel_rays(CAM, W, H)
    t = ((p0 - np.asarray(CAM.position)) @ n) / (rays @ n)
    np.testing.assert_allclose(out["depth"][..., 0][hit], t[hit], rtol=2e-4, atol=1e-4)
    expected_n = CAM.world_to_view()[:3, :3] @ n
    np.testing.assert_allclose(out["normals"][hit], np.broadcast_to(expected_n, out["normals"][hit].shape), atol=1e-4)
