"""`neurender bench serve`: what a frame costs through the daemon, what of it is the model, and what a user's
usual alternative costs, in one run.

    neurender bench serve --model base --device cuda --sizes 512x512 1280x720 --out serve.json

1. Round trip: a real `neurender serve` with the generator backend, one daemon per `--kernels` entry (`auto`,
   or an arm forced, e.g. `fused` beside `frame-graph+fused`), one shared-memory session per size fed engine frames (the engine's readback lands in the slot, a slow pan in the motion
   vectors so the reprojected history is used); the blocking round trip (submit -> result in hand) p50/p99
   and the daemon's own render time.
2. Model time alone: the same weights, dtype and serving arm (the one the daemon chose) in this process, after
   the daemon has gone: the sampler's steady-state frame (history, `steps` forwards, cache advance),
   synchronised per frame (neural_renderer.serving.arms.time_arm).
3. Host share = round trip - model time (p50s): sockets, shared memory, upload, conversion, download. Beside it
   the session's whole frame in this process (`frame_p50_ms`, neural_renderer.serving.arms.time_frame: channels
   in host memory to the output in host memory, the arm's own way) and what the transport adds to it
   (`transport_p50_ms` = round trip - whole frame).
4. Baseline: a StreamDiffusion-style img2img step (neural_renderer.serving.baseline_img2img: SD-turbo-sized
   UNet, 1 step, tiny VAE encode + decode, random weights), fp16 as one CUDA graph on a GPU, eager float32 on a
   CPU (`--baseline tiny` there: the same structure, narrow). Its model time alone, p50/p99.
5. Ratios, from the p50s above: our round trip / its model time, per size.
"""
from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

CHANNELS = {"color": "float16", "depth": "float16", "normals": "float16", "albedo": "float16",
            "material_id": "uint8", "motion": "float16", "disocclusion": "uint8"}


def parse_size(text: str) -> tuple[int, int]:
    """'1280x720' (width x height) or '64' -> (H, W)."""
    w, _, h = text.strip().partition("x")
    return int(h or w), int(w)


def stats(ms: list[float]) -> dict:
    import numpy as np

    a = np.asarray(ms, np.float64)
    return {"p50_ms": float(np.percentile(a, 50)), "p99_ms": float(np.percentile(a, 99)), "n": int(a.size)}


def fill_slots(s, seed: int = 0) -> None:
    """The engine's readback lands in every shared-memory slot of session `s` once (so what is timed is the
    daemon, not the client writing pixels), with a slow pan in the motion vectors: the reprojected history
    is used."""
    import numpy as np

    rng = np.random.default_rng(seed)
    for k in range(s.slots):
        for name, view in s.input_views(k).items():
            view[...] = (rng.random(view.shape) * (4 if name == "material_id" else 1)).astype(view.dtype)
        s.input_views(k)["motion"][...] = 0.5
        s.input_views(k)["disocclusion"][...] = 0


def checkpoint_for(model: str, tmp: Path) -> Path:
    """A shipped name or checkpoint path as it is; a registry size that is not shipped (e.g. hg-micro) gets
    random weights saved under `tmp` (timing does not depend on weight values)."""
    import torch

    from neural_renderer.model.checkpoint import resolve, save_checkpoint
    from neural_renderer.model.registry import MODELS, build

    try:
        return resolve(model)
    except FileNotFoundError:
        if model not in MODELS:
            raise
    torch.manual_seed(0)
    m = build(model)
    return save_checkpoint(m.state_dict(), m.cfg, tmp / model, dtype=torch.float32)


def roundtrips(ckpt: Path, sizes, device: str, steps: int, dtype: str, frames: int, warmup: int, log,
               kernels: tuple[str, ...] = ("auto",)) -> list[dict]:
    rows = []
    for k in kernels:  # one daemon per arm: each serves its sessions its own way
        try:
            rows += [{"requested": k, **row} for row in _roundtrips(ckpt, sizes, device, steps, dtype, frames, warmup, log, k)]
        except Exception as e:  # noqa: BLE001 - an arm that cannot serve here (no Triton, failed check) is a result
            if len(kernels) == 1:
                raise
            log(f"kernels {k}: the daemon did not serve: {type(e).__name__}: {e}")
    return rows


def _roundtrips(ckpt: Path, sizes, device: str, steps: int, dtype: str, frames: int, warmup: int, log,
                kernels: str) -> list[dict]:
    from bridge.client import Client
    from bridge.daemon import spawn_daemon
    from bridge.styles import STYLES

    rows = []
    with spawn_daemon(f"generator:{ckpt}", runtime_dir="private", device=device, steps=steps, timeout=600,
                      extra_args=["--dtype", dtype, "--kernels", kernels]) as d:
        with Client(d.endpoint) as c:
            for H, W in sizes:
                s = c.open_session(W, H, CHANNELS, output_format="rgb8", prompt=STYLES["sunny"], steps=steps)
                fill_slots(s)
                rt, render = [], []
                for i in range(warmup + frames):
                    r = s.render(slot=s.acquire_slot(), timeout=600)
                    if i >= warmup:
                        rt.append(r.timings["roundtrip_ms"])
                        render.append(r.timings["render_ms"])
                info = s.info["renderer"]
                s.close()
                a, b = stats(rt), stats(render)
                rows.append({"size": f"{W}x{H}", "width": W, "height": H, "kernels": info.get("kernels"),
                             "roundtrip_p50_ms": a["p50_ms"], "roundtrip_p99_ms": a["p99_ms"],
                             "render_p50_ms": b["p50_ms"], "render_p99_ms": b["p99_ms"], "frames": a["n"]})
                log(f"round trip {W}x{H}: p50 {a['p50_ms']:.3f} ms, p99 {a['p99_ms']:.3f} ms "
                    f"(daemon render p50 {b['p50_ms']:.3f} ms, arm {info.get('kernels')})")
    return rows


def model_times(ckpt: Path, rows: list[dict], device: str, steps: int, dtype: str, frames: int, warmup: int,
                log) -> None:
    """Adds model_p50_ms / model_p99_ms / host_share_p50_ms (and the in-process whole frame: frame_p50_ms,
    transport_p50_ms) to each round-trip row. A whole-frame arm's model time is its step arm's."""
    import torch

    from neural_renderer.model.checkpoint import load_model
    from neural_renderer.serving.arms import ARMS, time_arm, time_frame

    model = load_model(ckpt, device=device, dtype=getattr(torch, dtype))
    for row in rows:
        arm, size = ARMS[row["kernels"] or "eager"], (row["height"], row["width"])
        m = stats(time_arm(model, arm, size, steps, frames=frames, warmup=max(warmup, 8)))
        f = stats(time_frame(model, arm, size, steps, frames=frames, warmup=max(warmup, 8)))
        row.update(model_p50_ms=m["p50_ms"], model_p99_ms=m["p99_ms"],
                   host_share_p50_ms=row["roundtrip_p50_ms"] - m["p50_ms"], frame_p50_ms=f["p50_ms"],
                   frame_p99_ms=f["p99_ms"], transport_p50_ms=row["roundtrip_p50_ms"] - f["p50_ms"])
        log(f"model alone {row['size']} ({row['kernels']}): p50 {m['p50_ms']:.3f} ms, p99 {m['p99_ms']:.3f} ms; "
            f"host share {row['host_share_p50_ms']:.3f} ms; whole frame in process p50 {f['p50_ms']:.3f} ms, "
            f"transport {row['transport_p50_ms']:.3f} ms")


def baseline_time(config: str, size: tuple[int, int], device: str, frames: int, warmup: int, log) -> dict:
    import torch

    from neural_renderer.serving.baseline_img2img import GraphedImg2Img, Img2ImgStep, UNetConfig, params

    cfg = UNetConfig.sd_turbo() if config == "sd-turbo" else UNetConfig.tiny()
    dev = torch.device(device)
    dtype = torch.float16 if dev.type == "cuda" else torch.float32  # fp16 convs on a CPU time nothing real
    torch.manual_seed(0)
    step = Img2ImgStep(cfg).to(dev, dtype)
    H, W = size
    run = GraphedImg2Img(step, H, W)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    for _ in range(warmup):
        run()
    ms = []
    for _ in range(frames):
        sync()
        t0 = time.perf_counter()
        run()
        sync()
        ms.append((time.perf_counter() - t0) * 1e3)
    s = stats(ms)
    out = {"name": "StreamDiffusion-style img2img (1 UNet step, tiny VAE encode+decode)", "config": config,
           "unet_params": params(step.unet), "vae_params": params(step.encoder) + params(step.decoder),
           "size": f"{W}x{H}", "width": W, "height": H, "dtype": str(dtype).removeprefix("torch."),
           "cuda_graph": run.graph is not None, "model_p50_ms": s["p50_ms"], "model_p99_ms": s["p99_ms"],
           "frames": s["n"]}
    log(f"baseline {config} {W}x{H} ({out['unet_params'] / 1e6:.1f}M UNet params, {out['dtype']}, "
        f"graph {out['cuda_graph']}): p50 {s['p50_ms']:.3f} ms, p99 {s['p99_ms']:.3f} ms")
    return out


def bench(model: str, device: str, sizes: list[tuple[int, int]], steps: int, frames: int, warmup: int,
          dtype: str, baseline: str, baseline_size: tuple[int, int], log=print, kernels: tuple[str, ...] = ("auto",)) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = checkpoint_for(model, Path(tmp))
        rows = roundtrips(ckpt, sizes, device, steps, dtype, frames, warmup, log, kernels)
        model_times(ckpt, rows, device, steps, dtype, frames, warmup, log)  # the daemon has gone: no contention
    base = baseline_time(baseline, baseline_size, device, frames, warmup, log)
    ratios = []
    for row in rows:
        ratios.append({"size": row["size"], "kernels": row["kernels"], "ours_roundtrip_p50_ms": row["roundtrip_p50_ms"],
                       "baseline_model_p50_ms": base["model_p50_ms"],
                       "ours_over_baseline": row["roundtrip_p50_ms"] / base["model_p50_ms"]})
        log(f"ours {row['size']} ({row['kernels']}) round trip {row['roundtrip_p50_ms']:.3f} ms vs baseline {base['size']} model "
            f"{base['model_p50_ms']:.3f} ms: x{ratios[-1]['ours_over_baseline']:.3f}")
    import torch

    return {"model": model, "checkpoint": str(ckpt.name), "device": device,
            "device_name": torch.cuda.get_device_name() if device.startswith("cuda") else "cpu",
            "steps": steps, "dtype": dtype, "transport": "shm", "channels": CHANNELS, "rows": rows,
            "baseline": base, "ratios": ratios, "date": time.strftime("%Y-%m-%d")}


def write(res: dict, path: str) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(res, indent=1))
