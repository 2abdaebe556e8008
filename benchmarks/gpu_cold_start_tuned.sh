#!/usr/bin/env bash
# The cold-start benchmark's fine-tuned encoder on a GPU machine, timed: minilm_tuned (MiniLM-L6's top layer trained
# on the recommendation losses) beside its frozen twin (minilm) and the model without text, on Book-Crossing with
# every user, five seeds, the search of the authors report (cold_start_encoders_authors); its own report,
# cold_start_encoders_tuned. On 2 CPU cores an epoch of minilm_tuned takes 10.5 minutes, so this run (about 18
# hours there) waits for a device. Data: Book-Crossing in the carried cache, made by `cold_start_books.py` (see
# gpu_timed.sh). The encoder's learning rate, 1e-4, is the one the CPU pilots' validation books chose over the
# towers' 1e-3 (README, "Fine-tuning the language model on the ratings"). Extra arguments go to the benchmark.
#   bash benchmarks/gpu_cold_start_tuned.sh [--seeds 42 1 2 3 4]
set -euo pipefail
exec bash "$(dirname "$0")/gpu_timed.sh" cold-start-tuned benchmarks/cold_start_encoders.py \
  --catalogs book-crossing --variants no_text minilm minilm_tuned --id-dropouts 0.5 0.9 --text-dims 32 \
  --pretrain-epochs 1 --encoder-rate 1e-4 --name cold_start_encoders_tuned "$@"
