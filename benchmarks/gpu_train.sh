#!/usr/bin/env bash
# Measures: what tiny and base reach in a fixed GPU time budget (loss curve, steps/s) and their
# streaming frames/s per denoising-step count in float32 and bfloat16 afterwards.
# Trains on on-the-fly world clips through EGL, or synthetic clips when the world renderer cannot
# get an NVIDIA EGL context. Everything worth keeping lands under $OUT: checkpoints (each file
# < 16 MiB) and report.tar.gz (loss plots, logs, JSON).
# Usage (repo root, GPU machine, $OUT set): bash benchmarks/gpu_train.sh [TINY_S] [BASE_S] [init]
#   init: start from the shipped checkpoints instead of random weights.
set -uo pipefail
TINY_S=${1:-150}; BASE_S=${2:-240}; INIT=${3:-}
export PYTHONUNBUFFERED=1
eval "$(python3 -c 'from bridge.gpu_env import shell_exports; print(shell_exports())')"
R=$OUT/report; mkdir -p $R $OUT/ckpt
nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv | tee $R/gpu.txt
DATA=world
python3 -c "import demos.sequence, moderngl; c = moderngl.create_standalone_context(backend='egl'); print(c.info['GL_RENDERER'])" 2>&1 | tee $R/gl.txt || DATA=synthetic
grep -qi nvidia $R/gl.txt || DATA=synthetic
echo "data source: $DATA" | tee $R/data.txt
# smoke: a few steps of the micro model on the GPU, and a bf16 stream; stop here if anything breaks
python3 -m neural_renderer.cli train --model micro --out runs/micro --data synthetic --steps 6 --batch 2 --clip-len 4 --pool 4 --no-progress 2>&1 | tail -4 || exit 1
[ -f runs/micro/micro.json ] || { echo "smoke training failed"; exit 1; }
python3 -m neural_renderer.cli bench generator --model runs/micro/micro.json --device cuda --dtype bfloat16 --steps 2 --frames 5 || exit 1
init_tiny=""; init_base=""
if [ -n "$INIT" ]; then init_tiny="--from neural_renderer/checkpoints/tiny.json"; init_base="--from neural_renderer/checkpoints/base.json"; fi
python3 -m neural_renderer.cli train --model tiny --out runs/tiny --data $DATA --steps 20000 --batch 16 --clip-len 6 \
  --pool 96 --refresh-every 4 --time-budget $TINY_S --ckpt-every 1000000 --log-every 50 --lr 5e-4 $init_tiny 2>&1 \
  | tr '\r' '\n' | grep -v "it/s\]$" | tee $R/train_tiny.log | tail -3
python3 -m neural_renderer.cli train --model base --out runs/base --data $DATA --steps 20000 --batch 4 --clip-len 5 \
  --pool 48 --refresh-every 8 --time-budget $BASE_S --ckpt-every 1000000 --log-every 50 --lr 4e-4 $init_base 2>&1 \
  | tr '\r' '\n' | grep -v "it/s\]$" | tee $R/train_base.log | tail -3
cp runs/tiny/tiny.json runs/tiny/tiny*.safetensors runs/base/base.json runs/base/base*.safetensors $OUT/ckpt/
cp runs/tiny/loss.png $R/loss_tiny.png; cp runs/base/loss.png $R/loss_base.png
cp runs/tiny/train_result.json $R/train_tiny.json; cp runs/base/train_result.json $R/train_base.json
for m in tiny base; do for dt in float32 bfloat16; do
  python3 -m neural_renderer.cli bench generator --model runs/$m/$m.json --device ${DEV:-cuda} --dtype $dt --frames ${FRAMES:-100} --steps 1 2 4 --json $R/fps_${m}_${dt}.json
done; done
tar czf $OUT/report.tar.gz -C $OUT report && rm -rf $R
ls -la $OUT $OUT/ckpt
