"""Build and run the Unity client's plain-C# core under mono, for tests/test_unity_core.py.

The core (unity_client/Runtime/Core/*.cs) and its test program (unity_client/Tests/Mono/CoreTests.cs)
are compiled with `mcs` into a temporary directory, next to the dllmap config that points
DllImport("libzmq") at Debian's libzmq.so.5.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CORE_DIR = REPO / "unity_client" / "Runtime" / "Core"
TESTS_DIR = REPO / "unity_client" / "Tests" / "Mono"


def require_tools() -> None:
    missing = [t for t in ("mcs", "mono") if shutil.which(t) is None]
    if missing:
        raise RuntimeError(f"{', '.join(missing)} not found: install mono-mcs and mono-runtime (.ci/setup does)")


def build(out_dir: Path) -> Path:
    """Compile the core library and the test program; returns the path of CoreTests.exe."""
    require_tools()
    out_dir.mkdir(parents=True, exist_ok=True)
    core = out_dir / "Neurender.Core.dll"
    sources = sorted(str(p) for p in CORE_DIR.glob("*.cs"))
    assert sources, f"no C# sources in {CORE_DIR}"
    _mcs(["-target:library", "-warnaserror+", f"-out:{core}", *sources])
    exe = out_dir / "CoreTests.exe"
    _mcs([f"-out:{exe}", f"-r:{core}", "-r:System.Core.dll", str(TESTS_DIR / "CoreTests.cs")])
    shutil.copy(TESTS_DIR / "Neurender.Core.dll.config", out_dir / "Neurender.Core.dll.config")
    return exe


def _mcs(args: list[str]) -> None:
    r = subprocess.run(["mcs", *args], capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        raise RuntimeError(f"mcs failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")


def parse_lines(lines: list[str]) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    """(passed name -> detail, failed name -> message, info key -> value) from the program's stdout."""
    passed, failed, info = {}, {}, {}
    for line in lines:
        kind, _, rest = line.rstrip("\n").partition(" ")
        name, _, detail = rest.partition(" ")
        if kind == "PASS":
            passed[name] = detail
        elif kind == "FAIL":
            failed[name.rstrip(":")] = detail
        elif kind == "INFO":
            info[name] = detail
    return passed, failed, info
