"""Training end to end on the toy dataset: run folder, per-task logs, plots, weight averaging, early stopping,
reload parity, fine-tuning precision. Resume and the CLI round trip: tests/test_resume.py."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from tests.toy import toy_config, write_toy_schema
from tfmtl.config import Config, TrainConfig
from tfmtl.data.pipeline import make_dataset
from tfmtl.run import RunFolder, load_run
from tfmtl.training import _AveragedWeights, train


@pytest.fixture(scope="module")
def schema(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_toy_schema(tmp_path_factory.mktemp("toy"))


def _config(schema: Path, **train: object) -> Config:
    config = toy_config()
    return dataclasses.replace(config, train=dataclasses.replace(config.train, dataset=str(schema), **train))


@pytest.fixture(scope="module")
def trained(toy_run):  # type: ignore[no-untyped-def]
    """The session's toy run (tests/conftest.py): this module's config, trained once for every module."""
    return toy_run


def test_run_folder_holds_config_history_metrics_plots_and_checkpoints(trained) -> None:  # type: ignore[no-untyped-def]
    run = RunFolder(trained.path)
    assert Config.from_config(json.loads(run.config.read_text())) == trained.config
    history = run.read_history()
    assert [row["epoch"] for row in history] == [1, 2]
    for task in ("retrieval", "rating", "like", "genres"):
        assert np.isfinite(history[-1][f"loss/{task}"])
        assert history[-1][f"weight/{task}"] == pytest.approx(trained.config.model.tasks[task].weight)
    assert "validation/retrieval/recall_at_100" in history[-1]
    for plot in ("losses.png", "weights.png", "validation.png", "test_metrics.png"):
        assert (run.plots / plot).read_bytes()[:4] == b"\x89PNG"
    metrics = json.loads(run.metrics.read_text())
    for name in ("retrieval/top_100_accuracy", "retrieval/recall_at_10", "retrieval/ndcg_at_10", "retrieval/mrr",
                 "rating/rmse", "rating/mae", "like/auc", "like/f1", "genres/micro_f1"):
        assert 0.0 <= metrics[name] <= 5.0, name
    assert any(run.tensorboard.iterdir())
    assert tf.train.latest_checkpoint(str(run.checkpoints)) is not None


def test_reloaded_run_gives_the_same_outputs(trained) -> None:  # type: ignore[no-untyped-def]
    _, model, split = load_run(trained.path)
    space = trained.model.space
    arrays = space.interaction_arrays(trained.data, split.train, split.test, is_training=False)
    batch = next(iter(make_dataset(arrays, batch_size=64)))
    np.testing.assert_allclose(model.embed_user(batch).numpy(), trained.model.embed_user(batch).numpy(), atol=1e-6)
    np.testing.assert_allclose(model.embed_item(batch).numpy(), trained.model.embed_item(batch).numpy(), atol=1e-6)
    for key, value in trained.model.rank(batch).items():
        np.testing.assert_allclose(model.rank(batch)[key].numpy(), value.numpy(), atol=1e-5)


def test_weight_averaging_validates_and_keeps_the_averages_but_resumes_from_the_raw_weights(
        schema: Path, tmp_path: Path) -> None:
    def weights(model: tf.keras.Model) -> list[np.ndarray]:
        return [v.numpy() for v in model.trainable_variables]

    averaged = train(_config(schema, epochs=1, weight_averaging=0.5), output=tmp_path / "averaged", progress=False,
                     evaluate_test=False)
    _, best, _ = load_run(averaged.path)
    _, raw, _ = load_run(averaged.path, weights="latest")
    np.testing.assert_allclose(np.concatenate([w.ravel() for w in weights(best)]),
                               np.concatenate([w.ravel() for w in weights(averaged.model)]), atol=1e-6)
    assert any(not np.allclose(b, r) for b, r in zip(weights(best), weights(raw), strict=True))


@pytest.mark.parametrize("momentum, steps, swapped", [(0.99, 10, False), (0.99, 300, True), (0.5, 5, True)])
def test_the_averages_are_used_once_the_initial_weights_hold_at_most_5_percent_of_them(
        momentum: float, steps: int, swapped: bool) -> None:
    # 0.99^10 = 0.90 and 0.99^300 = 0.049, 0.5^5 = 0.031: a run too short for the average to forget the initial
    # weights keeps the raw ones.
    model = tf.keras.Sequential([tf.keras.layers.Dense(1, input_shape=(2,))])
    model.compile(tf.keras.optimizers.Adam(0.1, use_ema=True, ema_momentum=momentum))
    for _ in range(steps):  # by hand: fit() would replace the weights with the averages at its end
        with tf.GradientTape() as tape:
            loss = tf.square(model(tf.ones((1, 2)))[0, 0] - 3.0)
        model.optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables),
                                            model.trainable_variables, strict=True))
    raw = [v.numpy() for v in model.trainable_variables]
    with _AveragedWeights(model):
        inside = [v.numpy() for v in model.trainable_variables]
    assert (not all(np.allclose(a, b) for a, b in zip(inside, raw, strict=True))) == swapped
    np.testing.assert_array_equal(model.trainable_variables[0].numpy(), raw[0])  # the raw weights come back


def test_weight_averaging_must_be_a_momentum() -> None:
    with pytest.raises(ValueError, match="train.weight_averaging"):
        TrainConfig(weight_averaging=1.0)


def test_early_stopping_follows_the_monitor(schema: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Validation RMSE per epoch: best at epoch 2, then two epochs without improvement -> stop after epoch 4,
    # and the best weights (epoch 2) are the ones kept.
    sequence = iter([1.0, 0.9, 0.95, 0.91, 0.5, 0.5])
    monkeypatch.setattr("tfmtl.training.evaluate_model", lambda *args, **kwargs: {"rating/rmse": next(sequence)})
    config = _config(schema, epochs=6, patience=2, monitor="rating/rmse")
    result = train(config, output=tmp_path / "run", progress=False, evaluate_test=False)
    assert [row["epoch"] for row in result.history] == [1, 2, 3, 4]
    _, best, _ = load_run(result.path)
    _, latest, _ = load_run(result.path, weights="latest")
    kernel = lambda model: model.user_tower.output_layer.kernel.numpy()  # noqa: E731
    np.testing.assert_array_equal(kernel(best), kernel(result.model))
    assert not np.array_equal(kernel(best), kernel(latest))


def test_an_unknown_monitor_names_the_field_before_training(schema: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="'train.monitor'.*recall_at_7"):
        train(_config(schema, epochs=1, monitor="retrieval/recall_at_7"), output=tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_train_is_exposed_at_the_top_level() -> None:
    import tfmtl
    import tfmtl.training

    assert tfmtl.train is tfmtl.training.train


@pytest.mark.slow  # GPU features (on CPU both are slower, README); the XLA compile alone takes most of a minute
def test_fine_tuning_with_xla_and_mixed_precision_trains_and_reloads_in_float32(schema: Path,
                                                                                 tmp_path: Path) -> None:
    config = _config(schema, epochs=1, jit_compile=True, mixed_precision=True)
    config = dataclasses.replace(config, model=dataclasses.replace(
        config.model, encoder=dataclasses.replace(config.model.encoder, trainable_layers=1)))
    trained = train(config, output=tmp_path / "run", progress=False, evaluate_test=False)
    assert all(np.isfinite(trained.history[-1][f"loss/{task}"]) for task in config.model.tasks)
    _, model, split = load_run(trained.path)
    assert model.item_tower.features["title"].encoder._keras3.backbone.compute_dtype == "float32"
    arrays = trained.model.space.interaction_arrays(trained.data, split.train, split.test, is_training=False)
    batch = next(iter(make_dataset(arrays, batch_size=64)))
    bf16, fp32 = trained.model.embed_item(batch).numpy(), model.embed_item(batch).numpy()
    assert (bf16 * fp32).sum(1).min() > 0.98  # the same weights, computed in another precision
