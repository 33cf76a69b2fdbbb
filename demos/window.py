"""`neurender demo` with a display: a glfw window, the player on WASD + mouse, the daemon's frames shown.

Keys: WASD move, mouse look, Space jump, C / Ctrl crouch, Shift run, 1-9 styles, T type a prompt
(Enter sends, Esc cancels), Tab cycles views (neural / engine pass / reference look / side by side),
H toggles the HUD, R resets (new spawn point, reset flag to the daemon), Esc quits.
"""
from __future__ import annotations

import time

import numpy as np

from bridge.channels import ACTION_DIM, ACTION_LAYOUT

VIEWS = ("neural", "engine pass", "reference look", "side by side")
MOUSE_DEG_PER_PIXEL = 0.12
A = {name: i for i, name in enumerate(ACTION_LAYOUT)}

_BLIT_VS = """#version 330
out vec2 v_uv;
void main() {
    vec2 p = vec2((gl_VertexID == 1) ? 3.0 : -1.0, (gl_VertexID == 2) ? 3.0 : -1.0);
    v_uv = vec2(p.x * 0.5 + 0.5, 0.5 - p.y * 0.5);  // image row 0 at the top
    gl_Position = vec4(p, 0.0, 1.0);
}"""
_BLIT_FS = """#version 330
uniform sampler2D u_image;
in vec2 v_uv;
out vec4 o_color;
void main() { o_color = texture(u_image, v_uv); }"""


class KeyHandler:
    """The demo's own keys (not movement) -> events; pure logic, testable without a window."""

    def __init__(self, styles: list[str]):
        self.styles = styles
        self.typing: str | None = None  # the prompt being typed after T, None when not typing
        self.events: list[tuple[str, object]] = []
        self.quit = False

    def key(self, key: int, action: int) -> None:
        import glfw as g

        if action != g.PRESS and not (action == g.REPEAT and key == g.KEY_BACKSPACE):
            return
        if self.typing is not None:
            if key in (g.KEY_ENTER, g.KEY_KP_ENTER):
                if self.typing.strip():
                    self.events.append(("prompt", self.typing.strip()))
                self.typing = None
            elif key == g.KEY_ESCAPE:
                self.typing = None
            elif key == g.KEY_BACKSPACE:
                self.typing = self.typing[:-1]
            return
        if key == g.KEY_ESCAPE:
            self.quit = True
        elif key == g.KEY_T:
            self.typing = ""
            self._swallow_t = True
        elif key == g.KEY_TAB:
            self.events.append(("view", None))
        elif key == g.KEY_H:
            self.events.append(("hud", None))
        elif key == g.KEY_R:
            self.events.append(("reset", None))
        elif g.KEY_1 <= key <= g.KEY_9 and key - g.KEY_1 < len(self.styles):
            self.events.append(("style", self.styles[key - g.KEY_1]))

    def char(self, codepoint: int) -> None:
        if self.typing is None:
            return
        ch = chr(codepoint)
        if getattr(self, "_swallow_t", False):  # the character event of the T that opened the prompt
            self._swallow_t = False
            if ch in "tT":
                return
        if ch.isprintable() and len(self.typing) < 200:
            self.typing += ch

    def take_events(self) -> list[tuple[str, object]]:
        ev, self.events = self.events, []
        return ev


class InputState:
    """Keyboard and mouse of a glfw window -> the action vector of one frame, plus KeyHandler events."""

    def __init__(self, window, styles: list[str]):
        import glfw

        self.glfw, self.window = glfw, window
        self.keys = KeyHandler(styles)
        self.last_cursor = None
        glfw.set_input_mode(window, glfw.CURSOR, glfw.CURSOR_DISABLED)
        glfw.set_key_callback(window, lambda w, key, sc, action, mods: self.keys.key(key, action))
        glfw.set_char_callback(window, lambda w, cp: self.keys.char(cp))

    def action(self) -> np.ndarray:
        g, w = self.glfw, self.window
        a = np.zeros(ACTION_DIM, np.float32)
        if self.keys.typing is None:
            pressed = lambda *keys: float(any(g.get_key(w, k) == g.PRESS for k in keys))  # noqa: E731
            a[A["forward"]] = pressed(g.KEY_W, g.KEY_UP)
            a[A["back"]] = pressed(g.KEY_S, g.KEY_DOWN)
            a[A["left"]] = pressed(g.KEY_A, g.KEY_LEFT)
            a[A["right"]] = pressed(g.KEY_D, g.KEY_RIGHT)
            a[A["jump"]] = pressed(g.KEY_SPACE)
            a[A["crouch"]] = pressed(g.KEY_C, g.KEY_LEFT_CONTROL)
            a[A["run"]] = pressed(g.KEY_LEFT_SHIFT, g.KEY_RIGHT_SHIFT)
        x, y = g.get_cursor_pos(w)
        if self.last_cursor is not None:
            a[A["mouse_dx"]] = (x - self.last_cursor[0]) * MOUSE_DEG_PER_PIXEL
            a[A["mouse_dy"]] = (y - self.last_cursor[1]) * MOUSE_DEG_PER_PIXEL
        self.last_cursor = (x, y)
        return a


def compose(view: str, frame, scene) -> np.ndarray:
    from demos.present import side_by_side, to_srgb8

    if view == "neural":
        return to_srgb8(frame.neural)
    if view == "engine pass":
        return to_srgb8(frame.engine_color)
    if view == "reference look":
        return to_srgb8(frame.reference)
    return side_by_side([to_srgb8(frame.engine_color), to_srgb8(frame.neural), to_srgb8(frame.reference)],
                        ["engine pass", "neural", f"reference: {scene.style}"])


def run_window(args, log=print) -> int:
    import glfw
    import moderngl

    from demos.daemon_link import DaemonLink
    from demos.gl import create_context, release_context
    from demos.live import LiveScene
    from demos.present import text_overlay
    from demos.styles import STYLES

    width, height = args.resolution
    ctx = create_context(headless=False, size=args.window_size, title="neurender demo")
    window = ctx.extra["window"]
    link = scene = None
    try:
        link = DaemonLink(args.backend, args.steps, args.runtime_dir, args.endpoint, args.device, log=log)
        scene = LiveScene(ctx, link.client, args.seed, width, height, args.style, steps=args.steps, ssaa=args.ssaa,
                          pipelined=args.pipeline)
        styles = list(STYLES)
        inputs = InputState(window, styles)
        prog = ctx.program(vertex_shader=_BLIT_VS, fragment_shader=_BLIT_FS)
        vao = ctx.vertex_array(prog, [])
        frame_tex = hud_tex = None

        def upload(tex, image: np.ndarray):
            h, w, c = image.shape
            if tex is None or tex.size != (w, h) or tex.components != c:
                if tex is not None:
                    tex.release()
                tex = ctx.texture((w, h), c, dtype="f1")
                tex.filter = (moderngl.LINEAR, moderngl.LINEAR)
            tex.write(np.ascontiguousarray(image).tobytes())
            return tex

        view, hud = VIEWS.index(args.view), True
        last = time.perf_counter()
        log("keys: WASD + mouse, Space jump, C crouch, Shift run, 1-%d styles, T prompt, Tab view, H HUD, R reset, Esc quit"
            % len(styles))
        while not glfw.window_should_close(window) and not inputs.keys.quit:
            glfw.poll_events()
            for kind, value in inputs.keys.take_events():
                if kind == "style":
                    scene.set_style(value)
                elif kind == "prompt":
                    scene.set_prompt(value)
                elif kind == "view":
                    view = (view + 1) % len(VIEWS)
                elif kind == "hud":
                    hud = not hud
                elif kind == "reset":
                    scene.reset()
            now = time.perf_counter()
            dt, last = min(now - last, 0.1), now
            need_ref = VIEWS[view] in ("reference look", "side by side")
            frame = scene.step(inputs.action(), dt, with_reference=need_ref)
            img = np.ascontiguousarray(compose(VIEWS[view], frame, scene))
            lines = scene.hud_lines() + [f"view: {VIEWS[view]} (Tab)"] if hud else []
            if inputs.keys.typing is not None:
                lines = lines + [f"prompt> {inputs.keys.typing}_"]
            fw, fh = glfw.get_framebuffer_size(window)
            ctx.screen.use()
            ctx.clear(0.0, 0.0, 0.0)
            h, w = img.shape[:2]
            s = min(fw / w, fh / h)  # letterbox, keep the aspect
            vw, vh = int(w * s), int(h * s)
            ctx.viewport = ((fw - vw) // 2, (fh - vh) // 2, vw, vh)
            frame_tex = upload(frame_tex, img)
            frame_tex.use(0)
            vao.render(moderngl.TRIANGLES, vertices=3)
            if lines:  # the HUD at screen resolution, blended over the top-left corner
                overlay = text_overlay(lines)
                hud_tex = upload(hud_tex, overlay)
                oh, ow = overlay.shape[:2]
                ctx.viewport = (8, fh - oh - 8, ow, oh)
                ctx.enable(moderngl.BLEND)
                ctx.blend_func = moderngl.SRC_ALPHA, moderngl.ONE_MINUS_SRC_ALPHA
                hud_tex.use(0)
                vao.render(moderngl.TRIANGLES, vertices=3)
                ctx.disable(moderngl.BLEND)
            if args.frames is not None and scene.index >= args.frames:
                if args.screenshot:  # what the window shows, read back from its framebuffer
                    import imageio.v2 as imageio

                    shot = np.frombuffer(ctx.screen.read(components=3), np.uint8).reshape(fh, fw, 3)[::-1]
                    imageio.imwrite(args.screenshot, shot)
                glfw.swap_buffers(window)
                break
            glfw.swap_buffers(window)
        return 0
    finally:
        if scene is not None:
            scene.close()
        if link is not None:
            link.close()
        release_context(ctx)
