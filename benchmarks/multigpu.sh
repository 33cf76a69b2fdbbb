#!/usr/bin/env bash
# Issue 9 on a machine with two GPUs (nvidia-h200-x2), from the repo root:
#
#   bash benchmarks/multigpu.sh [OUT_DIR]        (default OUT_DIR: benchmarks/results)
#
# 1. Training, 1 GPU vs 2 GPUs at the same global batch (torchrun, DDP over NCCL): loss curves side by
#    side and the throughput ratio (goal >= 1.8x)        -> OUT_DIR/multigpu_train.json + .png
# 2. Serving, `neurender bench bridge --clients K --fps 60` against `serve --gpus 1` and `--gpus 2`
#    (one worker process per GPU)                        -> OUT_DIR/multigpu_serve.json + .png
#
# Knobs (environment): PYTHON, MODEL (tiny), STEPS (300), GLOBAL_BATCH (16, even), DATA (synthetic |
# world | a dataset dir), SERVE_BACKEND (generator:base), CLIENTS (4), SERVE_SECONDS (20), SIZE (512), SKIP_TRAIN=1,
# SKIP_SERVE=1. CPU_SMOKE=1 runs the whole script on CPU (gloo ranks, passthrough-sized knobs up to you)
# only to check the script itself; its numbers mean nothing.
set -euo pipefail

OUT=${1:-benchmarks/results}
PY=${PYTHON:-python}
MODEL=${MODEL:-tiny}
STEPS=${STEPS:-300}
GLOBAL_BATCH=${GLOBAL_BATCH:-16}
DATA=${DATA:-synthetic}
SERVE_BACKEND=${SERVE_BACKEND:-generator:base}
CLIENTS=${CLIENTS:-4}
SERVE_SECONDS=${SERVE_SECONDS:-20}
SIZE=${SIZE:-512}
mkdir -p "$OUT"

# NVLink multicast off in every process started below. The one definition is bridge.worker_pool.MULTI_GPU_ENV
# (the serving workers set it themselves as well).
eval "$("$PY" -c 'from bridge.worker_pool import MULTI_GPU_ENV as E; print("\n".join(f"export {k}={v}" for k, v in E.items()))')"
echo "NCCL_NVLS_ENABLE=$NCCL_NVLS_ENABLE TORCH_SYMM_MEM_DISABLE_MULTICAST=$TORCH_SYMM_MEM_DISABLE_MULTICAST NVSHMEM_DISABLE_NVLS=$NVSHMEM_DISABLE_NVLS"

NGPU=$("$PY" -c 'import torch; print(torch.cuda.device_count())')
if [ "$NGPU" -lt 2 ] && [ "${CPU_SMOKE:-0}" != 1 ]; then
  echo "multigpu.sh: $NGPU GPU(s) visible, need 2" >&2
  exit 2
fi
if [ $((GLOBAL_BATCH % 2)) -ne 0 ]; then
  echo "multigpu.sh: GLOBAL_BATCH must be even (split over 2 ranks)" >&2
  exit 2
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/nr-multigpu-XXXXXX")
trap 'rm -rf "$WORK"' EXIT

if [ "${SKIP_TRAIN:-0}" != 1 ]; then
  for N in 1 2; do
    echo "== train $MODEL on $N GPU(s), global batch $GLOBAL_BATCH ($((GLOBAL_BATCH / N)) per rank), $STEPS steps"
    "$PY" -m torch.distributed.run --standalone --nproc-per-node "$N" -m neural_renderer.cli train \
      --model "$MODEL" --data "$DATA" --steps "$STEPS" --batch $((GLOBAL_BATCH / N)) --log-every 10 \
      --ckpt-every 0 --seed 0 --out "$WORK/train_${N}gpu"
  done
  "$PY" - "$WORK" "$OUT" "$GLOBAL_BATCH" <<'EOF'
import json, os, platform, sys
from datetime import datetime, timezone
from pathlib import Path
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch

work, out, gb = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
runs = {}
for n in (1, 2):
    d = work / f"train_{n}gpu"
    res = json.loads((d / "train_result.json").read_text())
    hist = json.loads((d / "loss_history.json").read_text())
    runs[n] = {"result": res, "history": hist,
               "samples_per_s_median_step": gb / res["median_step_s"],
               "samples_per_s_overall": gb * res["steps"] / res["elapsed_s"]}
l1 = np.array([v for _, v in runs[1]["history"]]); l2 = np.array([v for _, v in runs[2]["history"]])
k = min(len(l1), len(l2)); half = slice(k // 2, k)
doc = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "host": platform.node(),
       "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
       "env": {k_: os.environ.get(k_) for k_ in ("NCCL_NVLS_ENABLE", "TORCH_SYMM_MEM_DISABLE_MULTICAST", "NVSHMEM_DISABLE_NVLS")},
       "global_batch": gb, "runs": runs,
       "throughput_ratio_2gpu_vs_1gpu_median_step": runs[2]["samples_per_s_median_step"] / runs[1]["samples_per_s_median_step"],
       "throughput_ratio_2gpu_vs_1gpu_overall": runs[2]["samples_per_s_overall"] / runs[1]["samples_per_s_overall"],
       "loss_mean_abs_rel_diff_second_half": float(np.mean(np.abs(l2[half] - l1[half]) / l1[half])),
       "note": "the 2-GPU curve is what rank 0 logs; neural_renderer.train does not all-reduce the logged loss "
               "(as of 2026-11-23), so it is rank 0's half of the global batch"}
(out / "multigpu_train.json").write_text(json.dumps(doc, indent=2))
fig, ax = plt.subplots(figsize=(7, 4))
for n in (1, 2):
    s, v = zip(*runs[n]["history"])
    ax.plot(s, v, label=f"{n} GPU(s), {runs[n]['samples_per_s_median_step']:.0f} samples/s")
ax.set_yscale("log"); ax.set_xlabel("step"); ax.set_ylabel("loss"); ax.legend(); ax.grid(alpha=0.3)
ax.set_title(f"same global batch {gb}: throughput x{doc['throughput_ratio_2gpu_vs_1gpu_median_step']:.2f}")
fig.tight_layout(); fig.savefig(out / "multigpu_train.png", dpi=110)
print(json.dumps({k_: doc[k_] for k_ in doc if k_.startswith(("throughput", "loss"))}, indent=1))
EOF
fi

if [ "${SKIP_SERVE:-0}" != 1 ]; then
  if [ "${CPU_SMOKE:-0}" = 1 ]; then export CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES:-0,1}; fi
  echo "== serve: $CLIENTS clients at 60 fps, ${SIZE}x${SIZE}, $SERVE_BACKEND, --gpus 1 vs --gpus 2"
  "$PY" -m neural_renderer.cli bench bridge --clients "$CLIENTS" --fps 60 --seconds "$SERVE_SECONDS" \
    --gpus 1 2 --backend "$SERVE_BACKEND" --width "$SIZE" --height "$SIZE" --json "$OUT/multigpu_serve.json"
fi
