"""The reference look: a slow, high-quality rendering of the same frame in one named style.

Passes (all deterministic for a given seed, frame and style; `render_styles` shares 2 and 3 between styles):
  1. sun shadow map (orthographic, centred on the camera and snapped to whole texels so shadows do
     not crawl as the player moves)
  2. prepass at `ssaa` x the output size: view normal + linear depth (and the depth buffer pass 4 reuses)
  3. screen-space ambient occlusion from the prepass
  4. shading: procedural solid textures per material, PCF soft shadows, blurred AO, hemisphere sky
     light, street lamps, snow, height fog; the sky first
  5. post: box down-sampling, cartoon outlines, saturation, exposure and a filmic curve
Output: (H, W, 3) float32 linear RGB in [0, 1].
"""
from __future__ import annotations

import numpy as np

from demos.camera import Camera, gl_bytes, look_at, orthographic
from demos.geometry import vertex_array
from demos.gl import set_uniform, write_array
from demos.shader_source import load
from demos.styles import LOOKS, Look
from demos.world import MAX_DYNAMIC, World

MAX_LAMPS = 12


def sun_direction(look: Look) -> np.ndarray:
    el, az = np.radians(look.sun_elevation_deg), np.radians(look.sun_azimuth_deg)
    return np.array([np.cos(el) * np.sin(az), np.sin(el), -np.cos(el) * np.cos(az)])


def _ssao_kernel(n: int = 16) -> np.ndarray:
    rng = np.random.default_rng(1234)  # a fixed kernel: same AO on every run
    k = rng.normal(size=(n, 3))
    k[:, 2] = np.abs(k[:, 2]) + 0.1
    k /= np.linalg.norm(k, axis=1, keepdims=True)
    scale = 0.15 + 0.85 * (np.arange(n) / n) ** 2  # more samples near the point
    return (k * rng.uniform(0.3, 1.0, size=(n, 1)) * scale[:, None]).astype(np.float32)


class ReferenceRenderer:
    def __init__(self, ctx, world: World, width: int, height: int, style: str, ssaa: int = 2,
                 shadow_size: int = 1024, shadow_radius: float = 60.0):
        import moderngl

        if style not in LOOKS:
            raise ValueError(f"unknown style {style!r}; choose from {sorted(LOOKS)}")
        self.ctx, self.world, self.style, self.look = ctx, world, style, LOOKS[style]
        self.width, self.height, self.ssaa = int(width), int(height), int(ssaa)
        self.shadow_size, self.shadow_radius = int(shadow_size), float(shadow_radius)
        W, H = self.width * self.ssaa, self.height * self.ssaa
        self.vbo = ctx.buffer(world.mesh().tobytes())
        fs = load("fullscreen.vert")
        self.shadow_prog = ctx.program(vertex_shader=load("shadow.vert"), fragment_shader=load("empty.frag"))
        self.pre_prog = ctx.program(vertex_shader=load("scene.vert"), fragment_shader=load("prepass.frag"))
        self.ssao_prog = ctx.program(vertex_shader=fs, fragment_shader=load("ssao.frag"))
        self.shade_prog = ctx.program(vertex_shader=load("scene.vert"), fragment_shader=load("reference.frag"))
        self.sky_prog = ctx.program(vertex_shader=fs, fragment_shader=load("reference_sky.frag"))
        self.post_prog = ctx.program(vertex_shader=fs, fragment_shader=load("post.frag"))
        self.shadow_vao = vertex_array(ctx, self.shadow_prog, self.vbo)
        self.pre_vao = vertex_array(ctx, self.pre_prog, self.vbo)
        self.shade_vao = vertex_array(ctx, self.shade_prog, self.vbo)
        self.empty_vaos = {p: ctx.vertex_array(p, []) for p in (self.ssao_prog, self.sky_prog, self.post_prog)}

        self.shadow_tex = ctx.depth_texture((self.shadow_size, self.shadow_size))
        self.shadow_tex.compare_func = "<="
        self.shadow_tex.filter = (moderngl.LINEAR, moderngl.LINEAR)
        self.shadow_fbo = ctx.framebuffer(depth_attachment=self.shadow_tex)
        self.nd_tex = ctx.texture((W, H), 4, dtype="f4")
        self.nd_tex.filter = (moderngl.NEAREST, moderngl.NEAREST)
        self.depth_rb = ctx.depth_renderbuffer((W, H))
        self.pre_fbo = ctx.framebuffer(color_attachments=[self.nd_tex], depth_attachment=self.depth_rb)
        self.ao_tex = ctx.texture((W, H), 1, dtype="f2")
        self.ao_fbo = ctx.framebuffer(color_attachments=[self.ao_tex])
        self.hdr_tex = ctx.texture((W, H), 4, dtype="f2")
        self.hdr_fbo = ctx.framebuffer(color_attachments=[self.hdr_tex], depth_attachment=self.depth_rb)
        self.out_tex = ctx.texture((self.width, self.height), 4, dtype="f4")
        self.out_fbo = ctx.framebuffer(color_attachments=[self.out_tex])
        self._static_uniforms()

    def _static_uniforms(self) -> None:
        lk = self.look
        sun = sun_direction(lk)
        write_array(self.ssao_prog, "u_kernel", _ssao_kernel())
        set_uniform(self.ssao_prog, "u_radius", 0.8)
        for p in (self.shade_prog, self.sky_prog):
            set_uniform(p, "u_sky_zenith", lk.sky_zenith)
            set_uniform(p, "u_sky_horizon", lk.sky_horizon)
            set_uniform(p, "u_sun_dir", tuple(sun))
            set_uniform(p, "u_sun_color", lk.sun_color)
            set_uniform(p, "u_stars", lk.stars)
            set_uniform(p, "u_fog_color", lk.fog_color)
            set_uniform(p, "u_fog_density", lk.fog_density)
        sp = self.shade_prog
        set_uniform(sp, "u_foliage", lk.foliage)
        set_uniform(sp, "u_grass", lk.grass)
        street = getattr(self.world, "street", 0.0)  # hand-built test scenes have no street grid
        set_uniform(sp, "u_street", (getattr(self.world, "block", 0.0) + street, street))
        set_uniform(sp, "u_flat", lk.cartoon)
        set_uniform(sp, "u_cartoon", lk.cartoon)
        set_uniform(sp, "u_ambient", lk.ambient)
        set_uniform(sp, "u_snow", lk.snow)
        set_uniform(sp, "u_leaves", lk.leaves)
        set_uniform(sp, "u_lamp_intensity", lk.lamps)
        set_uniform(sp, "u_shadow_softness", lk.shadow_softness)
        set_uniform(sp, "u_shadow_texel", 1.0 / self.shadow_size)
        set_uniform(sp, "u_ao_scale", float(self.ssaa))
        set_uniform(self.post_prog, "u_ssaa", self.ssaa)
        set_uniform(self.post_prog, "u_exposure", lk.exposure)
        set_uniform(self.post_prog, "u_saturation", lk.saturation)
        set_uniform(self.post_prog, "u_outline", lk.cartoon)

    def release(self) -> None:
        objs = [self.vbo, self.shadow_vao, self.pre_vao, self.shade_vao, *self.empty_vaos.values(),
                self.shadow_prog, self.pre_prog, self.ssao_prog, self.shade_prog, self.sky_prog, self.post_prog,
                self.shadow_fbo, self.shadow_tex, self.pre_fbo, self.nd_tex, self.depth_rb, self.ao_fbo,
                self.ao_tex, self.hdr_fbo, self.hdr_tex, self.out_fbo, self.out_tex]
        for o in objs:
            o.release()

    def _shadow_matrix(self, cam: Camera) -> np.ndarray:
        sun = sun_direction(self.look)
        f, _, _ = cam.axes()
        centre = np.asarray(cam.position) + f * self.shadow_radius * 0.5
        light_view = look_at(centre + sun * 200.0, centre, up=(0.0, 1.0, 0.0) if abs(sun[1]) < 0.99 else (0, 0, 1))
        texel = 2 * self.shadow_radius / self.shadow_size
        c = light_view @ np.append(centre, 1.0)
        snap = np.eye(4)  # move the light so the centre lands on a whole texel: shadows stay put
        snap[0, 3] = np.round(c[0] / texel) * texel - c[0]
        snap[1, 3] = np.round(c[1] / texel) * texel - c[1]
        return orthographic(self.shadow_radius, self.shadow_radius, 1.0, 400.0) @ snap @ light_view

    def set_style(self, style: str) -> None:
        """Switches the look; the programs are the same for every style, only their uniforms change."""
        if style not in LOOKS:
            raise ValueError(f"unknown style {style!r}; choose from {sorted(LOOKS)}")
        self.style, self.look = style, LOOKS[style]
        self._static_uniforms()

    def render(self, cam: Camera, models: np.ndarray, t: float) -> None:
        """Renders the current style; `read()` returns it."""
        frame = self._frame(cam, models)
        self._geometry_passes(frame)
        self._style_passes(frame, t)

    def render_styles(self, cam: Camera, models: np.ndarray, t: float, styles) -> dict[str, np.ndarray]:
        """Several styles of one frame: the prepass and ambient occlusion (style independent) run once.
        Same pixels as render() + read() per style. Leaves the renderer in the last style."""
        frame = self._frame(cam, models)
        self._geometry_passes(frame)
        out = {}
        for style in styles:
            self.set_style(style)
            self._style_passes(frame, t)
            out[style] = self.read()
        return out

    def _frame(self, cam: Camera, models: np.ndarray) -> dict:
        view = cam.world_to_view()
        tan_y = np.tan(np.radians(cam.fov_y_deg) / 2)
        inv_rot = np.eye(4)
        inv_rot[:3, :3] = view[:3, :3].T
        return {"cam": cam, "models": b"".join(gl_bytes(m) for m in models[: MAX_DYNAMIC + 1]),
                "view": view, "proj": cam.view_to_clip(), "tan_half": (tan_y * cam.aspect, tan_y),
                "inv_rot": inv_rot}

    def _geometry_passes(self, f: dict) -> None:
        """2. prepass (normal + depth, and the depth buffer the shading reuses), 3. ambient occlusion."""
        import moderngl

        ctx = self.ctx
        W, H = self.width * self.ssaa, self.height * self.ssaa
        ctx.enable(moderngl.DEPTH_TEST | moderngl.CULL_FACE)
        ctx.depth_func = "<"
        self.pre_fbo.use()
        self.pre_fbo.clear(0.0, 0.0, 0.0, 0.0, depth=1.0)
        ctx.viewport = (0, 0, W, H)
        for p in (self.pre_prog, self.shade_prog):
            set_uniform(p, "u_models", f["models"])
            set_uniform(p, "u_prev_models", f["models"])
            set_uniform(p, "u_view", gl_bytes(f["view"]))
            set_uniform(p, "u_proj", gl_bytes(f["proj"]))
            set_uniform(p, "u_prev_viewproj", gl_bytes(f["proj"] @ f["view"]))
        self.pre_vao.render(moderngl.TRIANGLES)
        ctx.disable(moderngl.DEPTH_TEST | moderngl.CULL_FACE)
        self.ao_fbo.use()
        ctx.viewport = (0, 0, W, H)
        self.nd_tex.use(location=0)
        set_uniform(self.ssao_prog, "u_normal_depth", 0)
        set_uniform(self.ssao_prog, "u_tan_half", f["tan_half"])
        self.empty_vaos[self.ssao_prog].render(moderngl.TRIANGLES, vertices=3)

    def _style_passes(self, f: dict, t: float) -> None:
        """1. shadow map of this style's sun, 4. sky then shading on the prepass depth, 5. post."""
        import moderngl

        ctx, cam = self.ctx, f["cam"]
        W, H = self.width * self.ssaa, self.height * self.ssaa
        light_vp = self._shadow_matrix(cam)
        self.shadow_fbo.use()
        self.shadow_fbo.clear(depth=1.0)
        ctx.viewport = (0, 0, self.shadow_size, self.shadow_size)
        ctx.enable(moderngl.DEPTH_TEST)
        ctx.disable(moderngl.CULL_FACE)  # both faces: thin walls and open stairs cast full shadows
        ctx.depth_func = "<"
        set_uniform(self.shadow_prog, "u_models", f["models"])
        set_uniform(self.shadow_prog, "u_light_viewproj", gl_bytes(light_vp))
        self.shadow_vao.render(moderngl.TRIANGLES)
        ctx.disable(moderngl.DEPTH_TEST)
        self.hdr_fbo.use()
        ctx.viewport = (0, 0, W, H)
        set_uniform(self.sky_prog, "u_inv_view_rot", gl_bytes(f["inv_rot"]))
        set_uniform(self.sky_prog, "u_tan_half", f["tan_half"])
        set_uniform(self.sky_prog, "u_time", float(t))
        self.empty_vaos[self.sky_prog].render(moderngl.TRIANGLES, vertices=3)
        ctx.enable(moderngl.DEPTH_TEST | moderngl.CULL_FACE)
        ctx.depth_func = "<="  # only the surface the prepass found in each pixel is shaded
        self.shadow_tex.use(location=1)
        self.ao_tex.use(location=2)
        sp = self.shade_prog
        set_uniform(sp, "u_shadow", 1)
        set_uniform(sp, "u_ao", 2)
        set_uniform(sp, "u_shadow_matrix", gl_bytes(_to_unit_cube() @ light_vp))
        set_uniform(sp, "u_camera", tuple(cam.position))
        set_uniform(sp, "u_time", float(t))
        write_array(sp, "u_lamps", self._nearest_lamps(cam))
        self.shade_vao.render(moderngl.TRIANGLES)
        ctx.depth_func = "<"
        ctx.disable(moderngl.DEPTH_TEST | moderngl.CULL_FACE)
        self.out_fbo.use()
        ctx.viewport = (0, 0, self.width, self.height)
        self.hdr_tex.use(location=0)
        self.nd_tex.use(location=1)
        set_uniform(self.post_prog, "u_hdr", 0)
        set_uniform(self.post_prog, "u_normal_depth", 1)
        self.empty_vaos[self.post_prog].render(moderngl.TRIANGLES, vertices=3)

    def _nearest_lamps(self, cam: Camera) -> np.ndarray:
        lamps = self.world.lamp_positions
        out = np.full((MAX_LAMPS, 3), 1e4, np.float32)  # far away = no light
        if len(lamps):
            d = np.linalg.norm(lamps - np.asarray(cam.position, np.float32), axis=1)
            idx = np.argsort(d, kind="stable")[:MAX_LAMPS]
            out[: len(idx)] = lamps[idx]
        return out

    def read(self, out: np.ndarray | None = None) -> np.ndarray:
        raw = np.empty((self.height, self.width, 4), np.float32)
        self.out_fbo.read_into(raw, components=4, dtype="f4")
        img = raw[::-1, :, :3]
        if out is None:
            return np.ascontiguousarray(img)
        np.copyto(out, img, casting="unsafe")
        return out


def _to_unit_cube() -> np.ndarray:
    m = np.eye(4) * 0.5
    m[:3, 3] = 0.5
    m[3, 3] = 1.0
    return m
