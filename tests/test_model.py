"""The composed model on a tiny synthetic dataset: gradients per task, save/reload parity, bad configs."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from tests.toy import toy_config, toy_data
from tfmtl.config import Config, ModelConfig, TextEncoderConfig, TowerConfig
from tfmtl.data.pipeline import make_dataset
from tfmtl.features import FeatureSpace
from tfmtl.run import build_encoder, build_model
from tfmtl.training import make_split


@pytest.fixture(scope="module")
def data():  # type: ignore[no-untyped-def]
    return toy_data()


def _built(data, config: Config):  # type: ignore[no-untyped-def]
    """(model, a training batch of 32 rows, split, feature space)."""
    split = make_split(data, config)
    space = FeatureSpace.build(config.model, data, split.train)
    model = build_model(config.model, space, build_encoder(config.model, space, seed=0))
    batch = next(iter(make_dataset(space.interaction_arrays(data, split.train, split.train, is_training=True),
                                   batch_size=32)))
    return model, batch, split, space


def _model(data, config: Config):  # type: ignore[no-untyped-def]
    model, batch, _, _ = _built(data, config)
    return model, batch


def _rating_output_gradient(data, weights: dict[str, float]) -> np.ndarray:  # type: ignore[no-untyped-def]
    model, batch = _model(data, toy_config(tasks=weights))
    kernel = model.ranking_heads.heads["rating"][-1].kernel
    with tf.GradientTape() as tape:
        total = model.compute_loss(batch, training=True)
    return tape.gradient(total, kernel).numpy()


def test_a_zero_weight_sends_no_gradient_from_its_task(data) -> None:  # type: ignore[no-untyped-def]
    off = _rating_output_gradient(data, {"retrieval": 1.0, "rating": 0.0, "like": 1.0})
    on = _rating_output_gradient(data, {"retrieval": 1.0, "rating": 1.0, "like": 1.0})
    assert np.all(off == 0.0)
    assert np.abs(on).sum() > 0


def test_total_loss_is_the_weighted_sum_of_task_losses(data) -> None:  # type: ignore[no-untyped-def]
    weights = {"retrieval": 1.0, "rating": 0.5, "like": 2.0, "genres": 0.25}
    model, batch = _model(data, toy_config(tasks=weights))
    losses = {k: float(v) for k, v in model.task_losses(batch, training=False).items()}
    total = float(model.compute_loss(batch, training=False))
    assert set(losses) == set(weights)
    assert total == pytest.approx(sum(weights[k] * losses[k] for k in weights), rel=1e-5)


def test_like_loss_is_binary_cross_entropy_of_rating_at_threshold(data) -> None:  # type: ignore[no-untyped-def]
    model, batch = _model(data, toy_config(tasks={"like": 1.0}))
    outputs = model.rank(batch)
    p = outputs["like_probability"].numpy().astype(np.float64)
    liked = (batch["rating"].numpy() >= 4.0).astype(np.float64)
    expected = -np.mean(liked * np.log(p) + (1 - liked) * np.log(1 - p))
    assert float(model.task_losses(batch)["like"]) == pytest.approx(expected, rel=1e-4)


@pytest.mark.parametrize("bottom, history_attention", [("shared", False), ("mmoe", True)])
def test_ranking_bottoms_produce_each_head(data, bottom: str, history_attention: bool) -> None:  # type: ignore[no-untyped-def]
    config = toy_config()
    config = dataclasses.replace(config, model=dataclasses.replace(config.model, ranking=dataclasses.replace(
        config.model.ranking, bottom=bottom, history_attention=history_attention)))
    model, batch = _model(data, config)
    outputs = model.rank(batch)
    assert set(outputs) == {"rating", "like_probability"}
    assert outputs["rating"].shape == (32,)
    if bottom == "mmoe":
        gates = model.ranking_heads.mixture.gates
        assert set(gates) == {"rating", "like"}


def test_unknown_users_and_items_share_the_oov_bucket(data) -> None:  # type: ignore[no-untyped-def]
    model, batch = _model(data, toy_config())
    features = dict(batch)
    features["user_id"] = tf.constant(["never-seen-1"] * 32)
    first = model.embed_user(features).numpy()
    features["user_id"] = tf.constant(["never-seen-2"] * 32)
    np.testing.assert_array_equal(first, model.embed_user(features).numpy())


def test_text_cache_matches_running_the_encoder(data) -> None:  # type: ignore[no-untyped-def]
    config = toy_config()
    config = dataclasses.replace(config, model=dataclasses.replace(
        config.model, encoder=dataclasses.replace(config.model.encoder, trainable_layers=0)))
    model, _ = _model(data, config)
    text = model.item_tower.features["title"]
    text.fill_cache()
    titles = tf.constant([*data.items["title"][:3], "an unseen title"])
    cached = text.encode(titles).numpy()
    direct = text.encoder(titles, training=False).numpy()
    np.testing.assert_allclose(cached, direct, atol=1e-6)


def test_history_text_is_the_projected_mean_of_the_history_items_encoder_outputs(data) -> None:  # type: ignore[no-untyped-def]
    model, _ = _model(data, toy_config(history_text=True))
    title = model.item_tower.features["title"]
    profile = model.user_tower.features["history"].texts[0]
    titles = dict(zip(data.items["item_id"], data.items["title"], strict=True))
    known = [str(i) for i in model.space.vocabularies["item_id"]]
    history = [[known[0], known[3], ""], ["", "", ""], [known[1], "never-rated", ""]]
    index = model.user_tower.features["history"].lookup(tf.constant(history))
    got = profile(index, training=False).numpy()

    kernel, bias = title.projection.kernel.numpy(), title.projection.bias.numpy()
    def expected(items: list[str]) -> np.ndarray:  # the encoder run on the raw titles, not the cache
        if not items:
            return bias
        return title.encoder(tf.constant([titles[i] for i in items]), training=False).numpy().mean(0) @ kernel + bias

    np.testing.assert_allclose(got, [expected([known[0], known[3]]), expected([]), expected([known[1]])],
                               atol=1e-5)
    user = {"user_id": tf.constant(["u0"]), "gender": tf.constant(["M"]), "age": tf.constant([30.0]),
            "history": tf.constant([history[0][:2] + [""] * 3])}
    assert model.user_tower(user).shape == (1, 8)


@pytest.mark.parametrize("settings", [dict(history_length=0), dict(text_features=()),
                                      dict(encoder=TextEncoderConfig(trainable_layers=1)),
                                      dict(encoder=TextEncoderConfig(projection_dim=16))])
def test_history_text_needs_a_history_item_text_and_a_frozen_encoder(settings: dict) -> None:
    with pytest.raises(ValueError, match="'model.history_text'"):
        ModelConfig(history_text=True, **settings)


@pytest.mark.parametrize("bad, field", [
    (dict(tasks={"rating": -1.0}), "model.tasks.rating"),
    (dict(tasks={}), "model.tasks"),
    (dict(tasks={"retrieval": 0.0}), "model.tasks"),
    (dict(tasks={"clicks": 1.0}), "model.tasks.clicks"),
])
def test_bad_model_config_names_the_field(bad: dict, field: str) -> None:
    with pytest.raises(ValueError, match=f"'{field}'"):
        ModelConfig(**bad)


def test_an_unknown_feature_names_the_field_and_the_feature(data) -> None:  # type: ignore[no-untyped-def]
    config = toy_config(user_tower=TowerConfig(features=("gender", "zipcode")))
    with pytest.raises(ValueError, match=r"'model.user_tower.features'.*'zipcode'.*known: gender"):
        FeatureSpace.build(config.model, data, np.arange(10))


def test_a_sequence_length_over_the_encoder_maximum_names_the_field() -> None:
    with pytest.raises(ValueError, match="'encoder.sequence_length'"):
        Config.from_config({"model": {"encoder": {"sequence_length": 1024}}})


def test_id_dropout_sends_some_training_rows_to_the_unknown_bucket(data) -> None:  # type: ignore[no-untyped-def]
    config = toy_config(item_tower=TowerConfig(id_dim=8, feature_dim=4, text_dim=4, hidden_units=(16,),
                                               dropout=0.0, id_dropout=0.5))
    model, batch = _model(data, config)
    ids = model.item_tower.features["item_id"]
    unknown = ids(tf.constant(["not-an-item"] * 400)).numpy()[0]
    known = tf.constant(["i0"] * 400)
    inference = ids(known, training=False).numpy()
    training = ids(known, training=True).numpy()
    assert not np.any(np.all(inference == unknown, axis=1))
    dropped = np.all(training == unknown, axis=1).mean()
    assert 0.4 < dropped < 0.6


def test_ranking_losses_are_row_means_worked_out_by_hand(data) -> None:  # type: ignore[no-untyped-def]
    model, batch = _model(data, toy_config())
    losses = model.task_losses(batch, training=False)
    outputs = model.rank(batch)
    rating = batch["rating"].numpy().astype(np.float64)
    predicted = outputs["rating"].numpy().astype(np.float64)
    np.testing.assert_allclose(losses["rating"].numpy(), np.mean((predicted - rating) ** 2), rtol=1e-5)
    p, liked = outputs["like_probability"].numpy().astype(np.float64), (rating >= 4).astype(np.float64)
    bce = -np.mean(liked * np.log(p) + (1 - liked) * np.log(1 - p))
    np.testing.assert_allclose(losses["like"].numpy(), bce, rtol=1e-4)


def test_the_content_head_reads_the_items_content_but_never_its_genres_or_id(data) -> None:  # type: ignore[no-untyped-def]
    model, batch = _model(data, toy_config(tasks={"retrieval": 1.0, "genres": 1.0}))
    logits = model.content_outputs(batch).numpy()
    other = dict(batch, genres=tf.reverse(batch["genres"], axis=[0]), item_id=tf.reverse(batch["item_id"], axis=[0]))
    np.testing.assert_array_equal(model.content_outputs(other).numpy(), logits)
    retitled = dict(batch, title=tf.reverse(batch["title"], axis=[0]))
    assert np.abs(model.content_outputs(retitled).numpy() - logits).max() > 1e-4


def _training_items(data, config: Config):  # type: ignore[no-untyped-def]
    """The model, a training batch, and the item features of every item with a training row (each once)."""
    model, batch, split, space = _built(data, config)
    trained = set(data.interactions["item_id"].iloc[split.train].astype(str))
    rows = np.array([str(i) in trained for i in space.catalog["item_id"]])
    return model, batch, {k: tf.constant(v[rows]) for k, v in space.catalog.items()}


def _genre_cross_entropy(model, items) -> np.ndarray:  # type: ignore[no-untyped-def]
    """Each item's sigmoid cross-entropy against its multi-hot genres, averaged over the genres, by hand [N]."""
    z = model.content_outputs(items).numpy().astype(np.float64)
    vocabulary = list(model.content_head.genres)
    hot = np.array([[float(g in {v.decode() for v in row}) for g in vocabulary] for row in items["genres"].numpy()])
    assert 0 < hot.sum() < hot.size
    return np.mean(np.maximum(z, 0) - z * hot + np.log1p(np.exp(-np.abs(z))), axis=1)


def test_the_content_loss_weighs_every_training_item_once_not_by_its_rows(data) -> None:  # type: ignore[no-untyped-def]
    whole = {"type": "content", "items_per_step": 10_000}  # one step reads the whole training catalog
    model, batch, items = _training_items(data, toy_config(tasks={"retrieval": 1.0, "genres": whole}))
    expected = _genre_cross_entropy(model, items).mean()
    assert float(model.task_losses(batch, training=False)["genres"]) == pytest.approx(expected, rel=1e-5)


def test_the_content_task_reads_the_training_items_in_turn(data) -> None:  # type: ignore[no-untyped-def]
    """One item per step: over as many steps as there are items, each item's loss is counted exactly once."""
    config = toy_config(tasks={"retrieval": 1.0, "genres": {"type": "content", "items_per_step": 1}})
    model, batch, items = _training_items(data, config)
    model.compile(optimizer=tf.keras.optimizers.Adam())
    per_item = _genre_cross_entropy(model, items)
    seen = []
    for step in range(len(per_item)):
        model.optimizer.iterations.assign(step)
        seen.append(float(model.task_losses(batch, training=False)["genres"]))
    np.testing.assert_allclose(sorted(seen), sorted(per_item), rtol=1e-5)
    assert len(set(np.round(seen, 6))) > 1
