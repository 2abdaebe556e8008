"""tfmtl: multi-task recommendation on TensorFlow Recommenders, served by TF Serving."""

from __future__ import annotations

from tfmtl import _compat  # noqa: F401  (must run before anything imports tf.keras)

__version__ = "0.1.0"
__all__ = ["__version__"]
