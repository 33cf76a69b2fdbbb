#!/usr/bin/env bash
# Every serving benchmark of the shipped base in one GPU call (through benchmarks/gpu_call.sh), each part cut
# at its own time limit so that one slow part cannot take the others' results with it:
#   profile   where a base training step's time goes (benchmarks/gpu_step_profile.py)
#   serve     daemon round trip per arm at 512x512 and 1280x720, host share, the img2img baseline (bench serve)
#   kernels   one hourglass step per arm vs the roofline floor, base and two larger configs (bench kernels)
#   sessions  paced 60 fps sessions on one daemon: per count, and 8 sessions for SESSIONS_LONG s (bench sessions)
#     bash benchmarks/gpu_call.sh "bash benchmarks/gpu_bench_all.sh"
set -uo pipefail  # PROFILE=0 / KERNELS=0 skip those parts
R=$OUT/run NR="python3 -m neural_renderer.cli"
mkdir -p "$R"
[ "${PROFILE:-1}" = 1 ] && timeout 90 python3 benchmarks/gpu_step_profile.py --run base --out "$R/profile" --steps 8 --burst-every 16
timeout 140 $NR bench serve --model base --device cuda --kernels auto fused frame-graph+fused --out "$R/serve.json"
[ "${KERNELS:-1}" = 1 ] && timeout 160 $NR bench kernels --json "$R/kernels.json" --no-compile --budget-s 130
timeout 150 $NR bench sessions --model base --device cuda --counts 1,4,8 --seconds 10 \
    --long "8:${SESSIONS_LONG:-45}" --out "$R/sessions.json"
