"""The procedural world, the player and the scripted controllers: pure numpy, no GL."""
from __future__ import annotations

import numpy as np
import pytest

from bridge.channels import ACTION_DIM, ACTION_LAYOUT
from demos.materials import MATERIAL_ID, MATERIALS
from demos.player import SCRIPTS, Player, ScriptedController
from demos.seeds import EVAL_SEED_BASE, TRAIN_SEEDS, check_train_seed, is_eval_seed
from demos.styles import LOOKS, STYLES, UNSEEN_STYLES
from demos.world import MAX_DYNAMIC, World

A = {n: i for i, n in enumerate(ACTION_LAYOUT)}


@pytest.fixture(scope="module")
def world():
    return World(7)


def test_world_is_a_pure_function_of_the_seed(world):
    again = World(7)
    np.testing.assert_array_equal(world.mesh(), again.mesh())
    assert world.kinds == again.kinds
    other = World(8)
    assert other.mesh().shape != world.mesh().shape or not np.array_equal(other.mesh(), world.mesh())


def test_world_content(world):
    mesh = world.mesh()
    mats = set(np.unique(mesh[:, 6]).astype(int))
    assert len(mats) >= 8 and max(mats) < 16 and 0 not in mats, mats  # 0 is the sky
    assert {"buildings", "park", "plaza", "room"} == set(world.kinds)
    assert world.size >= 250.0, "big enough to walk for minutes"
    np.testing.assert_allclose(np.linalg.norm(mesh[:, 3:6], axis=1), 1.0, atol=1e-5)
    assert 3 <= len(world.dynamic) <= MAX_DYNAMIC
    assert len(world.lamp_positions) > 20


def test_dynamic_objects_move_on_their_own(world):
    m0, m1 = world.models(0.0), world.models(0.5)
    np.testing.assert_array_equal(m0[0], np.eye(4))
    for i, d in enumerate(world.dynamic, start=1):
        assert not np.allclose(m0[i], m1[i]), f"{d.kind} {i} did not move"
        np.testing.assert_allclose(m1[i][:3, :3] @ m1[i][:3, :3].T, np.eye(3), atol=1e-9)  # rigid
    np.testing.assert_array_equal(world.models(0.5), m1)


def test_spawn_points_are_free_and_walls_stop_the_player(world):
    for x, z in world.spawn_points:
        assert not world.blocked(x, z, 0.0, 0.3, 0.45, 1.85)
    p = Player(world, 5.0, 5.0, yaw=270.0)  # facing -x, the boundary wall at x = 0
    walk = np.zeros(ACTION_DIM, np.float32)
    walk[A["forward"]] = 1.0
    for _ in range(90):
        p.step(walk, 1 / 30)
    assert 0.29 <= p.x < 0.4, p.x  # stopped at its radius from the wall
    assert p.z == pytest.approx(5.0)


def test_player_climbs_stairs_and_jumps(world):
    w = World(3)
    kind, x0, z0 = next(b for b in w.blocks if b[0] == "plaza")
    sx, sz = x0 + w.block - 9, z0 + w.block - 12
    p = Player(w, sx + 2.0, sz - 1.0, yaw=180.0)  # facing +z, up the stairs
    walk = np.zeros(ACTION_DIM, np.float32)
    walk[A["forward"]] = 1.0
    for _ in range(60):
        p.step(walk, 1 / 30)
    assert p.feet == pytest.approx(0.25 + 8 * 0.25), p.feet  # on the platform
    jump = np.zeros(ACTION_DIM, np.float32)
    jump[A["jump"]] = 1.0
    p.step(jump, 1 / 30)
    heights = []
    for _ in range(20):
        p.step(np.zeros(ACTION_DIM, np.float32), 1 / 30)
        heights.append(p.feet)
    peak = max(heights)
    assert peak > 2.25 + 0.5
    for _ in range(60):
        p.step(np.zeros(ACTION_DIM, np.float32), 1 / 30)
    assert p.feet == pytest.approx(2.25) and p.on_ground


def test_mouse_turns_and_pitch_is_clamped(world):
    p = Player(world, *world.spawn_points[0], yaw=0.0)
    a = np.zeros(ACTION_DIM, np.float32)
    a[A["mouse_dx"]], a[A["mouse_dy"]] = 30.0, -50.0
    p.step(a, 1 / 30)
    p.step(a, 1 / 30)
    assert p.yaw == pytest.approx(60.0) and p.pitch == pytest.approx(85.0)
    f, u, r = p.camera(1.0).axes()
    np.testing.assert_allclose([f @ u, f @ r, u @ r], 0.0, atol=1e-12)


@pytest.mark.parametrize("script", SCRIPTS)
def test_scripted_controllers_are_deterministic(world, script):
    def run():
        c = ScriptedController(script, 11)
        p = Player(world, *c.spawn(world))
        out = []
        for i in range(150):
            a, cut = c(i, p)
            if cut:
                p.teleport(*c.spawn(world))
            else:
                p.step(a, 1 / 30)
            out.append((a.copy(), cut, p.x, p.z, p.yaw))
        return out

    a, b = run(), run()
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x[0], y[0])
        assert x[1:] == y[1:]
    acts = np.stack([x[0] for x in a])
    cuts = sum(x[1] for x in a)
    if script == "still":
        assert not acts.any() and cuts == 0
    if script == "cuts":
        assert cuts >= 2
    if script in ("walk", "strafe"):
        moved = np.hypot(a[-1][2] - a[0][2], a[-1][3] - a[0][3])
        assert moved > 3.0
    if script in ("turn", "look"):
        assert np.abs(acts[:, A["mouse_dx"]]).sum() > 30


def test_negative_seed_is_refused():
    with pytest.raises(ValueError, match="seed must be >= 0"):
        World(-1)


def test_unknown_script_is_refused():
    with pytest.raises(ValueError, match="unknown script"):
        ScriptedController("dance", 0)


def test_seed_ranges_and_styles():
    assert TRAIN_SEEDS == range(0, 1000) and EVAL_SEED_BASE == 1_000_000
    assert not is_eval_seed(999) and is_eval_seed(EVAL_SEED_BASE)
    assert check_train_seed(5) == 5
    with pytest.raises(ValueError, match="evaluation"):
        check_train_seed(EVAL_SEED_BASE + 3)
    assert len(STYLES) >= 6 and set(STYLES) | set(UNSEEN_STYLES) == set(LOOKS)  # ink: an unseen look
    assert {"sunny", "sunset", "night", "winter", "foggy", "cartoon"} <= set(STYLES)
    assert len(set(STYLES.values())) == len(STYLES)
    assert MATERIAL_ID["sky"] == 0 and len(MATERIALS) >= 9


def test_player_walks_up_a_ramp_but_not_into_its_high_side():
    w = World(3)
    kind, x0, z0 = next(b for b in w.blocks if b[0] == "plaza")
    p = Player(w, x0 + 3.0, z0 + w.block - 12, yaw=180.0)  # below the ramp's foot, facing +z (uphill)
    walk = np.zeros(ACTION_DIM, np.float32)
    walk[A["forward"]] = 1.0
    feet = []
    for _ in range(75):
        p.step(walk, 1 / 30)
        feet.append(p.feet)
    assert np.all(np.diff(feet) >= -1e-9), "climbing, never falling"
    assert 0.4 < feet[35] < 1.3, "half way up the slope"
    assert p.feet == pytest.approx(1.45), "on the deck at the top"
    side = Player(w, x0 + 6.0, z0 + w.block - 5.0, yaw=270.0)  # beside the high end, facing -x
    for _ in range(60):
        side.step(walk, 1 / 30)
    assert side.x > x0 + 4.5 and side.feet == pytest.approx(0.25), "the ramp's 1.2 m side is a wall"
