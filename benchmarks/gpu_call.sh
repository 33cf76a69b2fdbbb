#!/usr/bin/env bash
# Runs one command on the GPU machine with the project's carried dependencies: the GL loader packages
# (.gl, for EGL world rendering) and the wheels the image lacks (.whl: moderngl, glcontext, pyzmq).
# Then packs what the command wrote under $OUT/run into at most 8 files: every .safetensors (each under
# 16 MiB) plus one misc.tar with the rest (json, png, logs), because the device tool returns 8 files.
#   bash benchmarks/gpu_call.sh python3 benchmarks/gpu_train.py --out '$OUT/run' --budget 380
set -uo pipefail
for f in .gl/*.deb; do dpkg -x "$f" /; done; ldconfig
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 OUT
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
mkdir -p "$OUT/run"
# the command is cut at GPU_CALL_LIMIT seconds so that what it wrote is still packed within the call's limit
timeout "${GPU_CALL_LIMIT:-540}" bash -c "$*" 2>&1 | tee "$OUT/run/log.txt"
rc=${PIPESTATUS[0]}
cd "$OUT/run" && find . -name '*.pt' -delete
# each run's weights keep their run folder in the name (two runs may train the same size): RUN--FILE
for f in $(find . -name '*.safetensors'); do d=$(dirname "$f" | sed 's|^\./||; s|/|-|g'); mv "$f" "$OUT/${d}--$(basename "$f")"; done
tar cf "$OUT/misc.tar" . && cd "$OUT" && rm -rf run
ls -la "$OUT"
exit $rc
