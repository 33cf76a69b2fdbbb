"""Loads the GLSL files in demos/shaders/, expanding `#include "name"` lines (one level is all we use)."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

SHADER_DIR = Path(__file__).with_name("shaders")


@lru_cache(maxsize=None)
def load(name: str) -> str:
    lines = []
    for line in (SHADER_DIR / name).read_text().splitlines():
        if line.startswith("#include"):
            lines.append(load(line.split('"')[1]))
        else:
            lines.append(line)
    return "\n".join(lines) + "\n"
