"""The fast text paths compute what the straightforward ones do: the split encoder against keras-hub's own forward
pass, and the cached unique-item path against encoding every row (outputs and gradients)."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from tests.encoders.conftest import TITLES, tiny_encoder
from tfmtl.encoders import TextEncoder
from tfmtl.towers import TextFeature

# Rows repeat titles (as interactions repeat items) and include one text outside the catalog.
ROWS = [*TITLES[:10], *TITLES[:6], "a title no catalog has", TITLES[3]]
CATALOG = sorted(set(TITLES))


def reference_embeddings(encoder, texts: list[str]) -> np.ndarray:  # type: ignore[no-untyped-def]
    """keras-hub's backbone forward pass, mean-pooled and normalised by hand."""
    tokens = encoder.tokenize(texts)
    sequence = encoder._keras3.backbone(tokens, training=False)["sequence_output"].numpy()
    mask = tokens["padding_mask"].numpy()[..., None].astype(np.float32)
    pooled = (sequence * mask).sum(1) / mask.sum(1)
    return pooled / np.linalg.norm(pooled, axis=1, keepdims=True)


@pytest.mark.parametrize("trainable_layers", [0, 1, 2, -1])
def test_split_encoder_matches_the_backbone(trainable_layers: int) -> None:
    encoder = tiny_encoder(trainable_layers=trainable_layers)
    tokens = encoder.tokenize(TITLES[:6])
    if encoder.has_frozen_stage:
        split = encoder.upper(encoder.lower(tokens), tokens["padding_mask"]).numpy()
        np.testing.assert_allclose(split, reference_embeddings(encoder, TITLES[:6]), atol=1e-5)
    np.testing.assert_allclose(encoder(tokens).numpy(), reference_embeddings(encoder, TITLES[:6]), atol=1e-5)


def feature_pair(trainable_layers: int, **options: object) -> tuple[TextFeature, TextFeature]:
    """A fast and a per-example TextFeature over the same encoder and projection weights."""
    encoder = tiny_encoder(trainable_layers=trainable_layers, dropout=0.0, **options)
    fast = TextFeature(encoder, 4, cached_texts=CATALOG)
    slow = TextFeature(encoder, 4, cached_texts=CATALOG, per_example=True)
    fast(tf.constant(ROWS[:2]))
    slow(tf.constant(ROWS[:2]))
    slow.projection.set_weights(fast.projection.get_weights())
    fast.fill_cache()
    slow.fill_cache()
    return fast, slow


def outputs_and_gradients(feature: TextFeature, training: bool) -> tuple[np.ndarray, list[np.ndarray]]:
    variables = feature.trainable_weights
    with tf.GradientTape() as tape:
        out = feature(tf.constant(ROWS), training=training)
        loss = tf.reduce_sum(out * tf.range(1.0, 5.0))  # a loss that weighs every output column differently
    gradients = tape.gradient(loss, variables)
    return out.numpy(), [g.numpy() if not isinstance(g, tf.IndexedSlices) else tf.convert_to_tensor(g).numpy()
                         for g in gradients]


@pytest.mark.parametrize("trainable_layers, options", [(1, {}), (-1, {}), (0, {}), (0, {"projection_dim": 6}),
                                                       (2, {"projection_dim": 6})])
@pytest.mark.parametrize("training", [True, False])
def test_unique_item_path_matches_per_example_encoding(trainable_layers: int, options: dict,
                                                       training: bool) -> None:
    fast, slow = feature_pair(trainable_layers, **options)
    fast_out, fast_grads = outputs_and_gradients(fast, training)
    slow_out, slow_grads = outputs_and_gradients(slow, training)
    np.testing.assert_allclose(fast_out, slow_out, atol=1e-5)
    assert len(fast_grads) == len(slow_grads) > 0
    for a, b in zip(fast_grads, slow_grads, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)  # float32 sums in another order


def test_training_caches_hold_the_frozen_stage_and_trimmed_tokens() -> None:
    fast, _ = feature_pair(1, sequence_length=32)  # longer than any catalog title
    cache = fast._train_cache
    longest = int(max(fast.encoder.tokenize(CATALOG)["padding_mask"].numpy().sum(1)))
    assert longest < fast.encoder.config.sequence_length
    assert tuple(cache.token_ids.shape) == (len(CATALOG), longest)
    assert tuple(cache.hidden.shape) == (len(CATALOG), longest, fast.encoder.hidden_dim)
    # Steps run texts in length groups, each trimmed to its width: here several, so the equality tests above
    # cover the regrouping; every text fits its group, the longest in the last.
    lengths = cache.lengths.numpy()
    assert len(cache.widths) > 2 and cache.widths[-1] == longest
    assert sorted(cache.widths) == cache.widths and all(np.isin(cache.widths, lengths))


def test_xla_compiled_stage_matches() -> None:
    fast, slow = feature_pair(1)
    fast.encoder.jit_compile = True
    np.testing.assert_allclose(fast(tf.constant(ROWS), training=True).numpy(),
                               slow(tf.constant(ROWS), training=True).numpy(), atol=1e-5)


def test_mixed_precision_encoder_is_close_to_float32() -> None:
    full = tiny_encoder(trainable_layers=1, seed=3)
    mixed = TextEncoder.from_encoder_config(full.config, vocabulary=full.vocabulary, seed=3, dtype="mixed_bfloat16")
    assert all(v.dtype == tf.float32 for v in mixed.encoder_variables.values())  # float32 variables
    for key, variable in full.encoder_variables.items():
        mixed.encoder_variables[key].assign(variable)
    tokens = full.tokenize(TITLES[:6])
    reference = full(tokens).numpy()
    cosine = (mixed(tokens).numpy() * reference).sum(1)  # both L2-normalised
    assert cosine.min() > 0.99 and not np.array_equal(mixed(tokens).numpy(), reference)
