"""How much of each fine-tuning batch should be the user's recording (`--look-share`)? A CPU-sized
measurement: micro is pre-trained on the synthetic scene's seven looks, then fine-tuned on a recording of
the demo in the unseen ink look at several shares (the rest synthetic clips of the seven looks), and
each result is scored twice: PSNR on the recording's held-out sequence (the new look learned) and mean
PSNR over the seven built-in looks on held-out synthetic clips (the old looks kept), beside the
pre-trained model's own figures.

    python -m neural_renderer.training.look_share_bench --data REC_DIR --json benchmarks/results/look_share_cpu.json
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def builtin_psnr(checkpoint: Path, clips: int = 4, length: int = 6) -> float:
    """Mean PSNR (dB) of the model over the seven looks on held-out synthetic clips (seeds unused in training)."""
    import numpy as np
    import torch

    from bridge.styles import STYLES
    from neural_renderer.model.checkpoint import load_model
    from neural_renderer.training.clip_sources import synthetic_clip
    from neural_renderer.model.inputs import engine_to_cond, image_to_model
    from neural_renderer.serving.generator import Generator
    from neural_renderer.serving.prompts import lookup

    m = load_model(checkpoint)
    out = []
    with torch.no_grad():
        for style in STYLES:
            for k in range(clips):
                clip = synthetic_clip(10_000_000 + k, length, m.cfg.resolution, [style])
                gen = Generator(m, lookup(STYLES[style]), seed=0)
                for t in range(length):
                    cond = engine_to_cond({c: torch.from_numpy(v[t]) for c, v in clip.engine.items()},
                                          resolution=m.cfg.resolution)[None]
                    y = gen.step(cond)
                    ref = image_to_model(torch.from_numpy(clip.reference[style][t]))[None]
                    mse = float((((y + 1) / 2 - (ref + 1) / 2) ** 2).mean())
                    out.append(-10 * np.log10(max(mse, 1e-10)))
    return float(np.mean(out))


def main() -> None:
    import torch

    torch.set_num_threads(1)
    p = argparse.ArgumentParser()
    p.add_argument("--data", required=True, help="a recording (2+ sequences: the last is held out)")
    p.add_argument("--shares", type=float, nargs="+", default=[0.25, 0.5, 0.75, 1.0])
    p.add_argument("--pretrain-steps", type=int, default=400)
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--out", default="runs/look_share")
    p.add_argument("--json", default=None)
    args = p.parse_args()

    from neural_renderer.eval.recorded import run_eval_recording
    from neural_renderer.training.train import TrainConfig, train
    from neural_renderer.training.finetune import finetune

    out = Path(args.out)
    common = dict(batch=4, clip_len=4, pool=16, refresh_every=2, lr=2e-3, warmup=10, log_every=25, ckpt_every=0)
    t0 = time.time()
    base = TrainConfig(model="micro", out=str(out / "pretrained"), source="synthetic", steps=args.pretrain_steps,
                       **common)
    train(base, progress=False)
    ckpt = out / "pretrained" / "micro.json"
    rows = [{"share": 0.0, "label": "pre-trained (no fine-tune)", "builtin_psnr": builtin_psnr(ckpt),
             "recording_psnr": _rec_psnr(run_eval_recording, ckpt, args.data)}]
    for share in args.shares:
        run = out / f"share_{share:g}"
        res = finetune(args.data, None, init=str(ckpt), out=str(run), steps=args.steps, look_share=share,
                       mix="synthetic", progress=False, **common)
        ft = Path(res["checkpoint"])
        rows.append({"share": share, "label": f"look share {share:g}", "builtin_psnr": builtin_psnr(ft),
                     "recording_psnr": _rec_psnr(run_eval_recording, ft, args.data), "final_loss": res["final_loss"]})
        print(json.dumps(rows[-1]), flush=True)
    result = {"model": "micro", "resolution": 32, "pretrain_steps": args.pretrain_steps, "finetune_steps": args.steps,
              "mix": "synthetic", "data": args.data, "seconds": time.time() - t0, "rows": rows}
    print(json.dumps(result, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))


def _rec_psnr(run_eval_recording, ckpt: Path, data: str) -> float:
    r = run_eval_recording(f"generator:{ckpt}", data, device="cpu", progress=False)
    return float(r["headline"][f"generator:{ckpt}"]["psnr"])


if __name__ == "__main__":
    main()
