from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import tfmtl  # noqa: F401  (the Keras guard runs before any test imports TensorFlow)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def movielens_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The MovieLens cache: $TFMTL_DATA_DIR when set (CI reuses it), else a fresh folder for this run."""
    configured = os.environ.get("TFMTL_DATA_DIR")
    return Path(configured) if configured else tmp_path_factory.mktemp("tfmtl-data")


def run_python(code: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Runs code in a fresh interpreter (import-order and determinism tests need a clean process)."""
    full_env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout,
                          env=full_env, cwd=REPO)
