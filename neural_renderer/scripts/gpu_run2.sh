#!/usr/bin/env bash
# Device call 2: continue training tiny and base from the committed checkpoints, train the
# history-augmentation ablation pair (tiny, from scratch, equal time), then measure: frames/s per step
# count (CUDA graph), the `neurender serve` round trip at 512x512, a long base rollout (drift), and the
# world renderer's throughput. Every stage has its own time limit so the whole call ends in time.
set -uo pipefail
export PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1
R=$OUT/report; mkdir -p $R $OUT/ckpt
T0=$(date +%s); stamp() { echo "[$(( $(date +%s) - T0 )) s] $*"; }
tr_() { tr '\r' '\n' | grep -v "it/s\]$"; }
# smoke: CUDA graph stream == eager stream
timeout 60 python3 - <<'PY' 2>&1 | tee $R/graph_check.txt
import torch
from neural_renderer.checkpoint import load_model
from neural_renderer.generator import Generator
m = load_model("tiny", device="cuda")
c = torch.randn(12, 1, 13, 128, 128, device="cuda"); c[:, :, 10] = 3
p = torch.randn(384)
a, b = Generator(m, p, seed=3, cuda_graph=False), Generator(m, p, seed=3, cuda_graph=True)
d = max(float((a.step(ci) - b.step(ci)).abs().max()) for ci in c)
print("graph vs eager max abs diff over 12 frames:", d, "graph captured:", b.graph is not None)
PY
train() { # name model out seconds extra...
  local name=$1 model=$2 secs=$3; shift 3
  stamp "train $name"
  timeout $((secs + 60)) python3 -m neural_renderer.cli train --model $model --out runs/$name --data world --steps 100000 \
    --time-budget $secs --ckpt-every 1000000 --log-every 50 "$@" 2>&1 | tr_ | tee $R/train_$name.log | tail -2
  cp runs/$name/loss.png $R/loss_$name.png; cp runs/$name/train_result.json $R/train_$name.json
}
train tiny tiny 90 --batch 32 --clip-len 6 --pool 64 --refresh-every 4 --lr 4e-4 --init neural_renderer/checkpoints/tiny.json
cp runs/tiny/tiny.json runs/tiny/tiny.safetensors $OUT/ckpt/
train base base 120 --batch 6 --clip-len 5 --pool 32 --refresh-every 8 --lr 3e-4 --init neural_renderer/checkpoints/base.json
cp runs/base/base.json runs/base/base*.safetensors $OUT/ckpt/
train abl_aug tiny 40 --batch 32 --clip-len 6 --pool 48 --refresh-every 4 --lr 5e-4 --seed 1
train abl_noaug tiny 40 --batch 32 --clip-len 6 --pool 48 --refresh-every 4 --lr 5e-4 --seed 1 --no-history-aug
A=$R/abl; mkdir -p $A  # the ablation pair travels inside report.tar.gz (at most 8 files come back)
for v in aug noaug; do
  cp runs/abl_$v/tiny.json $A/tiny_$v.json; cp runs/abl_$v/tiny.safetensors $A/tiny_$v.safetensors
  sed -i "s/\"tiny.safetensors\"/\"tiny_$v.safetensors\"/" $A/tiny_$v.json
done
stamp "fps"
for m in tiny base; do for dt in fp32 bf16; do
  timeout 60 python3 -m neural_renderer.bench_generator --model runs/$m/$m.json --device cuda --dtype $dt --steps 1 2 4 --frames 100 --json $R/fps_${m}_${dt}.json
done; done
stamp "serve round trip"
cp runs/base/base.json runs/base/base*.safetensors neural_renderer/checkpoints/ 2>/dev/null
timeout 100 python3 -m neural_renderer.bench_serve --model base --device cuda --steps 1 2 --size 512 --frames 300 --json $R/serve_base.json 2>&1 | grep -v INFO | tail -3
stamp "rollout"
timeout 150 python3 -m neural_renderer.rollout --model runs/base/base.json --device cuda --frames 10000 --window 500 --time-budget 110 --json $R/rollout_base.json --plot $R/rollout_base.png 2>&1 | tr_ | tail -1
stamp "world render bench"
timeout 60 python3 -m demos.bench_render --json $R/world_render_gpu.json 2>&1 | tail -4
stamp "done"
tar czf $OUT/report.tar.gz -C $OUT report && rm -rf $R
ls -la $OUT $OUT/ckpt
