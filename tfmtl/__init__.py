"""tfmtl: multi-task recommendation on TensorFlow Recommenders, served by TF Serving."""

from __future__ import annotations

from typing import Any

from tfmtl import _compat  # noqa: F401  (must run before anything imports tf.keras)
from tfmtl._version import __version__

__all__ = ["__version__", "export", "train"]


def __getattr__(name: str) -> Any:
    # Lazy: `import tfmtl` stays light (the data CLI needs no TensorFlow model code).
    if name == "train":
        from tfmtl.training import train

        return train
    if name == "export":
        from tfmtl.exporting import export

        return export
    raise AttributeError(f"module 'tfmtl' has no attribute {name!r}")
