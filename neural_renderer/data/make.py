"""Rendering sequences of the game world into a dataset, in-process or over worker processes.

Every frame comes from demos.sequence.render_sequence (engine pass + reference look per style);
the seed checks of writer.check_split_seeds run before anything is rendered or written.
"""
from __future__ import annotations

import multiprocessing as mp
import queue
import time
from pathlib import Path

import numpy as np

from .writer import FrameSink, SequencePlan, allocate, commit, plan_index

_worker_ctx = None
_worker_progress = None


def _render_into(root: Path, index: dict, seq_idx: int, ctx, progress=None) -> dict:
    """Render one planned sequence into its rows; returns per-sequence numbers for the report."""
    from neural_renderer.data.world import render_sequence

    seq = index["sequences"][seq_idx]
    styles = tuple(s["name"] for s in index["styles"])
    sink = FrameSink(root, index)
    resets, disocc, motion_px = 0, 0.0, 0.0
    t0 = time.perf_counter()
    t = -1
    try:
        for t, frame in enumerate(render_sequence(seq["seed"], seq["frames"], index["width"], index["height"],
                                                  styles=styles, script=seq["script"], fps=seq["fps"], ctx=ctx)):
            if t >= seq["frames"]:
                raise RuntimeError(f"render_sequence yielded more than {seq['frames']} frames")
            sink.write(seq_idx, t, frame)
            resets += bool(frame.reset)
            disocc += float(np.mean(np.asarray(frame.engine["disocclusion"], np.float32)))
            motion_px += float(np.mean(np.abs(np.asarray(frame.engine["motion"], np.float32))))
            if progress is not None:
                progress(1)
        if t + 1 != seq["frames"]:
            raise RuntimeError(f"render_sequence yielded {t + 1} frames, {seq['frames']} were asked")
    finally:
        sink.close()
    n = seq["frames"]
    return {"seq": seq_idx, "seed": seq["seed"], "frames": n, "seconds": time.perf_counter() - t0,
            "resets": resets, "disoccluded_fraction": disocc / n, "mean_abs_motion_px": motion_px / n}


def _worker_init(progress_queue) -> None:
    global _worker_ctx, _worker_progress
    from neural_renderer.data.world import create_context

    _worker_ctx = create_context(headless=True)
    _worker_progress = progress_queue


def _worker_task(args) -> dict:
    root, index, seq_idx = args
    q = _worker_progress
    pending = [0]

    def report(n):  # batch queue puts: one per 8 frames keeps the bar live without IPC per frame
        pending[0] += n
        if pending[0] >= 8:
            q.put(pending[0])
            pending[0] = 0

    out = _render_into(root, index, seq_idx, _worker_ctx, report)
    if pending[0]:
        q.put(pending[0])
    return out


def render_plan(root: str | Path, plan: list[SequencePlan], *, width: int, height: int, styles: dict[str, str],
                split: str = "train", workers: int = 1, frames_per_shard: int = 2048, overwrite: bool = False,
                progress: bool = True, desc: str = "render", meta: dict | None = None) -> dict:
    """Render every planned sequence into a new dataset at root; returns the committed index."""
    from tqdm import tqdm

    root = Path(root)
    index = plan_index(plan, width=width, height=height, styles=styles, split=split,
                       frames_per_shard=frames_per_shard, meta=meta)  # seed checks happen here
    allocate(root, index, overwrite=overwrite)
    total = sum(p.frames for p in plan)
    bar = tqdm(total=total, desc=desc, unit="frame", disable=not progress, dynamic_ncols=True)
    t0 = time.perf_counter()
    per_seq: list[dict] = []
    try:
        if workers <= 1:
            from neural_renderer.data.world import create_context, release_context

            ctx = create_context(headless=True)
            try:
                for i in range(len(plan)):
                    per_seq.append(_render_into(root, index, i, ctx, bar.update))
            finally:
                release_context(ctx)
        else:
            mpc = mp.get_context("spawn")  # a fresh interpreter per worker: no inherited GL state
            q = mpc.Queue()
            with mpc.Pool(min(workers, len(plan)), initializer=_worker_init, initargs=(q,)) as pool:
                res = pool.map_async(_worker_task, [(root, index, i) for i in range(len(plan))], chunksize=1)
                while not res.ready():
                    try:
                        bar.update(q.get(timeout=0.2))
                    except queue.Empty:
                        pass
                per_seq = res.get()
                while True:
                    try:
                        bar.update(q.get_nowait())
                    except queue.Empty:
                        break
    finally:
        bar.close()
    seconds = time.perf_counter() - t0
    index["meta"].update({
        "frames": total,
        "render_seconds": round(seconds, 3),
        "frames_per_second": round(total / seconds, 3),
        "workers": workers,
        "per_sequence": sorted(per_seq, key=lambda s: s["seq"]),
    })
    commit(root, index)
    return index


def make_dataset(out: str | Path, *, sequences: int, frames: int, width: int, height: int,
                 styles: dict[str, str] | None = None, seed_offset: int = 0, script: str = "mixed",
                 fps: float = 30.0, workers: int = 1, overwrite: bool = False, progress: bool = True,
                 report: bool = True) -> dict:
    """Training data: scene seeds seed_offset .. seed_offset + sequences - 1, which must all be training seeds."""
    if styles is None:
        from bridge.styles import STYLES

        styles = dict(STYLES)
    plan = [SequencePlan(seed_offset + i, frames, script, fps) for i in range(sequences)]
    index = render_plan(out, plan, width=width, height=height, styles=styles, split="train", workers=workers,
                        overwrite=overwrite, progress=progress, desc="dataset",
                        meta={"created_by": "neurender dataset make"})
    if report:
        from .report import write_report

        write_report(out)
    return index
