"""train.encoder_learning_rate: the text encoder's pretrained layers train at their own rate, with one optimizer."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from tests.toy import toy_config, untrained_toy_model
from tfmtl.config import Config, TrainConfig
from tfmtl.optimizers import ScaledAdagrad, ScaledAdam, make_optimizer

GRADIENTS = [np.array([0.5, -2.0, 1e-3], np.float32), np.array([-0.1, 0.3, 4.0], np.float32),
             np.array([1.0, 1.0, -1.0], np.float32)]


@pytest.mark.parametrize("scaled, plain", [(ScaledAdam, tf.keras.optimizers.Adam),
                                           (ScaledAdagrad, tf.keras.optimizers.Adagrad)])
def test_scaled_variables_follow_the_plain_optimizer_at_their_own_rate(scaled, plain) -> None:  # type: ignore[no-untyped-def]
    start = np.array([1.0, 2.0, 3.0], np.float32)
    tuned, tower = tf.Variable(start), tf.Variable(start)
    optimizer = scaled(1e-2)
    optimizer.scale_updates([tuned], 0.1)
    slow, fast = tf.Variable(start), tf.Variable(start)  # the references: plain optimizers at 1e-3 and 1e-2
    slow_optimizer, fast_optimizer = plain(1e-3), plain(1e-2)

    @tf.function  # the graph path, where the scaled update must read the variable after the optimizer's update
    def step(gradient: tf.Tensor) -> None:
        optimizer.apply_gradients([(gradient, tuned), (gradient, tower)])

    for gradient in GRADIENTS:
        step(tf.constant(gradient))
        slow_optimizer.apply_gradients([(tf.constant(gradient), slow)])
        fast_optimizer.apply_gradients([(tf.constant(gradient), fast)])
    np.testing.assert_allclose(tuned.numpy(), slow.numpy(), rtol=0, atol=1e-6)
    np.testing.assert_allclose(tower.numpy(), fast.numpy(), rtol=0, atol=1e-6)
    assert np.abs(tuned.numpy() - tower.numpy()).max() > 1e-3  # the rates really differ


def test_adams_first_step_moves_each_weight_by_its_own_rate_worked_out_by_hand() -> None:
    # Adam's first step is lr * g / (|g| + eps / sqrt(1 - beta_2)), tf-keras's epsilon 1e-7 and beta_2 0.999.
    gradient = np.array([3.0, -0.5])
    def first_step(rate: float) -> np.ndarray:
        return -rate * gradient / (np.abs(gradient) + 1e-7 / np.sqrt(1 - 0.999))

    tuned, tower = tf.Variable([0.0, 0.0]), tf.Variable([0.0, 0.0])
    optimizer = ScaledAdam(1e-2)
    optimizer.scale_updates([tuned], 1e-4 / 1e-2)
    optimizer.apply_gradients([(tf.constant(gradient, tf.float32), tuned), (tf.constant(gradient, tf.float32), tower)])
    # Within float32's rounding of the betas (1 - 0.999 is 0.00099998713 there) and of the 1e-2 step.
    np.testing.assert_allclose(tuned.numpy(), first_step(1e-4), rtol=5e-5)
    np.testing.assert_allclose(tower.numpy(), first_step(1e-2), rtol=5e-5)


def _tuned_toy(encoder_learning_rate: float | None):  # type: ignore[no-untyped-def]
    config = toy_config()
    encoder = dataclasses.replace(config.model.encoder, trainable_layers=1, dropout=0.0)
    config = Config(model=dataclasses.replace(config.model, encoder=encoder),
                    train=dataclasses.replace(config.train, encoder_learning_rate=encoder_learning_rate))
    tf.keras.utils.set_random_seed(0)
    data, split, space, model = untrained_toy_model(config=config)
    encoder_layer = model.item_tower.features["title"].encoder
    model.compile(optimizer=make_optimizer(config, encoder_layer.pretrained_trainable_weights))
    arrays = space.interaction_arrays(data, split.train, split.train, is_training=True)
    batch = {key: tf.constant(value[:64]) for key, value in arrays.items()}
    return model, encoder_layer, batch


def test_one_training_step_moves_the_encoder_at_its_rate_and_the_towers_at_theirs() -> None:
    def first_step(rate: float | None) -> tuple[np.ndarray, np.ndarray]:
        model, encoder, batch = _tuned_toy(rate)
        tuned = encoder.pretrained_trainable_weights
        encoder_before = np.concatenate([v.numpy().ravel() for v in tuned])
        towers = [v for v in model.trainable_variables if all(v is not t for t in tuned)]
        towers_before = np.concatenate([v.numpy().ravel() for v in towers])
        model.train_step(batch)
        return (np.concatenate([v.numpy().ravel() for v in tuned]) - encoder_before,
                np.concatenate([v.numpy().ravel() for v in towers]) - towers_before)

    encoder_plain, towers_plain = first_step(None)  # the toy's learning rate, 0.01
    encoder_slow, towers_slow = first_step(1e-3)
    moved = np.abs(encoder_plain) > 1e-4
    assert moved.mean() > 0.5  # the tuned layer trains
    np.testing.assert_allclose(encoder_slow[moved], encoder_plain[moved] / 10, rtol=1e-3)
    np.testing.assert_allclose(towers_slow, towers_plain, rtol=0, atol=1e-6)


def test_the_encoder_rate_must_be_positive_and_names_the_field() -> None:
    with pytest.raises(ValueError, match="'train.encoder_learning_rate'"):
        TrainConfig(encoder_learning_rate=0.0)
    config = Config.from_config({"train": {"encoder_learning_rate": 5e-5}})
    assert Config.from_config(config.get_config()).train.encoder_learning_rate == 5e-5


def test_a_rate_for_a_frozen_encoder_says_it_has_no_effect(capsys: pytest.CaptureFixture[str]) -> None:
    config = Config(train=TrainConfig(encoder_learning_rate=5e-5))
    make_optimizer(config, [])
    assert "train.encoder_learning_rate 5e-05 has no effect" in capsys.readouterr().err
