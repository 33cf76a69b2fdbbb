"""The demo's window mode: its key handling, and a real glfw window under Xvfb driving a real daemon."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile

import glfw
import imageio.v2 as imageio
import pytest

from bridge.styles import STYLES
from demos.window import KeyHandler


def press(k: KeyHandler, key: int, char: str | None = None) -> None:
    k.key(key, glfw.PRESS)
    if char is not None:
        k.char(ord(char))


def test_keys_switch_styles_views_hud_reset_and_quit():
    k = KeyHandler(list(STYLES))
    press(k, glfw.KEY_2, "2")
    press(k, glfw.KEY_TAB)
    press(k, glfw.KEY_H, "h")
    press(k, glfw.KEY_R, "r")
    press(k, glfw.KEY_9, "9")  # only 7 styles: ignored
    assert k.take_events() == [("style", list(STYLES)[1]), ("view", None), ("hud", None), ("reset", None)]
    assert k.take_events() == []
    k.key(glfw.KEY_TAB, glfw.RELEASE)
    assert k.take_events() == [] and not k.quit
    press(k, glfw.KEY_ESCAPE)
    assert k.quit


def test_typing_a_prompt():
    k = KeyHandler(list(STYLES))
    press(k, glfw.KEY_T, "t")  # opens the prompt; its own character is not typed
    for ch in "tiny rain":
        k.char(ord(ch))
    press(k, glfw.KEY_R)  # while typing, keys are text, not commands
    k.key(glfw.KEY_BACKSPACE, glfw.PRESS)
    k.key(glfw.KEY_BACKSPACE, glfw.REPEAT)
    for ch in "in!":
        k.char(ord(ch))
    assert k.typing == "tiny rain!"
    press(k, glfw.KEY_ENTER)
    assert k.take_events() == [("prompt", "tiny rain!")] and k.typing is None
    press(k, glfw.KEY_T, "t")
    k.char(ord("x"))
    press(k, glfw.KEY_ESCAPE)  # cancels the prompt, does not quit
    press(k, glfw.KEY_T, "t")
    press(k, glfw.KEY_ENTER)  # empty prompt: nothing sent
    assert k.take_events() == [] and not k.quit


@pytest.fixture
def xvfb_display():
    """A private Xvfb server; -displayfd makes it pick a free display number itself (no race with
    other X servers on the machine, unlike guessing one)."""
    xvfb = shutil.which("Xvfb")
    assert xvfb, "Xvfb is installed by .ci/setup (APT_PACKAGES: xvfb)"
    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen([xvfb, "-displayfd", str(write_fd), "-screen", "0", "800x600x24", "-nolisten", "tcp"],
                            pass_fds=(write_fd,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write_fd)
    try:
        with os.fdopen(read_fd) as f:
            number = f.readline().strip()
        assert number.isdigit(), "Xvfb did not report its display"
        yield f":{number}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_window_demo_under_xvfb(tmp_path, xvfb_display):
    shot = tmp_path / "window.png"
    rd = tempfile.mkdtemp(prefix="nrw-")
    env = {k: v for k, v in os.environ.items() if k != "WAYLAND_DISPLAY"}
    env["DISPLAY"] = xvfb_display
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "neural_renderer.cli", "demo",
             "--frames", "4", "--resolution", "64x48", "--window-size", "320x240", "--view", "side by side",
             "--backend", "passthrough", "--runtime-dir", rd, "--ssaa", "1", "--screenshot", str(shot)],
            env=env, capture_output=True, text=True, timeout=120)
    finally:
        shutil.rmtree(rd, ignore_errors=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    img = imageio.imread(shot)
    assert img.shape[:2] == (240, 320)
    # side by side: three 64x48 panels + 2 gaps letterboxed into 320 wide -> rows of picture in the middle
    middle = img[120, 10:310]
    assert middle.std() > 5 and middle.mean() > 20
    assert img[0:40].max() > 200, "the HUD text is drawn at the top"
    assert img[-20:].max() < 10, "letterbox bars below the picture"
