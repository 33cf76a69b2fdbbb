#!/usr/bin/env bash
# "Your own game" on the GPU machine, in two phases that fit the device tool's 10-minute calls (run through
# benchmarks/gpu_call.sh; the recording stays in runs/own, which git ignores, so a second call on the
# still-warm machine finds it):
#   record  the demo town in `ink` (a look no default data contains) through a real daemon, SEQ sequences of
#           FRAMES frames at 30 frames/s of game time, SIZE x SIZE; then fine-tune the shipped base on it
#           (mixed with world clips of the seven built-in looks) for BUDGET seconds
#   score   held-out recorded sequences: the shipped base vs the fine-tune (eval --data); the seven built-in
#           looks, both side by side (looks_table.py); frame latency with recording off vs on at 512x512
#           with the fine-tuned model serving (bench record)
#     bash benchmarks/gpu_call.sh "bash benchmarks/gpu_own_game.sh record"
#     bash benchmarks/gpu_call.sh "bash benchmarks/gpu_own_game.sh score"
#     bash benchmarks/gpu_call.sh "bash benchmarks/gpu_own_game.sh all"     # both in one call (short budgets)
set -uo pipefail
PHASE=${1:?record, score or all}
SEQ=${SEQ:-18} FRAMES=${FRAMES:-300} SIZE=${SIZE:-256} BUDGET=${BUDGET:-270} SHARE=${SHARE:-0.35}
REC=runs/own/ink R=$OUT/run/own NR="python3 -m neural_renderer.cli"
mkdir -p "$R"
if [ "$PHASE" = record ] || [ "$PHASE" = all ]; then
    rm -rf runs/own
    t0=$(date +%s)
    # training seeds of the world (700..): the built-in looks' evaluation seeds stay unseen in any look
    timeout "${RECORD_CAP:-220}" $NR demo --record ink --style ink --sequences "$SEQ" --frames "$FRAMES" \
        --resolution "${SIZE}x${SIZE}" --seed 700 --recordings-dir runs/own --backend passthrough --fps 30
    echo "recorded in $(( $(date +%s) - t0 )) s: $(du -sh $REC | cut -f1)"
    cp $REC/index.json "$R/recording_index.json"
    $NR train --data $REC --from generator:base --look ink --out runs/own/ft --time-budget "$BUDGET" \
        --steps 100000 --batch 12 --clip-len 4 --crop 0 --render-workers "${RW:-12}" --render-resolution "$SIZE" \
        --looks-per-clip 2 --pool 192 --refresh-every 1 --refresh-clips 4 --fill-max-s 30 --lr 2e-4 --warmup 20 \
        --look-share "$SHARE" --log-every 50 --ckpt-every 0 --no-progress
    mkdir -p "$R/ft" && cp runs/own/ft/*.json runs/own/ft/*.safetensors runs/own/ft/*.png "$R/ft/"
fi
if [ "$PHASE" = score ] || [ "$PHASE" = all ]; then
    FT=runs/own/ft/base.json
    $NR eval --renderer generator:base --data $REC --device "${DEV:-cuda}" --json "$R/eval_base.json" --no-progress
    $NR eval --renderer generator:$FT --data $REC --device "${DEV:-cuda}" --json "$R/eval_ft.json" --no-progress
    python3 benchmarks/looks_table.py --arms generator:base generator:$FT --names base base+ink \
        --size "$SIZE" --device "${DEV:-cuda}" --frames 16 --seeds 2 --out "$R/looks"
    $NR bench record --sizes 512 --backend generator:$FT --device "${DEV:-cuda}" --block 100 --repeats 3 --json "$R/record.json"
fi
