"""One device call for the distillation and pruning table: shortcut-distil tiny, prune the distilled tiny (and base for
timing), then time and evaluate every arm side by side in this one process.

    neurender bench distill --ckpt-dir neural_renderer/checkpoints --out runs/bench \
        --distill-s 60 --prune-s 40 --device cuda

Writes OUT/distill_bench.json (every number), OUT/ckpt/<run>/ (the distilled and pruned tiny checkpoints),
OUT/report.tgz (loss / sampling / score plots and the per-stage result JSONs). A stage that fails is
recorded with its error and the later stages still run, so one call always brings back something.
"""
from __future__ import annotations

import json
import shutil
import tarfile
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path


def _stage(results: dict, name: str, fn):
    t0 = time.time()
    try:
        results[name] = fn()
    except Exception as e:  # keep going: later stages are independent measurements
        results[name] = {"error": f"{type(e).__name__}: {e}", "trace": traceback.format_exc()[-2000:]}
        print(f"[{name}] FAILED: {e}", flush=True)
    results.setdefault("stage_seconds", {})[name] = time.time() - t0
    print(f"[{name}] {time.time() - t0:.1f} s", flush=True)
    if results.get("_path"):  # after every stage, so a run cut off by its time limit still reports
        Path(results["_path"]).write_text(json.dumps({k: v for k, v in results.items() if k != "_path"}, indent=1, default=str))
    return results[name]


@dataclass
class DistillBenchConfig:
    ckpt_dir: str = "neural_renderer/checkpoints"
    out: str = "runs/distill_bench"
    work: str = ""  # scratch directory (runs, eval cache); default OUT/work
    data: str = "world"
    device: str = "cuda"
    distill_s: float = 60.0
    prune_s: float = 40.0
    batch: int = 16
    distill_lr: float = 2e-4
    prune_lr: float = 2e-4
    pool: int = 48
    clip_len: int = 6
    drop_blocks: int = 2
    mlp_ratio: int = 3
    base_drop_blocks: int = 3
    eval_frames: int = 150
    eval_runs: int = 2
    eval_res: int = 128
    timing_frames: int = 60
    skip_base: bool = False


def distill_bench(cfg: DistillBenchConfig) -> dict:
    """Every stage in order; returns (and writes) the results."""
    import torch

    from neural_renderer.serving.bench_generator import bench
    from neural_renderer.training.distill import DistillConfig, distill
    from neural_renderer.training.prune import PruneConfig, prune

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(cfg.work) if cfg.work else out / "work"
    ck = Path(cfg.ckpt_dir)
    res: dict = {"device": torch.cuda.get_device_name() if cfg.device.startswith("cuda") else "cpu", "torch": torch.__version__,
                 "args": asdict(cfg), "_path": str(out / "distill_bench.json")}
    sc_dir, pr_dir, bp_dir = work / "tiny-shortcut", work / "tiny-pruned", work / "base-pruned"
    sc_ck, pr_ck = sc_dir / "tiny-shortcut.json", pr_dir / "tiny-pruned.json"

    _stage(res, "distill_tiny", lambda: _slim(distill(DistillConfig(
        init=str(ck / "tiny.json"), out=str(sc_dir), name="tiny-shortcut", steps=10 ** 6, time_budget_s=cfg.distill_s, batch=cfg.batch,
        clip_len=cfg.clip_len, pool=cfg.pool, data=cfg.data, device=cfg.device, recommended_steps=2, log_every=25, lr=cfg.distill_lr), progress=False)))
    _stage(res, "prune_tiny", lambda: _slim(prune(PruneConfig(
        init=str(sc_ck if sc_ck.is_file() else ck / "tiny.json"), out=str(pr_dir), name="tiny-pruned",
        drop_blocks=cfg.drop_blocks, mlp_ratio=cfg.mlp_ratio, steps=10 ** 6, time_budget_s=cfg.prune_s, batch=cfg.batch,
        clip_len=cfg.clip_len, pool=max(8, cfg.pool // 2), lr=cfg.prune_lr, data=cfg.data, device=cfg.device, log_every=25), progress=False)))
    if not cfg.skip_base:
        # base: structure only (no recovery) so its speed-up is measured; timing does not depend on values
        _stage(res, "prune_base_structure", lambda: _slim(prune(PruneConfig(
            init=str(ck / "base.json"), out=str(bp_dir), name="base-pruned", drop_blocks=cfg.base_drop_blocks,
            mlp_ratio=cfg.mlp_ratio, steps=0, score_batches=1, batch=2, clip_len=3, pool=2, data=cfg.data,
            device=cfg.device), progress=False)))

    timing_arms = [("tiny", ck / "tiny.json"), ("tiny-pruned", pr_ck)]
    if not cfg.skip_base:
        timing_arms = [("base", ck / "base.json"), ("base-pruned", bp_dir / "base-pruned.json")] + timing_arms
    for label, path in timing_arms:
        for dtype in ("float32", "bfloat16"):
            _stage(res, f"timing_{label}_{dtype}", lambda path=path, dtype=dtype: bench(
                str(path), [1, 2, 4], cfg.timing_frames, 8, cfg.device, False, dtype))

    t, s, pr = (f"generator:{ck / 'tiny.json'}", f"generator:{sc_ck}", f"generator:{pr_ck}")
    arms = [("teacher", t, 32), ("teacher", t, 2), ("shortcut", s, 4), ("shortcut", s, 2), ("shortcut", s, 1),
            ("pruned shortcut", pr, 2), ("pruned shortcut", pr, 1)]
    suite = bench_suite(cfg.eval_frames, cfg.eval_runs, cfg.eval_res)
    res["suite"] = {"name": suite.name, "resolution": [suite.width, suite.height],
                    "sequences": [{"seed": q.seed, "frames": q.frames, "schedule": q.schedule, "resets": q.resets} for q in suite.sequences]}
    _stage(res, "eval", lambda: eval_table(arms, suite, cache_dir=str(work / "eval_cache"), device=cfg.device, progress=False))

    res.pop("_path")
    (out / "distill_bench.json").write_text(json.dumps(res, indent=1, default=str))
    for d in (sc_dir, pr_dir):  # OUT/ckpt/<run>/<files>: shard names inside the JSON stay valid
        (out / "ckpt" / d.name).mkdir(parents=True, exist_ok=True)
        for f in list(d.glob("*.json")) + list(d.glob("*.safetensors")):
            if not f.name.endswith("_result.json"):
                shutil.copy(f, out / "ckpt" / d.name / f.name)
    with tarfile.open(out / "report.tgz", "w:gz") as tar:
        for d in (sc_dir, pr_dir, bp_dir):
            for f in list(d.glob("*.png")) + list(d.glob("*_result.json")):
                tar.add(f, arcname=f"{d.name}/{f.name}")
    return res


def bench_suite(frames: int = 150, runs: int = 2, resolution: int = 128):
    """The first `runs` sequences of eval's `standard` suite, cut to `frames` frames with the same
    shape (look switch at 1/3, back at 2/3, eval-forced reset at 1/2), so a whole table of arms fits
    in a few device minutes."""
    from neural_renderer.eval.suites import EvalSequence, Suite, standard

    seqs = []
    for s in standard().sequences[:runs]:
        a, b = s.schedule[0][1], s.schedule[1][1]
        seqs.append(EvalSequence(s.seed, frames, s.styles, ((0, a), (frames // 3, b), (2 * frames // 3, a)),
                                 s.script, resets=(frames // 2,)))
    return Suite(f"standard[:{runs}]x{frames}f", resolution, resolution, tuple(seqs), drift_window=max(4, frames // 6))


def eval_table(arms: list[tuple[str, str, int]], suite, cache_dir: str | None = None, device: str | None = None,
               progress: bool = True) -> list[dict]:
    """`arms`: (label, renderer spec, steps). Every arm runs through eval's `run_eval` on the same suite
    (same frames, same cached references) in this one process; returns one headline row per arm."""
    from neural_renderer.eval import run_eval

    rows = []
    for label, spec, steps in arms:
        res = run_eval(spec, suite, steps=steps, device=device, cache_dir=cache_dir, progress=progress)
        h = res["headline"][spec]
        rows.append({"arm": label, "spec": spec, "steps": steps, **h, "host": res["hosts"].get(spec, {})})
    return rows


def _slim(r: dict) -> dict:
    """Stage results without the per-unit plans and scores (those stay in the stage's own JSON)."""
    r = dict(r)
    if "plan" in r:
        r["plan"] = {"keep_blocks": r["plan"]["keep_blocks"], "mlp_ratio": r["plan"]["mlp_ratio"]}
    if "scores" in r:
        r["scores"] = {"blocks": r["scores"]["blocks"], "heads": r["scores"]["heads"]}
    return r
