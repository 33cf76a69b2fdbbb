"""The engine pass: what a game hands neurender every frame, rendered in ONE multi-render-target pass.

Attachments (RGBA32F each), ping-ponged between two framebuffers so the pass can read the previous
frame's linear depth for the disocclusion test:
    0: color.rgb, linear depth      1: view normal.xyz, material id
    2: motion.xy, disocclusion      3: albedo.rgb
Readback turns GL's bottom-up rows into the top-down (H, W, C) images of bridge/channels.py, either
into new numpy arrays or into caller-given arrays (for instance views of a bridge shared-memory slot),
synchronously or through pixel-buffer objects collected later (`read_async` / `collect`).
"""
from __future__ import annotations

import numpy as np

from bridge.channels import CHANNELS
from demos.camera import Camera, gl_bytes
from demos.geometry import vertex_array
from demos.gl import set_uniform, write_array
from demos.materials import ENGINE_ALBEDO
from demos.shader_source import load
from demos.world import MAX_DYNAMIC, World

# channel -> (attachment, first component, components)
LAYOUT: dict[str, tuple[int, int, int]] = {
    "color": (0, 0, 3), "depth": (0, 3, 1), "normals": (1, 0, 3), "material_id": (1, 3, 1),
    "motion": (2, 0, 2), "disocclusion": (2, 2, 1), "albedo": (3, 0, 3),
}
assert set(LAYOUT) == set(CHANNELS)
DEFAULT_DTYPES = {name: ("float32" if "float32" in spec.dtypes else spec.dtypes[0]) for name, spec in CHANNELS.items()}
LIGHT_DIR = np.array([0.45, 0.8, 0.35]) / np.linalg.norm([0.45, 0.8, 0.35])  # world space, towards the light


def store(dst: np.ndarray, src: np.ndarray, name: str) -> None:
    """Writes a float32 image into `dst` in whatever dtype bridge.channels allows for that channel."""
    if dst.shape != src.shape:
        raise ValueError(f"{name}: destination shape {dst.shape} != {src.shape}")
    if dst.dtype.name not in CHANNELS[name].dtypes:
        raise ValueError(f"{name}: dtype {dst.dtype} not one of {CHANNELS[name].dtypes}")
    if name in ("material_id", "disocclusion") and dst.dtype.kind == "u":
        np.copyto(dst, np.rint(src), casting="unsafe")
    elif dst.dtype == np.uint8:
        np.copyto(dst, np.rint(np.clip(src, 0.0, 1.0) * 255.0), casting="unsafe")
    else:
        np.copyto(dst, src, casting="unsafe")


class EngineRenderer:
    def __init__(self, ctx, world: World, width: int, height: int):
        import moderngl

        self.ctx, self.world, self.width, self.height = ctx, world, int(width), int(height)
        self.prog = ctx.program(vertex_shader=load("scene.vert"), fragment_shader=load("engine.frag"))
        self.sky_prog = ctx.program(vertex_shader=load("fullscreen.vert"), fragment_shader=load("engine_sky.frag"))
        self.vbo = ctx.buffer(world.mesh().tobytes())
        self.vao = vertex_array(ctx, self.prog, self.vbo)
        self.sky_vao = ctx.vertex_array(self.sky_prog, [])
        albedo = np.zeros((16, 3), np.float32)
        albedo[: len(ENGINE_ALBEDO)] = ENGINE_ALBEDO
        for p in (self.prog, self.sky_prog):
            write_array(p, "u_albedo", albedo)
        self.fbos, self.targets, self.depths = [], [], []
        for _ in range(2):
            tex = [ctx.texture((self.width, self.height), 4, dtype="f4") for _ in range(4)]
            for t in tex:
                t.filter = (moderngl.NEAREST, moderngl.NEAREST)
            depth = ctx.depth_renderbuffer((self.width, self.height))
            self.targets.append(tex)
            self.depths.append(depth)
            self.fbos.append(ctx.framebuffer(color_attachments=tex, depth_attachment=depth))
        self.current = 0
        self.frames = 0
        self._pbos: list | None = None
        self._pending = False

    def release(self) -> None:
        for obj in [self.vao, self.sky_vao, self.vbo, self.prog, self.sky_prog, *self.fbos, *self.depths,
                    *[t for ts in self.targets for t in ts], *(self._pbos or [])]:
            obj.release()

    def render(self, cam: Camera, prev_cam: Camera, models: np.ndarray, prev_models: np.ndarray, reset: bool) -> None:
        """Renders one frame into the next framebuffer. On `reset` (a cut, or the first frame) there is no
        previous frame: motion is zero and disocclusion is 1 everywhere."""
        import moderngl

        ctx = self.ctx
        prev_index, self.current = self.current, 1 - self.current
        has_prev = int(not reset and self.frames > 0)
        view, proj = cam.world_to_view(), cam.view_to_clip()
        prev_vp = prev_cam.view_to_clip() @ prev_cam.world_to_view()
        fbo = self.fbos[self.current]
        fbo.use()
        fbo.clear(0.0, 0.0, 0.0, 0.0, depth=1.0)
        ctx.viewport = (0, 0, self.width, self.height)
        self.targets[prev_index][0].use(location=0)
        tan_y = np.tan(np.radians(cam.fov_y_deg) / 2)
        for p in (self.prog, self.sky_prog):
            set_uniform(p, "u_size", (self.width, self.height))
            set_uniform(p, "u_prev_depth", 0)
            set_uniform(p, "u_has_prev", has_prev)
            set_uniform(p, "u_far", cam.far)
            set_uniform(p, "u_prev_viewproj", gl_bytes(prev_vp))
        inv_rot = np.eye(4)
        inv_rot[:3, :3] = view[:3, :3].T
        set_uniform(self.sky_prog, "u_inv_view_rot", gl_bytes(inv_rot))
        set_uniform(self.sky_prog, "u_tan_half", (tan_y * cam.aspect, tan_y))
        ctx.disable(moderngl.DEPTH_TEST | moderngl.CULL_FACE)
        self.sky_vao.render(moderngl.TRIANGLES, vertices=3)
        ctx.enable(moderngl.DEPTH_TEST | moderngl.CULL_FACE)
        ctx.depth_func = "<"
        set_uniform(self.prog, "u_view", gl_bytes(view))
        set_uniform(self.prog, "u_proj", gl_bytes(proj))
        set_uniform(self.prog, "u_models", b"".join(gl_bytes(m) for m in models[: MAX_DYNAMIC + 1]))
        set_uniform(self.prog, "u_prev_models", b"".join(gl_bytes(m) for m in prev_models[: MAX_DYNAMIC + 1]))
        set_uniform(self.prog, "u_light_view", tuple(view[:3, :3] @ LIGHT_DIR))
        set_uniform(self.prog, "u_light_color", (0.85, 0.82, 0.78))
        set_uniform(self.prog, "u_ambient", (0.25, 0.27, 0.3))
        self.vao.render(moderngl.TRIANGLES)
        ctx.disable(moderngl.DEPTH_TEST | moderngl.CULL_FACE)
        self.frames += 1

    # ---- readback ----------------------------------------------------------------------------
    def _unpack(self, raw: list[np.ndarray], out: dict[str, np.ndarray] | None, channels) -> dict[str, np.ndarray]:
        names = list(channels or LAYOUT)
        out = {} if out is None else out
        for name in names:
            att, c0, nc = LAYOUT[name]
            src = raw[att][::-1, :, c0:c0 + nc]  # GL rows are bottom-up
            if name not in out:
                out[name] = np.empty((self.height, self.width, nc), DEFAULT_DTYPES[name])
            store(out[name], src, name)
        return out

    def _attachments_for(self, channels) -> list[int]:
        return sorted({LAYOUT[n][0] for n in (channels or LAYOUT)})

    def read(self, out: dict[str, np.ndarray] | None = None, channels=None) -> dict[str, np.ndarray]:
        """Synchronous readback of the frame just rendered, into `out` (arrays of allowed dtypes) or new arrays."""
        fbo = self.fbos[self.current]
        raw: list = [None] * 4
        for att in self._attachments_for(channels):
            buf = np.empty((self.height, self.width, 4), np.float32)
            fbo.read_into(buf, attachment=att, components=4, dtype="f4")
            raw[att] = buf
        return self._unpack(raw, out, channels)

    def read_async(self) -> None:
        """Starts an asynchronous (PBO) readback of the frame just rendered; `collect` finishes it."""
        if self._pbos is None:
            self._pbos = [self.ctx.buffer(reserve=self.width * self.height * 16) for _ in range(4)]
        fbo = self.fbos[self.current]
        for att in range(4):
            fbo.read_into(self._pbos[att], attachment=att, components=4, dtype="f4")
        self._pending = True

    def collect(self, out: dict[str, np.ndarray] | None = None, channels=None) -> dict[str, np.ndarray]:
        if not self._pending:
            raise RuntimeError("collect() without a read_async() before it")
        raw = [np.frombuffer(p.read(), np.float32).reshape(self.height, self.width, 4) for p in self._pbos]
        self._pending = False
        return self._unpack(raw, out, channels)
