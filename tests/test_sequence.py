"""The causal sequence tower and the all-positions objective: causality by hand, the attention against a reference
written from its definition, the training sequences by hand, and the all-positions loss against prefixes served
one by one."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from tests.toy import toy_config, toy_data
from tfmtl.config import ModelConfig, SequenceConfig
from tfmtl.data.history import HISTORY, NEXT_ITEMS, NEXT_LABELS, next_item_sequences
from tfmtl.data.interactions import ITEM_ID, USER_ID, InteractionData, finish
from tfmtl.data.schema import FeatureColumns
from tfmtl.sequence import CausalSelfAttention, CausalTransformer


def test_uniform_attention_has_the_hand_computed_output_and_gradients() -> None:
    # Width 1, zero query and key kernels: every position averages the values of itself and the events before it.
    # out_t = w_o * mean_{j <= t, present} (w_v * x_j + b_v) + b_o, so d out_t / d x_j = w_o * w_v / n_t for those
    # j, and exactly 0 for later events and for padding.
    layer = CausalSelfAttention(1, 1, 4, relative_positions=False, dropout=0.0)
    x = tf.constant([[[0.0], [1.0], [2.0], [3.0]]])
    present = tf.constant([[False, True, True, True]])  # slot 0 is padding
    layer(x, present)
    layer.query.kernel.assign([[0.0]])
    layer.key.kernel.assign([[0.0]])
    layer.value.kernel.assign([[2.0]])
    layer.value.bias.assign([0.5])
    layer.output_dense.kernel.assign([[3.0]])
    layer.output_dense.bias.assign([-1.0])
    with tf.GradientTape() as tape:
        tape.watch(x)
        out = layer(x, present)
    values = 2.0 * np.array([1.0, 2.0, 3.0]) + 0.5
    for t, count in ((1, 1), (2, 2), (3, 3)):
        assert out[0, t, 0].numpy() == pytest.approx(3.0 * values[:count].mean() - 1.0, abs=1e-6)
    jacobian = tape.jacobian(out, x)[0, :, 0, 0, :, 0].numpy()  # [reader t, read j]
    want = np.zeros((4, 4))
    for t in (1, 2, 3):
        want[t, 1:t + 1] = 3.0 * 2.0 / t
    np.testing.assert_allclose(jacobian[1:], want[1:], atol=1e-6)


def _reference_attention(layer: CausalSelfAttention, x: np.ndarray, present: np.ndarray) -> np.ndarray:
    """Causal multi-head attention with a relative-distance bias, from its definition, in NumPy."""
    def dense(dense_layer: tf.keras.layers.Dense, values: np.ndarray) -> np.ndarray:
        return values @ dense_layer.kernel.numpy() + dense_layer.bias.numpy()

    heads, size = layer.num_heads, layer.head_dim
    q, k, v = (dense(d, x) for d in (layer.query, layer.key, layer.value))
    bias = layer.distance_bias.numpy()
    batch, length, _ = x.shape
    out = np.zeros((batch, length, heads * size))
    for b in range(batch):
        for h in range(heads):
            part = slice(h * size, (h + 1) * size)
            for i in range(length):
                scores = np.full(length, -np.inf)
                for j in range(i + 1):
                    if present[b, j]:
                        scores[j] = q[b, i, part] @ k[b, j, part] / np.sqrt(size) + bias[h, min(i - j,
                                                                                              layer.max_length - 1)]
                if np.isinf(scores).all():
                    continue  # a padded slot with nothing before it: its output is never read
                weights = np.exp(scores - scores.max())
                out[b, i, part] = (weights / weights.sum()) @ v[b, :, part]
    return dense(layer.output_dense, out)


def test_multi_head_attention_with_distance_bias_matches_a_reference_from_its_definition() -> None:
    rng = np.random.default_rng(0)
    layer = CausalSelfAttention(8, 2, 3, relative_positions=True, dropout=0.0)
    x = rng.normal(size=(2, 5, 8)).astype(np.float32)
    present = np.array([[False, False, True, True, True], [True, True, True, True, True]])
    layer(tf.constant(x), tf.constant(present))
    layer.distance_bias.assign(rng.normal(size=(2, 3)).astype(np.float32))  # distances >= 2 share the last bias
    got = layer(tf.constant(x), tf.constant(present)).numpy()
    want = _reference_attention(layer, x.astype(np.float64), present)
    rows = present | (np.arange(5) >= 2)  # every slot but the leading padding
    np.testing.assert_allclose(got[rows], want[rows], atol=1e-5)


@pytest.mark.parametrize("positions", ["relative", "absolute"])
def test_a_position_never_sees_a_later_event(positions: str) -> None:
    rng = np.random.default_rng(1)
    transformer = CausalTransformer(8, num_layers=2, num_heads=2, max_length=6, positions=positions, dropout=0.0)
    x = tf.constant(rng.normal(size=(1, 6, 8)).astype(np.float32))
    present = tf.constant([[False, True, True, True, True, True]])
    with tf.GradientTape() as tape:
        tape.watch(x)
        out = transformer(x, present)
    jacobian = np.abs(tape.jacobian(out, x)[0, :, :, 0].numpy()).sum(axis=(1, 3))  # [reader t, read j]
    for t in range(1, 6):
        assert (jacobian[t, t + 1:] == 0).all(), f"position {t} reads a later event"
        assert (jacobian[t, 1:t + 1] > 0).all(), f"position {t} ignores an earlier event"
        assert jacobian[t, 0] == 0  # padding is never read
    # Changing the newest event leaves every earlier output exactly as it was.
    changed = tf.concat([x[:, :5], x[:, 5:] + 1.0], axis=1)
    np.testing.assert_array_equal(transformer(changed, present).numpy()[:, :5], out.numpy()[:, :5])


def _timeline(events: dict[str, int]) -> InteractionData:
    rows = [(user, f"{user}-{n}", 3.0 + n % 2, 100 + n) for user, count in events.items() for n in range(count)]
    interactions = pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])
    items = pd.DataFrame({"item_id": sorted(interactions["item_id"].unique())})
    users = pd.DataFrame({"user_id": sorted(events)})
    return finish(InteractionData(name="timeline", interactions=interactions, items=items, users=users,
                                  labels=("rating",), item_features=FeatureColumns(),
                                  user_features=FeatureColumns()))


def test_training_sequences_cut_each_timeline_so_every_later_event_is_a_target_once() -> None:
    data = _timeline({"a": 7, "b": 2, "c": 1})
    rows = np.arange(len(data.interactions))[::-1].copy()  # the order rows are given in does not matter
    arrays, newest, skipped = next_item_sequences(data, rows, length=3, label="rating")
    assert skipped == 1  # c has one event: nothing predicts it
    history, targets = arrays[HISTORY].tolist(), arrays[NEXT_ITEMS].tolist()
    assert history == [["a-3", "a-4", "a-5"], ["a-0", "a-1", "a-2"], ["", "", "b-0"]]
    assert targets == [["a-4", "a-5", "a-6"], ["a-1", "a-2", "a-3"], ["", "", "b-1"]]
    np.testing.assert_array_equal(arrays[NEXT_LABELS][2], [0.0, 0.0, 4.0])
    assert data.interactions[ITEM_ID].to_numpy()[newest].tolist() == ["a-6", "a-3", "b-1"]
    newest_only, _, _ = next_item_sequences(data, rows, length=3, windows="newest")
    assert newest_only[NEXT_ITEMS].tolist() == [["a-4", "a-5", "a-6"], ["", "", "b-1"]]


def test_the_causal_tower_needs_its_width_to_split_into_heads() -> None:
    with pytest.raises(ValueError, match="model.user_tower.id_dim"):
        ModelConfig(history_pooling="causal", sequence=SequenceConfig(num_heads=3))
    with pytest.raises(ValueError, match="model.sequence.positions"):
        SequenceConfig(positions="rotary")


@pytest.fixture(scope="module")
def causal_model():  # type: ignore[no-untyped-def]
    from tfmtl.features import FeatureSpace
    from tfmtl.run import build_encoder, build_model
    from tfmtl.training import make_split

    data = toy_data(num_users=12, num_items=30, per_user=10)
    config = toy_config(history_pooling="causal", history_text=True, sequence=SequenceConfig(dropout=0.0),
                        tasks={"retrieval": 1.0, "rating": 1.0, "like": 1.0, "genres": 1.0})
    config = dataclasses.replace(config, train=dataclasses.replace(config.train, validation_fraction=0.0))
    split = make_split(data, config)
    space = FeatureSpace.build(config.model, data, split.train)
    model = build_model(config.model, space, build_encoder(config.model, space, seed=0))
    arrays, _ = space.next_item_arrays(data, split.train)
    return model, arrays


def test_the_all_positions_loss_is_the_mean_of_each_prefix_served_alone(causal_model) -> None:  # type: ignore[no-untyped-def]
    model, arrays = causal_model
    losses = model.next_item_losses({k: tf.constant(v) for k, v in arrays.items()}, training=False)
    catalog = {k: tf.constant(v) for k, v in model._catalog.items()}
    catalog_ids = [i.decode() for i in catalog[ITEM_ID].numpy()]
    items = model.item_tower(catalog).numpy()
    normalized = items / np.linalg.norm(items, axis=1, keepdims=True)
    temperature = model.config.retrieval.temperature
    length = arrays[HISTORY].shape[1]
    retrieval, squared, count = [], [], 0
    for n in range(len(arrays[USER_ID])):
        for t in np.flatnonzero(arrays[NEXT_ITEMS][n] != ""):
            # The prefix up to t, right-aligned in its own window, as a served request would carry it.
            prefix = np.full((1, length), "", dtype=object)
            prefix[0, length - t - 1:] = arrays[HISTORY][n, :t + 1]
            request = {k: tf.constant(v[n:n + 1]) for k, v in arrays.items() if k not in (HISTORY, NEXT_ITEMS)}
            request[HISTORY] = tf.constant(prefix)
            user = model.user_tower(request).numpy()[0]
            scores = normalized @ (user / np.linalg.norm(user)) / temperature
            target = catalog_ids.index(arrays[NEXT_ITEMS][n, t])
            retrieval.append(np.log(np.exp(scores - scores.max()).sum()) + scores.max() - scores[target])
            rating = model.rank_tower_outputs(tf.constant(user[np.newaxis]), tf.constant(items[target:target + 1]),
                                              request[USER_ID], tf.constant([catalog_ids[target]]))["rating"]
            squared.append((float(rating.numpy()[0]) - arrays[NEXT_LABELS][n, t]) ** 2)
            count += 1
    assert count > 3 * len(arrays[USER_ID])  # many positions per sequence
    assert float(losses["retrieval"]) == pytest.approx(np.mean(retrieval), rel=1e-4)
    assert float(losses["rating"]) == pytest.approx(np.mean(squared), rel=1e-4)


def test_each_position_trains_the_shared_layers(causal_model) -> None:  # type: ignore[no-untyped-def]
    model, arrays = causal_model
    batch = {k: tf.constant(v[:4]) for k, v in arrays.items()}
    with tf.GradientTape() as tape:
        total = tf.add_n(list(model.next_item_losses(batch, training=True).values()))
    variables = [v for v in model.trainable_variables if "transformer" in v.name or "genre" in v.name
                 or "ranking" in v.name]
    gradients = tape.gradient(total, variables)
    assert variables and all(g is not None and float(tf.reduce_sum(tf.abs(tf.convert_to_tensor(g)))) > 0
                             for g in gradients)
