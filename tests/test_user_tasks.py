"""Tasks declared in the config: the config language and its errors, missing labels masked, sample weights, the
log1p transform and the ESMM chain, each against losses worked out by hand from the heads' raw outputs; and the
metric names and served outputs that follow the tasks."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from tests.toy import toy_config, toy_data
from tfmtl.config import Config, ModelConfig, TaskConfig
from tfmtl.data.pipeline import make_dataset
from tfmtl.evaluate import evaluate_model, metric_names
from tfmtl.features import FeatureSpace
from tfmtl.run import build_encoder, build_model, data_fingerprint
from tfmtl.serving import signatures as wire
from tfmtl.targets import target_key
from tfmtl.training import make_split

BEHAVIOURS = {
    "retrieval": {"type": "retrieval", "positive": "clicked == 1"},
    "click": {"type": "binary", "label": "clicked"},
    "purchase": {"type": "binary", "label": "purchased", "given": "click", "weight": 2.0},
    "watch": {"type": "regression", "label": "watch_seconds", "transform": "log1p", "sample_weight": "importance"},
    "liked": {"type": "binary", "label": "rating >= 4"},
}


@pytest.fixture(scope="module")
def data():  # type: ignore[no-untyped-def]
    """The toy ratings plus behaviours: clicks, purchases (recorded after a click only: NaN otherwise), watch time
    (missing on a fifth of the rows) and a per-row importance."""
    data = toy_data()
    rng = np.random.default_rng(0)
    frame = data.interactions
    rows = len(frame)
    clicked = (rng.random(rows) < 0.6).astype(float)
    # a purchase is recorded after a click only, and even then not always (NaN: the outcome is unknown)
    purchased = np.where((clicked == 1) & (rng.random(rows) < 0.85), (rng.random(rows) < 0.3).astype(float), np.nan)
    watch = np.where(rng.random(rows) < 0.2, np.nan, rng.exponential(300.0, rows))
    frame = frame.assign(clicked=clicked, purchased=purchased, watch_seconds=watch,
                         importance=rng.uniform(0.5, 2.0, rows))
    return dataclasses.replace(data, interactions=frame,
                               labels=("rating", "clicked", "purchased", "watch_seconds", "importance"))


def _config(tasks: dict) -> Config:  # type: ignore[type-arg]
    return toy_config(tasks=tasks)


def _model(data, config: Config):  # type: ignore[no-untyped-def]
    split = make_split(data, config)
    space = FeatureSpace.build(config.model, data, split.train)
    model = build_model(config.model, space, build_encoder(config.model, space, seed=0))
    arrays = space.interaction_arrays(data, split.train, split.train, is_training=True)
    batch = next(iter(make_dataset(arrays, batch_size=64)))
    return model, batch, split


def _raw_outputs(model, batch):  # type: ignore[no-untyped-def]
    users, items = model.user_tower(batch), model.item_tower(batch)
    raw = model.ranking_heads(users, items, batch["user_id"], batch["item_id"])
    return {k: v.numpy().astype(np.float64) for k, v in raw.items()}


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _bce(p: np.ndarray, y: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-7, 1 - 1e-7)  # Keras's epsilon
    return -(y * np.log(p) + (1 - y) * np.log(1 - p))


# === The config language ===

def test_tasks_round_trip_through_the_config_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    config = _config(BEHAVIOURS)
    config.to_file(tmp_path / "config.json")
    again = Config.from_file(tmp_path / "config.json")
    assert again.model.tasks == config.model.tasks
    assert again.model.tasks["purchase"] == TaskConfig(type="binary", label="purchased", given="click", weight=2.0)


def test_the_preset_shorthand_is_the_preset_written_out() -> None:
    assert ModelConfig(tasks={"rating": 1.0, "like": 0.5}).tasks == ModelConfig(tasks={
        "rating": {"type": "regression"}, "like": {"type": "binary", "weight": 0.5}}).tasks


@pytest.mark.parametrize("tasks, field", [
    ({"click": {"type": "binary", "label": "clicked", "given": "buy"},
      "buy": {"type": "binary", "label": "purchased", "given": "click"}}, "model.tasks.click.given"),
    ({"click": {"type": "ranking"}}, "model.tasks.click.type"),
    ({"click": {"type": "binary", "label": "clicked", "transform": "log1p"}}, "model.tasks.click.transform"),
    ({"click": {"type": "binary", "labels": "clicked"}}, "model.tasks.click"),
    ({"click": {"type": "binary", "label": "clicked", "weight": -1}}, "model.tasks.click.weight"),
    ({"click": {"type": "binary", "label": "clicked", "given": "watch"},
      "watch": {"type": "regression", "label": "watch_seconds"}}, "model.tasks.click.given"),
    ({"clicks": 1.0}, "model.tasks.clicks"),
    ({"click": {"type": "binary", "label": "clicked", "dropout": 0.5}}, "model.tasks.click.dropout"),
    ({"genres": {"type": "content", "dropout": 1.0}}, "model.tasks.genres.dropout"),
])
def test_a_bad_task_config_names_its_field(tasks: dict, field: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(ValueError, match=f"'{field}'"):
        ModelConfig(tasks=tasks)


@pytest.mark.parametrize("tasks, message", [
    ({"click": {"type": "binary", "label": "clickd"}}, "'model.tasks.click.label' names unknown label 'clickd'"),
    ({"watch": {"type": "regression", "label": "watch_seconds >= 60"}}, "'model.tasks.watch.label' is a condition"),
    ({"stars": {"type": "binary", "label": "rating"}}, "'model.tasks.stars.label' names label 'rating', whose "
                                                       "values are not 0/1"),
    ({"retrieval": {"type": "retrieval", "positive": "bought == 1"}}, "'model.tasks.retrieval.positive' names "
                                                                      "unknown label 'bought'"),
    ({"genres": {"type": "content", "feature": "title"}}, "'model.tasks.genres.feature' names 'title'"),
    ({"watch": {"type": "regression", "label": "watch_seconds", "sample_weight": "weights"}},
     "'model.tasks.watch.sample_weight' names unknown label 'weights'"),
])
def test_a_task_that_does_not_fit_the_data_names_the_field_and_the_value(data, tasks, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        _model(data, _config(tasks))


def test_several_labels_and_a_task_without_one_is_an_error_not_a_guess(data) -> None:  # type: ignore[no-untyped-def]
    several = dataclasses.replace(data, interactions=data.interactions.rename(columns={"rating": "stars"}),
                                  labels=("stars", "clicked"))
    with pytest.raises(ValueError, match="'model.tasks.rating' has no label, and the data has several"):
        _model(several, _config({"retrieval": 1.0, "rating": 1.0}))


def test_a_non_numeric_label_is_named(data) -> None:  # type: ignore[no-untyped-def]
    texts = dataclasses.replace(data, interactions=data.interactions.assign(clicked="yes"))
    with pytest.raises(ValueError, match="'model.tasks.click.label' names label 'clicked', which is not numeric"):
        _model(texts, _config({"click": {"type": "binary", "label": "clicked"}}))


# === Losses, by hand ===

def test_missing_labels_sample_weights_log1p_and_esmm_losses_by_hand(data) -> None:  # type: ignore[no-untyped-def]
    model, batch, _ = _model(data, _config(BEHAVIOURS))
    raw = _raw_outputs(model, batch)
    losses = {k: float(v) for k, v in model.task_losses(batch, training=False).items()}
    assert set(losses) == set(BEHAVIOURS)

    clicked = batch["clicked"].numpy().astype(np.float64)
    p_click = _sigmoid(raw["click"])
    assert losses["click"] == pytest.approx(np.mean(_bce(p_click, clicked)), rel=1e-4)

    # ESMM: p(purchase) = p(click) · p(purchase | click), over every exposure: no click means no purchase (0),
    # a click whose purchase is unknown is masked.
    purchased = np.where(clicked == 0, 0.0, batch["purchased"].numpy().astype(np.float64))
    known = np.isfinite(purchased)
    assert 0 < known.sum() < len(known) and (purchased[known] == 0).sum() > (clicked == 0).sum() > 0
    p_purchase = p_click * _sigmoid(raw["purchase"])
    assert losses["purchase"] == pytest.approx(np.mean(_bce(p_purchase[known], purchased[known])), rel=1e-4)

    # Regression on log1p(watch), each known row weighted by its importance, averaged over the known rows.
    watch = batch["watch_seconds"].numpy().astype(np.float64)
    importance = batch["importance"].numpy().astype(np.float64)
    known = np.isfinite(watch)
    assert 0 < known.sum() < len(known)
    squared = (raw["watch"][known] - np.log1p(watch[known])) ** 2
    assert losses["watch"] == pytest.approx(np.sum(importance[known] * squared) / known.sum(), rel=1e-4)

    liked = (batch["rating"].numpy() >= 4).astype(np.float64)
    assert losses["liked"] == pytest.approx(np.mean(_bce(_sigmoid(raw["liked"]), liked)), rel=1e-4)


def test_served_outputs_are_the_probabilities_and_the_value_in_the_labels_units(data) -> None:  # type: ignore[no-untyped-def]
    model, batch, _ = _model(data, _config(BEHAVIOURS))
    raw = _raw_outputs(model, batch)
    served = {k: v.numpy() for k, v in model.rank(batch).items()}
    assert set(served) == {"click_probability", "purchase_probability", "watch", "liked_probability"}
    np.testing.assert_allclose(served["purchase_probability"], _sigmoid(raw["click"]) * _sigmoid(raw["purchase"]),
                               rtol=1e-5)
    np.testing.assert_allclose(served["watch"], np.expm1(raw["watch"]), rtol=1e-4)
    assert wire.rank_outputs(model.space) == ["retrieval_score", "click_probability", "purchase_probability",
                                             "watch", "liked_probability"]


def test_the_retrieval_positive_condition_keeps_only_those_rows(data) -> None:  # type: ignore[no-untyped-def]
    model, batch, _ = _model(data, _config(BEHAVIOURS))
    positive = batch[target_key("retrieval")].numpy()
    np.testing.assert_array_equal(positive, batch["clicked"].numpy())
    kept = {k: tf.boolean_mask(v, positive == 1.0) for k, v in batch.items()}
    users, items = model.user_tower(kept), model.item_tower(kept)
    expected = model.retrieval_task(model.normalize(users), model.normalize(items), model._item_index(kept["item_id"]),
                                    sampling_probability=tf.gather(model._item_probability,
                                                                   model._item_index(kept["item_id"])),
                                    catalog_embeddings=model.embed_item(model._catalog),
                                    catalog_ids=model._item_index(model._catalog["item_id"]))
    assert float(model.task_losses(batch)["retrieval"]) == pytest.approx(float(expected), rel=1e-5)


def test_the_run_folder_fingerprint_tells_a_missing_label_from_a_zero(data) -> None:  # type: ignore[no-untyped-def]
    frame = data.interactions
    zero = dataclasses.replace(data, interactions=frame.assign(purchased=frame["purchased"].fillna(0.0)))
    assert data_fingerprint(data)["sha256"] != data_fingerprint(zero)["sha256"]


# === A numeric content task ===

@pytest.fixture(scope="module")
def with_length(data):  # type: ignore[no-untyped-def]
    """The toy items with a numeric feature (a length in minutes), missing for every fifth item."""
    rng = np.random.default_rng(1)
    length = rng.uniform(80, 160, len(data.items))
    length[::5] = np.nan
    features = dataclasses.replace(data.item_features, numeric=("length",))
    return dataclasses.replace(data, items=data.items.assign(length=length), item_features=features)


def test_a_numeric_content_task_is_mse_in_standard_units_over_the_items_that_have_a_value(with_length) -> None:  # type: ignore[no-untyped-def]
    whole = {"type": "content", "feature": "length", "items_per_step": 10_000}  # a step reads every training item
    model, batch, split = _model(with_length, _config({"retrieval": 1.0, "length": whole}))
    trained = with_length.interactions["item_id"].iloc[split.train].unique()
    values = with_length.items.set_index("item_id").loc[trained, "length"]
    mean, scale = values.dropna().mean(), values.dropna().std()  # the training items', each once
    items = with_length.items.set_index("item_id").loc[trained].reset_index()
    features = {k: tf.constant(v) for k, v in model.space.item_arrays(with_length, items).items()}
    raw = values.to_numpy()
    known = np.isfinite(raw)
    assert 0 < known.sum() < len(known)
    out = model.content_outputs(features).numpy().astype(np.float64)
    expected = np.mean((out[known] - (raw[known] - mean) / scale) ** 2)
    assert float(model.task_losses(batch, training=False)["length"]) == pytest.approx(expected, rel=1e-4)
    # The head never reads the feature it predicts.
    shifted = dict(batch, length=batch["length"] * 3.0 + 7.0)
    np.testing.assert_array_equal(model.content_outputs(shifted).numpy(), model.content_outputs(batch).numpy())

    metrics = evaluate_model(model, with_length, split.train, split.test, ks=(5,))
    test_items = with_length.items.set_index("item_id").loc[
        with_length.interactions["item_id"].iloc[split.test].unique(), "length"]
    assert metrics["length/missing"] == float(test_items.isna().sum()) > 0
    assert np.isfinite(metrics["length/rmse"]) and not any(k.startswith("length/macro") for k in metrics)


def test_a_content_task_on_a_feature_that_is_neither_multi_valued_nor_numeric_is_named(with_length) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="'model.tasks.era.feature' names 'year', which is not a multi-valued or "
                                         "numeric item feature"):
        _model(with_length, _config({"retrieval": 1.0, "era": {"type": "content", "feature": "year"}}))


# === Metrics ===

def test_metrics_follow_the_tasks_and_count_the_missing_labels(data) -> None:  # type: ignore[no-untyped-def]
    config = _config(BEHAVIOURS)
    model, _, split = _model(data, config)
    metrics = evaluate_model(model, data, split.train, split.test, ks=(5,))
    frame = data.interactions.iloc[split.test]
    unknown = frame["purchased"].isna() & (frame["clicked"] == 1)  # no click is a known "no purchase"
    assert metrics["purchase/missing"] == float(unknown.sum()) > 0
    assert "click/missing" not in metrics
    expected = set(metric_names(config.model, ks=(5,)))
    assert expected <= set(metrics)
    assert {"click/auc", "purchase/auc", "watch/rmse", "liked/f1", "retrieval/recall_at_5"} <= expected
    assert not any(name.startswith(("rating/", "like/", "genres/")) for name in metrics)
