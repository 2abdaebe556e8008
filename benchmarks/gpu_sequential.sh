#!/usr/bin/env bash
# The sequential benchmark (benchmarks/sequential.py) at full scale on a GPU machine, timed: every row, 3 seeds.
# Data: ML-1M in the carried cache (see gpu_timed.sh).
#   bash benchmarks/gpu_sequential.sh [--seeds 0 1 2] [--rows sasrec tfmtl tfmtl-no-text]
set -euo pipefail
exec bash "$(dirname "$0")/gpu_timed.sh" sequential benchmarks/sequential.py "$@"
