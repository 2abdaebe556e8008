#!/usr/bin/env bash
# The sequential benchmark (benchmarks/sequential.py) at full scale on a GPU machine, timed: every row, 3 seeds.
#
# On a lent device (the workplace's `run` tool) nothing outside the machine is reachable: carry the MovieLens
# cache in the working tree (TFMTL_DATA_DIR=.data, filled here by `TFMTL_DATA_DIR=.data tfmtl data info ml-1m`) and a Python environment
# the device can use; results go to $OUT (else benchmarks/results).
#   bash benchmarks/gpu_sequential.sh [--seeds 0 1 2] [--rows sasrec tfmtl tfmtl-no-text]
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-benchmarks/results}"
python="${PYTHON:-.venv/bin/python}"
mkdir -p "$out"
{
  echo "date: $(date -u +%FT%TZ)"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no GPU visible"
  "$python" -c "import tensorflow as tf; print('tensorflow', tf.__version__, tf.config.list_physical_devices('GPU'))"
} | tee "$out/sequential-gpu.txt"
start=$(date +%s)
"$python" benchmarks/sequential.py --output "$out" "$@"
echo "seconds: $(( $(date +%s) - start ))" | tee -a "$out/sequential-gpu.txt"
