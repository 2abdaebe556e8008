"""Writes the toy export the conformance tests expect, for running them against a real TF Serving.

    .venv/bin/python -m tests.serving.make_toy_export /tmp/models        # -> /tmp/models/toy/1
    docker run --rm -p 8500:8500 -v /tmp/models/toy:/models/toy -e MODEL_NAME=toy tensorflow/serving:2.20.0
    TFMTL_TF_SERVING_ADDRESS=localhost:8500 .venv/bin/python -m pytest -q tests/serving/test_conformance.py
"""

from __future__ import annotations

import dataclasses
import sys
import tempfile
from pathlib import Path

import tfmtl  # noqa: F401  (the Keras guard first)
from tests.toy import toy_config, write_toy_schema
from tfmtl.exporting import export
from tfmtl.training import train


def main(base: str) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        schema = write_toy_schema(Path(scratch))
        config = toy_config()
        config = dataclasses.replace(config, train=dataclasses.replace(config.train, dataset=str(schema), epochs=2))
        run = train(config, output=Path(scratch) / "run", progress=False)
        print(export(run, name="toy", base=base).path)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "saved_models")
