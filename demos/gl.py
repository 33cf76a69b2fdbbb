"""The one way neurender creates an OpenGL context (EGL standalone when headless, a glfw window otherwise),
and the uniform helpers every renderer here uses.

Shaders are written for GLSL 330 core so the same code runs on Mesa llvmpipe (CPU) and on the
NVIDIA EGL driver of the GPU machine.
"""
from __future__ import annotations

import os

import numpy as np

GL_VERSION = 330


def has_display() -> bool:
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def create_context(headless: bool, size: tuple[int, int] = (1280, 720), title: str = "neurender"):
    """Returns a moderngl context. In window mode the glfw window is `ctx.extra["window"]`."""
    import moderngl

    if headless:
        return moderngl.create_standalone_context(require=GL_VERSION, backend="egl")
    import glfw

    if not glfw.init():
        raise RuntimeError("glfw.init() failed: is there a display? (use --headless)")
    glfw.window_hint(glfw.CONTEXT_VERSION_MAJOR, 3)
    glfw.window_hint(glfw.CONTEXT_VERSION_MINOR, 3)
    glfw.window_hint(glfw.OPENGL_PROFILE, glfw.OPENGL_CORE_PROFILE)
    glfw.window_hint(glfw.OPENGL_FORWARD_COMPAT, True)
    window = glfw.create_window(size[0], size[1], title, None, None)
    if not window:
        glfw.terminate()
        raise RuntimeError("glfw could not open a window")
    glfw.make_context_current(window)
    glfw.swap_interval(0)
    ctx = moderngl.create_context(require=GL_VERSION)
    ctx.extra = {"window": window}
    return ctx


def release_context(ctx) -> None:
    window = (ctx.extra or {}).get("window") if isinstance(getattr(ctx, "extra", None), dict) else None
    ctx.release()
    if window is not None:
        import glfw

        glfw.destroy_window(window)
        glfw.terminate()


def set_uniform(prog, name: str, value) -> None:
    """Sets a uniform if the program still has it (the GLSL compiler drops unused ones)."""
    if name not in prog:
        return
    if isinstance(value, (bytes, bytearray)):
        prog[name].write(value)
    else:
        prog[name].value = value


def write_array(prog, name: str, values: np.ndarray) -> None:
    """Writes a uniform array; the GLSL compiler may have shortened it to the entries the shader uses
    (or dropped it)."""
    if name not in prog:
        return
    u = prog[name]
    values = np.ascontiguousarray(values, np.float32)
    prog[name].write(values[: u.array_length].tobytes())
