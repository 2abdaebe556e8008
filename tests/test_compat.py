"""The Keras guard, each case in a fresh interpreter: import order is process state."""

from __future__ import annotations

import pytest

from tests.conftest import run_python

USE_TFRS = (
    "import tfmtl, tensorflow as tf, tensorflow_recommenders as tfrs\n"
    "print(tf.keras.__name__)\n"
    "print(isinstance(tfrs.tasks.Ranking(), tf.keras.layers.Layer))\n"
)


@pytest.mark.parametrize("env", [{}, {"TF_USE_LEGACY_KERAS": "1"}, {"TF_USE_LEGACY_KERAS": "0"}],
                         ids=["unset", "set-1", "set-0"])
def test_import_tfmtl_first_gives_keras_2_and_tfrs_works(env: dict[str, str]) -> None:
    result = run_python(USE_TFRS, env)
    assert result.returncode == 0, result.stderr[-2000:]
    module, is_layer = result.stdout.split()[-2:]
    assert module.startswith("tf_keras")
    assert is_layer == "True"


def test_tensorflow_imported_but_keras_untouched_still_works() -> None:
    result = run_python("import tensorflow as tf\n" + USE_TFRS)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split()[-2].startswith("tf_keras")


def test_keras_3_already_resolved_raises_import_error_with_the_fix() -> None:
    result = run_python(
        "import tensorflow as tf\n"
        "tf.keras.layers.Dense  # resolves tf.keras to Keras 3\n"
        "try:\n"
        "    import tfmtl\n"
        "except ImportError as error:\n"
        "    print('IMPORT-ERROR', error)\n"
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "IMPORT-ERROR" in result.stdout
    assert "TF_USE_LEGACY_KERAS=1" in result.stdout
    assert "Keras 3" in result.stdout
