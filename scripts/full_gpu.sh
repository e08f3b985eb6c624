#!/usr/bin/env bash
# The full preset of the empirical comparison on one GPU, both tasks, 3 seeds.
#
#   scripts/full_gpu.sh [OUT]        # default OUT: results/gpu/empirical-full
#
# Needs a CUDA build of torch in .venv (see the README). Every result file names the device;
# OUT/device.txt keeps nvidia-smi's description of the machine. The comparison skips runs that
# already finished, so the script can be started again after an interruption.
set -euo pipefail
OUT=${1:-results/gpu/empirical-full}
BIN=${BIN:-.venv/bin}
if ! "$BIN/python" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "full_gpu.sh: no CUDA device visible to torch; install a CUDA build (see README)" >&2
    exit 2
fi
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/device.txt" || true
for task in resnet bert; do
    "$BIN/gowide" empirical compare --task "$task" --preset full --seeds 3 --device cuda \
        --out "$OUT/$task"
done
