"""The Keras 2 / Keras 3 guard.

TFRS only works when ``tf.keras`` is Keras 2 (tf-keras). TensorFlow picks the Keras behind
``tf.keras`` from ``TF_USE_LEGACY_KERAS`` the first time ``tf.keras`` is touched, so the variable
must be set before that happens. keras-hub always uses the ``keras`` package (Keras 3); only
``tfmtl.encoders.text`` imports it.
"""

from __future__ import annotations

import os
import sys

LEGACY_KERAS_VARIABLE = "TF_USE_LEGACY_KERAS"

_FIX = (
    "tfmtl needs tf.keras to be Keras 2 (tf-keras), but tf.keras already resolved to Keras 3 in this "
    "process. Fix: import tfmtl before anything that touches tf.keras, or set the environment variable "
    f"{LEGACY_KERAS_VARIABLE}=1 before Python starts (in a notebook: restart the runtime, then run "
    f"`import os; os.environ['{LEGACY_KERAS_VARIABLE}'] = '1'` in the first cell)."
)


def ensure_legacy_keras() -> None:
    """Makes ``tf.keras`` resolve to Keras 2, or raises ImportError saying how to fix it."""
    os.environ[LEGACY_KERAS_VARIABLE] = "1"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's C++ start-up chatter off stderr
    if "tensorflow" not in sys.modules:
        return
    import tensorflow as tf

    if not keras_module_name(tf).startswith("tf_keras"):
        raise ImportError(_FIX)


def keras_module_name(tf_module) -> str:  # type: ignore[no-untyped-def]
    """The module behind ``tf.keras`` (resolving it if it was not touched yet)."""
    return str(getattr(tf_module.keras, "__name__", ""))


ensure_legacy_keras()
