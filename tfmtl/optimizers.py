"""The training optimizer, with the text encoder's own learning rate.

A pretrained transformer is fine-tuned at a rate well below what freshly initialised towers train at (1e-5 to 1e-4
against 1e-3); one rate for both either wrecks the pretrained layers or starves the towers. Adam's and Adagrad's
updates are linear in the learning rate, so scaling the update of the encoder's variables by
``encoder_learning_rate / learning_rate`` trains them at their own rate with one optimizer: one set of slots, one
checkpoint, the same weight averaging and distribution as before.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import tensorflow as tf

from tfmtl.config import Config
from tfmtl.log import log


class _ScaledUpdates:
    """Optimizer mixin: the updates of the variables given to :meth:`scale_updates` are multiplied by a factor."""

    def scale_updates(self, variables: Iterable[tf.Variable], factor: float) -> None:
        self._scaled = {self._var_key(v) for v in variables}  # type: ignore[attr-defined]
        self._factor = factor

    def update_step(self, gradient: Any, variable: tf.Variable) -> Any:
        if self._var_key(variable) not in getattr(self, "_scaled", ()):  # type: ignore[attr-defined]
            return super().update_step(gradient, variable)  # type: ignore[misc]
        before = tf.identity(variable)
        super().update_step(gradient, variable)  # type: ignore[misc]
        # Ops on one variable run in program order inside a tf.function, so this reads the updated value.
        return variable.assign(before + tf.cast(self._factor, variable.dtype) * (variable - before))


class ScaledAdam(_ScaledUpdates, tf.keras.optimizers.Adam):
    """Adam whose updates of some variables are scaled (:meth:`scale_updates`)."""


class ScaledAdagrad(_ScaledUpdates, tf.keras.optimizers.Adagrad):
    """Adagrad whose updates of some variables are scaled (:meth:`scale_updates`)."""


def make_optimizer(config: Config, encoder_variables: list[tf.Variable] | None = None) -> tf.keras.optimizers.Optimizer:
    """``train.optimizer`` at ``train.learning_rate``, with ``train.weight_averaging``; the ``encoder_variables``
    (the text encoder's trainable ones) at ``train.encoder_learning_rate`` where it is set."""
    train = config.train
    momentum = train.weight_averaging
    averaging = {"use_ema": True, "ema_momentum": momentum} if momentum else {}
    kind = ScaledAdagrad if train.optimizer == "adagrad" else ScaledAdam
    optimizer = kind(train.learning_rate, **averaging)
    if train.encoder_learning_rate is None:
        return optimizer
    if not encoder_variables:
        log(f"train.encoder_learning_rate {train.encoder_learning_rate:g} has no effect: no pretrained encoder layer "
            "trains (model.encoder.trainable_layers is 0, or no text feature is read)")
        return optimizer
    optimizer.scale_updates(encoder_variables, train.encoder_learning_rate / train.learning_rate)
    return optimizer
