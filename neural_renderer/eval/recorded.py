"""`neurender eval --data DIR`: score a renderer on the held-out sequences of a recording of a user's game
(neural_renderer.data.recording), against the game's own frames (`final`), with the figures of the suites.

Systems, as in runner.run_eval: `engine` (the engine colour), `reference` (the recorded frames themselves:
infinite PSNR, the warping-error floor) and the renderer under test, opened with the recording's look
name as its prompt. The result has the same shape as run_eval's, with suite "recording:<look>".
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from bridge.channels import FINAL, OUTPUT_FORMATS
from ..data.format import CHANNEL_DTYPES, unflatten_constants
from ..data.recording import held_out, look_name, open_recording
from .runner import ENGINE, REFERENCE, _headline, _make_host, _plain, _score_run
from .scores import summarize

DRIFT_WINDOW = 16


@dataclass(frozen=True)
class RecordedSequence:
    """What runner._score_run needs of a sequence: one look from frame 0, the recording's own cuts."""
    seed: int
    look: str
    resets: tuple[int, ...] = ()

    def style_at(self, t: int) -> str:
        return self.look

    @property
    def schedule(self) -> tuple[tuple[int, str], ...]:
        return ((0, self.look),)


def _scored_clip(ds, k: int, look: str):
    """Sequence k with `final` as the reference of the look; absent motion/disocclusion stand in as zeros
    and ones (their warping error is reported as NaN)."""
    clip = ds.clip(k, 0, None, styles=[])
    engine = dict(clip.engine)
    n, h, w = len(clip), ds.height, ds.width
    engine.setdefault("motion", np.zeros((n, h, w, 2), np.float32))
    engine.setdefault("disocclusion", np.ones((n, h, w, 1), np.uint8))
    return replace(clip, engine=engine, reference={look: clip.engine[FINAL.name]})


def run_eval_recording(renderer, data: str | Path, *, endpoint: str | None = None, steps: int | None = None,
                       device: str | None = None, json_path: str | Path | None = None,
                       output_format: str = "rgb16f", sequences: list[int] | None = None,
                       progress: bool = True) -> dict:
    from tqdm import tqdm

    if output_format not in OUTPUT_FORMATS:
        raise ValueError(f"unknown output format {output_format!r}; known: {list(OUTPUT_FORMATS)}")
    ds = open_recording(data)
    look = look_name(ds)
    picked = held_out(len(ds)) if sequences is None else list(sequences)
    if not picked:
        raise ValueError(f"{data}: {len(ds)} sequence(s), none held out; record at least 2 sessions (the last "
                         "tenth, at least one, is held out from fine-tuning and scored here)")
    engine_channels = [c for c in ds.channels if c != FINAL.name]
    declared = {c: CHANNEL_DTYPES[c] for c in engine_channels}
    label = renderer if isinstance(renderer, str) else getattr(renderer, "name", type(renderer).__name__)
    host = _make_host(renderer, endpoint, steps, device)
    systems = [ENGINE, REFERENCE, label]
    runs: dict[str, list[dict]] = {s: [] for s in systems}
    t_start = time.perf_counter()
    try:
        total = sum(ds.sequences[k].frames for k in picked) * len(systems)
        with tqdm(total=total, desc=f"eval {look}", unit="frame", disable=not progress) as bar:
            for k in picked:
                seq, clip = RecordedSequence(k, look), _scored_clip(ds, k, look)
                black = np.zeros((ds.height, ds.width, 3), np.float32)
                runs[ENGINE].append(_score_run(seq, clip, lambda t, s, p, r: (
                    np.asarray(clip.engine["color"][t], np.float32) if "color" in clip.engine else black, None, None),
                    [], bar))
                runs[REFERENCE].append(_score_run(seq, clip, lambda t, s, p, r: (
                    np.asarray(clip.reference[look][t], np.float32), None, None), [], bar))
                run = host.open(ds.width, ds.height, declared, output_format, look)
                try:
                    def produce(t, style, prompt, reset, run=run, clip=clip):
                        pixels = {c: np.ascontiguousarray(clip.engine[c][t]) for c in engine_channels}
                        return run.render(pixels, unflatten_constants(clip.constants[t]),
                                          np.asarray(clip.action[t], np.float32), None, reset)
                    runs[label].append(_score_run(seq, clip, produce, [], bar))
                finally:
                    run.close()
                if "motion" not in ds.channels or "disocclusion" not in ds.channels:
                    for name in systems:
                        runs[name][-1]["warp"] = [math.nan] * len(clip)
                runs[label][-1]["warmup"] = min(2, len(clip) - 1)
        description = host.describe()
    finally:
        host.close()
    result = {
        "suite": f"recording:{look}", "data": str(data), "look": look, "resolution": [ds.width, ds.height],
        "renderer": label, "vs": None, "endpoint": endpoint, "steps": steps, "output_format": output_format,
        "channels": engine_channels, "hosts": {label: description}, "seconds": time.perf_counter() - t_start,
        "sequences": [{"seed": k, "frames": ds.sequences[k].frames, "styles": [look], "resets":
                       runs[ENGINE][i]["resets"]} for i, k in enumerate(picked)],
        "systems": {name: {"summary": summarize(runs[name], DRIFT_WINDOW, name == label),
                           "per_frame": [{"seed": r["seed"], "psnr": r["psnr"], "ssim": r["ssim"], "warp": r["warp"]}
                                         for r in runs[name]]} for name in systems},
    }
    result["headline"] = {name: _headline(result["systems"][name]["summary"]) for name in systems}
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps(_plain(result), indent=1))
    return result
