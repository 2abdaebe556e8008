#!/usr/bin/env bash
# Runs one benchmark on a GPU machine, timed: the machine and TensorFlow's devices first, the seconds last, in
# $OUT/<label>-gpu.txt; the benchmark's reports go to $OUT (else benchmarks/results).
#
# On a lent device (the workplace's `run` tool) nothing outside the machine is reachable: carry the data cache in the
# working tree (TFMTL_DATA_DIR=.data, filled beforehand, e.g. `TFMTL_DATA_DIR=.data tfmtl data info ml-1m`) and a
# Python environment the device can use.
#   bash benchmarks/gpu_timed.sh LABEL benchmarks/SCRIPT.py [its arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
label="$1" script="$2"
shift 2
out="${OUT:-benchmarks/results}"
python="${PYTHON:-.venv/bin/python}"
mkdir -p "$out"
{
  echo "date: $(date -u +%FT%TZ)"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no GPU visible"
  "$python" -c "import tensorflow as tf; print('tensorflow', tf.__version__, tf.config.list_physical_devices('GPU'))"
} | tee "$out/$label-gpu.txt"
start=$(date +%s)
"$python" "$script" --output "$out" "$@"
echo "seconds: $(( $(date +%s) - start ))" | tee -a "$out/$label-gpu.txt"
