#!/usr/bin/env bash
# The cold-start benchmark's fine-tuned encoder (minilm_tuned: MiniLM-L6's top layer trained on the recommendation
# losses) beside its frozen twin and the model without text, on Book-Crossing, timed on a GPU machine. On 2 CPU cores
# one epoch takes about 10 minutes, so the 5 seeds and the selection runs (about 17 hours there) wait for a device.
# The search and the report's name are those of the authors report (cold_start_encoders_authors), which is copied
# to $OUT first, so the rows join it and its no_text gives their ratios. Data: Book-Crossing in the carried cache,
# made by `cold_start_books.py` (see gpu_timed.sh).
#   bash benchmarks/gpu_cold_start_tuned.sh [--seeds 42 1 2 3 4]
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-benchmarks/results}"
mkdir -p "$out"
[ -e "$out/cold_start_encoders_authors.json" ] || cp benchmarks/results/cold_start_encoders_authors.json "$out/"
exec bash benchmarks/gpu_timed.sh cold-start-tuned benchmarks/cold_start_encoders.py \
  --catalogs book-crossing --variants minilm_tuned --id-dropouts 0.5 0.9 --text-dims 32 --pretrain-epochs 1 \
  --name cold_start_encoders_authors "$@"
