"""`run_eval`: score a renderer (and baselines, by the same code) on a suite's held-out sequences.

Systems scored on the very same frames:
  engine     the engine pass's own colour (the baseline every renderer must beat)
  reference  the reference look itself: PSNR is infinite, its warping error is the floor
  <spec>     the renderer under test, in-process or through a daemon (`endpoint`)
  <vs spec>  an optional second renderer, side by side

The result (also the --json file; JSON with Infinity/NaN tokens, which Python's json reads back):
  suite, split (eval, or train for a tuning suite), resolution [W, H], renderer, vs, endpoint, steps, output_format, channels, hosts (describe()),
  seconds, sequences [{seed, frames, styles, cache, schedule, resets}],
  systems {name: {summary: {frames, nonfinite_frames, psnr, psnr_min, ssim, warp_error,
                            block_grid (metrics.block_grid at 8- and 16-pixel tiles, the larger),
                            looks {look: {psnr, ssim, warp, frames}},
                            drift {window, windows, psnr_windows, warp_windows, last_window,
                                   psnr_last_minus_first, warp_last_over_first},
                            prompt_switch / reset {events, mean_frames, max_frames, settled_psnr},
                            latency {p50_ms, p99_ms, mean_ms, fps, frames,
                                     daemon_render_p50_ms / _p99_ms with --endpoint}   (renderers only)},
                  per_frame: [{seed, psnr [], ssim [], warp [], latency_ms []}]}},
  headline {name: {psnr, ssim, warp_error, block_grid, drift_psnr_db, drift_warp_ratio, prompt_switch_frames,
                   reset_frames, latency_p50_ms, latency_p99_ms, fps}}
Ablations: `run_eval("generator:/path/ckpt.safetensors", "quick", steps=2)["headline"]`.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np

from bridge.channels import CHANNELS, OUTPUT_FORMATS
from ..data.format import CHANNEL_DTYPES, unflatten_constants
from . import metrics
from .scores import events, summarize
from .suites import Suite, get_suite

ENGINE, REFERENCE = "engine", "reference"


def _engine_system(clip, t, style):
    return np.asarray(clip.engine["color"][t], np.float32)


def _reference_system(clip, t, style):
    return np.asarray(clip.reference[style][t], np.float32)


def _score_run(seq, clip, produce, samples: list[int], bar) -> dict:
    """Feed one sequence through `produce(t, style, prompt, reset) -> (image, seconds|None, timings|None)`."""
    n = len(clip)
    run = {"seed": seq.seed, "psnr": [], "ssim": [], "warp": [], "latency_s": [], "samples": {}, "styles": [],
           "nonfinite_frames": 0, "daemon_render_ms": [], "block_grid_8": [], "block_grid_16": []}
    prev, prev_style = None, None
    for t in range(n):
        style = seq.style_at(t)
        prompt = style if style != prev_style else None
        reset = bool(clip.reset[t]) or t in seq.resets
        img, seconds, timings = produce(t, style, prompt, reset or t == 0)
        if not np.isfinite(img).all():
            run["nonfinite_frames"] += 1
        # scored as displayed: NaN -> 0, clipped to [0, 1] (what the bridge's rgb8 conversion does)
        img = np.clip(np.nan_to_num(img, nan=0.0, posinf=1.0, neginf=0.0), 0.0, 1.0)
        ref = np.asarray(clip.reference[style][t], np.float32)
        run["psnr"].append(metrics.psnr(img, ref))
        run["ssim"].append(metrics.ssim(img, ref))
        run["block_grid_8"].append(metrics.block_grid(img, 8))
        run["block_grid_16"].append(metrics.block_grid(img, 16))
        run["styles"].append(style)
        if prev is None or reset or prompt:  # a cut or a new look is meant to change the picture
            run["warp"].append(math.nan)
        else:
            run["warp"].append(metrics.warping_error(prev, img, clip.engine["motion"][t],
                                                     clip.engine["disocclusion"][t]))
        if seconds is not None:
            run["latency_s"].append(seconds)
        if timings and "render_ms" in timings:
            run["daemon_render_ms"].append(float(timings["render_ms"]))
        if t in samples:
            run["samples"][t] = img
        prev, prev_style = img, style
        bar.update(1)
    switches = [t for t, _ in seq.schedule]
    resets = [t for t in range(n) if clip.reset[t] or t in seq.resets]
    run["switch_events"], run["reset_events"] = events(switches, resets, n)
    run["switches"], run["resets"] = switches, resets
    return run


def _host_producer(host, seq, clip, width, height, channels, output_format):
    from bridge.styles import STYLES

    handle = {"run": None}

    def produce(t, style, prompt, reset):
        if handle["run"] is None:  # the session opens with the first look, so frame 0 repeats no prompt
            handle["run"] = host.open(width, height, channels, output_format, STYLES[style])
            prompt = None
        pixels = {c: np.ascontiguousarray(clip.engine[c][t]) for c in channels}
        return handle["run"].render(pixels, unflatten_constants(clip.constants[t]),
                                    np.asarray(clip.action[t], np.float32),
                                    STYLES[prompt] if prompt else None, reset)

    return produce, handle


def _make_host(renderer, endpoint, steps, device):
    from .hosts import DaemonHost, InProcessHost

    if endpoint:
        return DaemonHost(endpoint, renderer if isinstance(renderer, str) else None, steps)
    return InProcessHost(renderer, steps=steps, device=device)


def run_eval(renderer, suite: str | Suite = "quick", *, vs=None, endpoint: str | None = None,
             steps: int | None = None, device: str | None = None, cache_dir: str | Path | None = None,
             json_path: str | Path | None = None, report_dir: str | Path | None = None,
             resolution: tuple[int, int] | None = None, channels: list[str] | None = None,
             output_format: str = "rgb16f", progress: bool = True) -> dict:
    """Evaluate `renderer` (a spec string, or an object with the bridge.backends.Renderer interface).

    `vs` is a second renderer run in-process on the same frames. Returns the result dict that is
    also written to `json_path`; `report_dir` gets the Markdown report and its plots.
    """
    from tqdm import tqdm

    from .cache import default_cache_dir, sequence_dataset

    suite = get_suite(suite, resolution) if isinstance(suite, str) else suite
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    channels = list(channels or CHANNELS)
    for c in channels:
        if c not in CHANNELS:
            raise ValueError(f"unknown channel {c!r}; known: {list(CHANNELS)}")
    declared = {c: CHANNEL_DTYPES[c] for c in channels}
    w, h = suite.width, suite.height

    if output_format not in OUTPUT_FORMATS:
        raise ValueError(f"unknown output format {output_format!r}; known: {list(OUTPUT_FORMATS)}")

    # Renderers first: a bad spec or an absent daemon fails before minutes of rendering eval frames.
    hosts = {}
    label = renderer if isinstance(renderer, str) else getattr(renderer, "name", type(renderer).__name__)
    vs_label = None
    descriptions = {}
    try:
        hosts[label] = _make_host(renderer, endpoint, steps, device)
        if vs is not None:
            vs_label = vs if isinstance(vs, str) else getattr(vs, "name", type(vs).__name__)
            if vs_label in hosts or vs_label in (ENGINE, REFERENCE):
                vs_label = f"vs:{vs_label}"
            hosts[vs_label] = _make_host(vs, None, steps, device)
        datasets = [sequence_dataset(s, w, h, cache_dir, progress=progress, split=suite.split) for s in suite.sequences]
        systems = [ENGINE, REFERENCE, *hosts]
        runs: dict[str, list[dict]] = {s: [] for s in systems}
        total = sum(len(ds.clip(0)) for ds in datasets) * len(systems)
        t_start = time.perf_counter()
        with tqdm(total=total, desc=f"eval {suite.name}", unit="frame", disable=not progress,
                  dynamic_ncols=True) as bar:
            for k, (seq, ds) in enumerate(zip(suite.sequences, datasets)):
                clip = ds.clip(0)
                n = len(clip)
                samples = sorted(set(np.linspace(0, n - 1, suite.samples).round().astype(int).tolist())) if k == 0 else []
                runs[ENGINE].append(_score_run(seq, clip, lambda t, s, p, r: (_engine_system(clip, t, s), None, None),
                                               samples, bar))
                runs[REFERENCE].append(_score_run(seq, clip, lambda t, s, p, r: (_reference_system(clip, t, s), None, None),
                                                  samples, bar))
                for name, host in hosts.items():
                    produce, handle = _host_producer(host, seq, clip, w, h, declared, output_format)
                    try:
                        run = _score_run(seq, clip, produce, samples, bar)
                    finally:
                        if handle["run"] is not None:
                            handle["run"].close()
                    run["warmup"] = min(suite.warmup_frames, n - 1)
                    runs[name].append(run)
    finally:
        for name, host in hosts.items():
            try:
                descriptions[name] = host.describe()
            except Exception as e:  # a description must never hide the real result or error
                descriptions[name] = {"error": repr(e)}
            host.close()
    seconds = time.perf_counter() - t_start

    result = {
        "suite": suite.name,
        "split": suite.split,  # "train": a tuning suite of training seeds, not an evaluation
        "resolution": [w, h],
        "renderer": label,
        "vs": vs_label,
        "endpoint": endpoint,
        "steps": steps,
        "output_format": output_format,
        "channels": channels,
        "hosts": descriptions,
        "seconds": seconds,
        "sequences": [{"seed": s.seed, "frames": len(runs[ENGINE][i]["psnr"]), "styles": list(s.styles),
                       "cache": str(datasets[i].root),
                       "schedule": [list(x) for x in s.schedule], "resets": runs[ENGINE][i]["resets"]}
                      for i, s in enumerate(suite.sequences)],
        "systems": {},
    }
    for name in systems:
        timed = name in hosts
        result["systems"][name] = {
            "summary": summarize(runs[name], suite.drift_window, timed),
            "per_frame": [{"seed": r["seed"], "psnr": r["psnr"], "ssim": r["ssim"], "warp": r["warp"],
                           **({"latency_ms": [s * 1e3 for s in r["latency_s"]]} if timed else {})}
                          for r in runs[name]],
        }
    result["headline"] = {name: _headline(result["systems"][name]["summary"]) for name in systems}
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps(_plain(result), indent=1))
    if report_dir:
        from .report import write_report

        first = datasets[0].clip(0)
        samples = {name: runs[name][0]["samples"] for name in systems}
        write_report(report_dir, result, first, suite.sequences[0], samples)
    return result


def _headline(s: dict) -> dict:
    out = {"psnr": s["psnr"], "ssim": s["ssim"], "warp_error": s["warp_error"], "block_grid": s["block_grid"],
           "drift_psnr_db": s["drift"]["psnr_last_minus_first"], "drift_warp_ratio": s["drift"]["warp_last_over_first"],
           "prompt_switch_frames": s["prompt_switch"]["mean_frames"], "reset_frames": s["reset"]["mean_frames"]}
    if "latency" in s:
        out.update(latency_p50_ms=s["latency"]["p50_ms"], latency_p99_ms=s["latency"]["p99_ms"], fps=s["latency"]["fps"])
    return out


def _plain(x):
    """numpy scalars -> Python numbers so json can write them (inf/NaN stay as JSON Infinity/NaN)."""
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, np.generic):
        return x.item()
    return x
