"""Side-by-side round trip of the Unity client's C# core (under mono) and the Python client
(bridge/client.py) against ONE passthrough daemon, same frame size, same work per frame: copy color
(float16) + depth (float32) into the input slot, submit, wait for the result, copy the rgba8 output.
Runs alternate between the two clients (rounds), so machine noise hits both alike. Prints the ratio
and writes benchmarks/results/unity_roundtrip.json.

    .venv/bin/python unity_client/Benchmarks~/bench_roundtrip.py [--width 512 --height 288 --frames 300 --rounds 3]
"""
from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from bridge.client import Client  # noqa: E402
from bridge.daemon import spawn_daemon  # noqa: E402

CORE_DIR = REPO / "unity_client" / "Runtime" / "Core"
TESTS_DIR = REPO / "unity_client" / "Tests" / "Mono"  # the dllmap config that points DllImport("libzmq") at libzmq.so.5


def _mcs(args: list[str]) -> None:
    """Compile with mono's C# compiler; a failure raises with the compiler's own messages."""
    r = subprocess.run(["mcs", *args], capture_output=True, text=True, timeout=120)
    if r.returncode:
        raise RuntimeError(f"mcs {' '.join(args[:2])} ...: {r.stdout}{r.stderr}")


def build(out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    core = out / "Neurender.Core.dll"
    _mcs(["-target:library", "-optimize+", f"-out:{core}", *sorted(str(p) for p in CORE_DIR.glob("*.cs"))])
    exe = out / "RoundTrip.exe"
    _mcs(["-optimize+", f"-out:{exe}", f"-r:{core}", str(Path(__file__).with_name("RoundTrip.cs"))])
    shutil.copy(TESTS_DIR / "Neurender.Core.dll.config", out / "Neurender.Core.dll.config")
    return exe


def run_csharp(exe: Path, endpoint: str, w: int, h: int, frames: int, warmup: int) -> dict:
    r = subprocess.run(["mono", str(exe), endpoint, str(w), str(h), str(frames), str(warmup)],
                       capture_output=True, text=True, timeout=600, cwd=exe.parent)
    if r.returncode != 0:
        raise RuntimeError(r.stdout + r.stderr)
    line = next(ln for ln in r.stdout.splitlines() if ln.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


def run_python(endpoint: str, w: int, h: int, frames: int, warmup: int) -> dict:
    rng = np.random.default_rng(1)
    color = rng.random((h, w, 3), dtype=np.float32).astype(np.float16)
    depth = np.zeros((h, w, 1), np.float32)
    out = np.empty((h, w, 4), np.uint8)
    action = np.zeros(9, np.float32)
    ms = []
    with Client(endpoint, name="bench-python") as c:
        s = c.open_session(w, h, {"color": "float16", "depth": "float32"}, output_format="rgba8")
        for i in range(warmup + frames):
            t0 = time.perf_counter()
            slot = s.acquire_slot()
            views = s.input_views(slot)
            np.copyto(views["color"], color)
            np.copyto(views["depth"], depth)
            action[0] = i % 2
            s.submit(action=action, slot=slot)
            r = s.poll(10.0)
            np.copyto(out, r.image)
            if i >= warmup:
                ms.append((time.perf_counter() - t0) * 1e3)
        s.close()
    ms.sort()
    q = lambda p: ms[min(len(ms) - 1, round(p * (len(ms) - 1)))]  # noqa: E731
    return {"client": "python", "frames": len(ms), "p50_ms": q(0.5), "p95_ms": q(0.95), "mean_ms": statistics.mean(ms)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--width", type=int, default=512)
    ap.add_argument("--height", type=int, default=288)
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--warmup", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "unity_roundtrip.json")
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="nr-unity-bench-"))
    try:
        exe = build(tmp / "build")
        runs = {"csharp": [], "python": []}
        (tmp / "shm").mkdir()
        with spawn_daemon("passthrough", runtime_dir=tmp / "rt", shm_dir=tmp / "shm") as d:
            for _ in tqdm(range(a.rounds), desc="rounds (C# then Python)"):
                runs["csharp"].append(run_csharp(exe, d.endpoint, a.width, a.height, a.frames, a.warmup))
                runs["python"].append(run_python(d.endpoint, a.width, a.height, a.frames, a.warmup))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    p50 = {k: statistics.median(r["p50_ms"] for r in v) for k, v in runs.items()}
    p95 = {k: statistics.median(r["p95_ms"] for r in v) for k, v in runs.items()}
    result = {
        "date": time.strftime("%Y-%m-%d"), "machine": platform.node(), "cpu": platform.processor() or platform.machine(),
        "width": a.width, "height": a.height, "frames_per_run": a.frames, "rounds": a.rounds,
        "backend": "passthrough", "channels": {"color": "float16", "depth": "float32"}, "output": "rgba8",
        "p50_ms": p50, "p95_ms": p95, "ratio_p50_csharp_over_python": p50["csharp"] / p50["python"],
        "ratio_p95_csharp_over_python": p95["csharp"] / p95["python"], "runs": runs,
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{a.width}x{a.height} color f16 + depth f32 -> rgba8, shm, passthrough, {a.rounds} rounds x {a.frames} frames")
    for k in ("csharp", "python"):
        print(f"  {k:7s} round trip p50 {p50[k]:.3f} ms  p95 {p95[k]:.3f} ms")
    print(f"  C#/Python p50 ratio {result['ratio_p50_csharp_over_python']:.2f}, p95 ratio "
          f"{result['ratio_p95_csharp_over_python']:.2f}  -> {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
