"""The reference look: deterministic per seed/frame/style, different between styles, and shaded as claimed."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from _demos_scenes import ground_and_box
from demos.camera import Camera
from demos.reference import ReferenceRenderer, sun_direction
from demos.styles import LOOKS, STYLES
from demos.world import World

W, H = 64, 48


@pytest.fixture(scope="module")
def ctx():
    from demos.gl import create_context

    c = create_context(headless=True)
    yield c
    c.release()


@pytest.fixture(scope="module")
def town():
    return World(1_000_003)


def look(ctx, world, style, cam, t=0.0, ssaa=1):
    r = ReferenceRenderer(ctx, world, W, H, style, ssaa=ssaa, shadow_size=512)
    r.render(cam, world.models(t), t)
    img = r.read()
    r.release()
    return img


def street_camera(world):
    x, z = world.spawn_points[3]
    return Camera((x, 1.65, z), yaw_deg=30.0, pitch_deg=-5.0, aspect=W / H)


def test_deterministic_and_in_range(ctx, town):
    cam = street_camera(town)
    a = look(ctx, town, "sunny", cam, ssaa=2)
    b = look(ctx, town, "sunny", cam, ssaa=2)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (H, W, 3) and a.dtype == np.float32
    assert 0.0 <= a.min() and a.max() <= 1.0 and a.std() > 0.02


def test_every_style_looks_different(ctx, town):
    cam = street_camera(town)
    imgs = {s: look(ctx, town, s, cam) for s in STYLES}
    for s1, s2 in itertools.combinations(STYLES, 2):
        assert np.abs(imgs[s1] - imgs[s2]).mean() > 0.02, (s1, s2)
    lum = {s: float(np.median(imgs[s] @ [0.2126, 0.7152, 0.0722])) for s in STYLES}  # lamps light a few spots
    assert lum["night"] < 0.5 * lum["sunny"], lum
    assert lum["winter"] > lum["sunny"], lum  # snow


def test_unknown_style_is_refused(ctx, town):
    with pytest.raises(ValueError, match="unknown style"):
        ReferenceRenderer(ctx, town, W, H, "vaporwave")


def test_crate_casts_a_shadow_away_from_the_sun(ctx):
    """Ground just beyond the crate, opposite the sun, is darker than open ground at the same distance."""
    scene = ground_and_box()
    cam = Camera((0.0, 25.0, -8.0 + 1e-3), yaw_deg=0.0, pitch_deg=-89.9, aspect=W / H)  # straight down on the crate
    img = look(ctx, scene, "sunny", cam)
    sun = sun_direction(LOOKS["sunny"])
    away = -sun[[0, 2]] / np.linalg.norm(sun[[0, 2]])
    # project ground points at y = 0: this camera looks down, x right, -z up on screen
    def px(x, z):
        vp = cam.view_to_clip() @ cam.world_to_view()
        c = vp @ np.array([x, 0.0, z, 1.0])
        ndc = c[:2] / c[3]
        return int((ndc[1] * -0.5 + 0.5) * H), int((ndc[0] * 0.5 + 0.5) * W)
    shadow_len = 2.0 / np.tan(np.radians(LOOKS["sunny"].sun_elevation_deg))
    d = 1.0 + 0.5 * shadow_len
    in_shadow = img[px(away[0] * d, -8.0 + away[1] * d)].mean()
    in_sun = img[px(-away[0] * (d + 1.0), -8.0 - away[1] * (d + 1.0))].mean()
    assert in_shadow < 0.7 * in_sun, (in_shadow, in_sun)


def test_render_styles_shares_passes_and_gives_the_same_pixels(ctx, town):
    cam = street_camera(town)
    r = ReferenceRenderer(ctx, town, W, H, "sunny", ssaa=1, shadow_size=512)
    many = r.render_styles(cam, town.models(0.4), 0.4, ["night", "winter", "sunny"])
    assert r.style == "sunny"
    for style in ("night", "winter", "sunny"):
        r.set_style(style)
        r.render(cam, town.models(0.4), 0.4)
        np.testing.assert_array_equal(many[style], r.read(), err_msg=style)
    with pytest.raises(ValueError, match="unknown style"):
        r.set_style("noir")
    r.release()


def test_reference_look_is_temporally_stable_along_the_engine_motion():
    """Warping error (field-notes section 7, exact engine motion): the reference look follows the motion
    vectors as well as the flat engine colour does (no screen-space flicker of its own), and the motion
    vectors are what aligns it (without them the error is several times larger)."""
    from demos.sequence import render_sequence
    from neural_renderer.eval.metrics import warping_error

    engine, ref, unaligned = [], [], []
    prev = None
    for f in render_sequence(4, 10, W, W, styles=("sunny",), script="turn", ssaa=1):
        if prev is not None and not f.reset:
            m, d = f.engine["motion"], f.engine["disocclusion"]
            engine.append(warping_error(prev.engine["color"], f.engine["color"], m, d))
            ref.append(warping_error(prev.reference["sunny"], f.reference["sunny"], m, d))
            unaligned.append(warping_error(prev.reference["sunny"], f.reference["sunny"], np.zeros_like(m), d))
        prev = f
    assert len(ref) >= 8
    assert np.mean(ref) < 2.0 * np.mean(engine), (np.mean(ref), np.mean(engine))
    assert np.mean(ref) < 0.3 * np.mean(unaligned), (np.mean(ref), np.mean(unaligned))
