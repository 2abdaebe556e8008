"""User and item towers: raw feature dicts -> embeddings [B, D]. Each tower reads only its declared keys.

Every lookup happens in-graph on raw values (string ids, categories, numbers, text), so an exported model
takes the same raw values a client has. Unknown ids and categories fall into a shared OOV bucket (index 0).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from tfmtl.config import TowerConfig
from tfmtl.data.history import HISTORY
from tfmtl.data.interactions import ITEM_ID, USER_ID
from tfmtl.data.pipeline import PAD
from tfmtl.encoders.text import TextEncoder
from tfmtl.features import FeatureSpace


class CategoricalEmbedding(tf.keras.layers.Layer):
    """Strings [B] -> [B, dim]; padded lists [B, W] ("" = padding) -> masked mean [B, dim]."""

    def __init__(self, vocabulary: Sequence[str], dim: int, *, prefix: int | None = None, dropout: float = 0.0,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.lookup = tf.keras.layers.StringLookup(vocabulary=list(vocabulary) or None, num_oov_indices=1,
                                                   mask_token=None)
        self.embedding = tf.keras.layers.Embedding(len(vocabulary) + 1, dim)
        self.prefix = prefix
        self.dropout = dropout

    def call(self, values: tf.Tensor, training: bool | None = None) -> tf.Tensor:
        if self.prefix:
            values = tf.strings.substr(values, 0, self.prefix, unit="UTF8_CHAR")
        index = self.lookup(values)
        if training and self.dropout > 0:  # some rows become "unknown" (OOV index 0)
            index = tf.where(tf.random.uniform(tf.shape(index)) < self.dropout, tf.zeros_like(index), index)
        embedded = self.embedding(index)
        if values.shape.rank == 1:
            return embedded
        mask = tf.cast(tf.not_equal(values, PAD), embedded.dtype)[..., tf.newaxis]
        return tf.reduce_sum(embedded * mask, axis=1) / tf.maximum(tf.reduce_sum(mask, axis=1), 1.0)


class NumericBuckets(tf.keras.layers.Layer):
    """Numbers [B] -> embedding of their quantile bucket [B, dim]."""

    def __init__(self, boundaries: Sequence[float], dim: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.discretize = tf.keras.layers.Discretization(bin_boundaries=list(boundaries))
        self.embedding = tf.keras.layers.Embedding(len(boundaries) + 1, dim)

    def call(self, values: tf.Tensor) -> tf.Tensor:
        return self.embedding(self.discretize(tf.cast(values, tf.float32)))


class TextFeature(tf.keras.layers.Layer):
    """Texts [B] -> projected text embeddings [B, dim].

    A frozen encoder's output depends on the text alone, so the catalog's texts are encoded once and looked up;
    only texts outside the cache (a new item) run the encoder. A trainable encoder runs once per unique text
    in the batch.
    """

    def __init__(self, encoder: TextEncoder, dim: int, *, cached_texts: Sequence[str] = (), dropout: float = 0.0,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.encoder = encoder
        self.projection = tf.keras.layers.Dense(dim, name="projection")
        self.dropout = tf.keras.layers.Dropout(dropout)
        # The encoder's own projection trains, so only a fully frozen encoder's output can be cached.
        self.frozen = encoder.config.trainable_layers == 0 and encoder.projection is None
        keys = sorted({str(t) for t in cached_texts}) if self.frozen else []
        self.cache_keys = keys
        self.cache = tf.Variable(tf.zeros([max(1, len(keys)), encoder.output_dim]), trainable=False,
                                 name="text_cache")
        self.cache_index = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(tf.constant(keys or [PAD], tf.string),
                                                tf.range(max(1, len(keys)), dtype=tf.int64)),
            default_value=-1) if keys else None

    def fill_cache(self, batch_size: int = 64) -> None:
        """Encode the cached texts (once, after the weights are final for a frozen encoder)."""
        if self.cache_keys:
            self.cache.assign(self.encoder.embed(self.cache_keys, batch_size=batch_size))

    def call(self, texts: tf.Tensor, training: bool | None = None) -> tf.Tensor:
        return self.dropout(self.projection(self.encode(texts, training=training)), training=training)

    def encode(self, texts: tf.Tensor, training: bool | None = None) -> tf.Tensor:
        """Texts [B] -> encoder outputs [B, E] (cached where possible)."""
        texts = tf.reshape(tf.convert_to_tensor(texts, tf.string), [-1])
        if self.cache_index is None:
            unique, position = tf.unique(texts)
            return tf.gather(self.encoder(unique, training=training), position)
        index = self.cache_index.lookup(texts)
        hit = index >= 0
        cached = tf.gather(self.cache, tf.maximum(index, 0))

        def encode_misses() -> tf.Tensor:
            misses = tf.where(~hit)
            computed = self.encoder(tf.gather_nd(texts, misses), training=False)
            return tf.tensor_scatter_nd_update(cached, misses, computed)

        return tf.cond(tf.reduce_all(hit), lambda: cached, encode_misses)


class HistoryEncoder(tf.keras.layers.Layer):
    """The user's earlier item ids [B, H] ("" = padding, newest last) -> [B, dim].

    ``mean``: masked mean of item embeddings. ``attention``: one self-attention layer over the items plus
    position embeddings (recency), then a masked mean.
    """

    def __init__(self, item_vocabulary: Sequence[str], dim: int, *, length: int, pooling: str,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.lookup = tf.keras.layers.StringLookup(vocabulary=list(item_vocabulary), num_oov_indices=1,
                                                   mask_token=None)
        self.embedding = tf.keras.layers.Embedding(len(item_vocabulary) + 1, dim)
        self.pooling = pooling
        if pooling == "attention":
            self.positions = tf.keras.layers.Embedding(length, dim)
            self.attention = tf.keras.layers.MultiHeadAttention(num_heads=2, key_dim=max(1, dim // 2))
            self.norm = tf.keras.layers.LayerNormalization()

    def call(self, history: tf.Tensor, training: bool | None = None) -> tf.Tensor:
        present = tf.not_equal(history, PAD)
        items = self.embedding(self.lookup(history))
        if self.pooling == "attention":
            items = items + self.positions(tf.range(tf.shape(history)[1]))[tf.newaxis]
            mask = present[:, tf.newaxis, :] & present[:, :, tf.newaxis]
            items = self.norm(items + self.attention(items, items, attention_mask=mask, training=training))
        weights = tf.cast(present, items.dtype)[..., tf.newaxis]
        return tf.reduce_sum(items * weights, axis=1) / tf.maximum(tf.reduce_sum(weights, axis=1), 1.0)


class Tower(tf.keras.layers.Layer):
    """Per-feature embeddings, concatenated, then an MLP to D. Reads only ``self.feature_keys``."""

    def __init__(self, features: dict[str, tf.keras.layers.Layer], config: TowerConfig, output_dim: int,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # === Layers ===
        self.features = features
        self.hidden = [tf.keras.layers.Dense(units, activation="relu") for units in config.hidden_units]
        self.dropouts = [tf.keras.layers.Dropout(config.dropout) for _ in config.hidden_units]
        self.output_layer = tf.keras.layers.Dense(output_dim, name="embedding")
        # === Config ===
        self.feature_keys = tuple(features)

    def call(self, inputs: dict[str, tf.Tensor], training: bool | None = None,
             drop: Sequence[str] = ()) -> tf.Tensor:
        """inputs: raw features (extra keys are ignored); ``drop``: features whose embedding is zeroed."""
        missing = [key for key in self.feature_keys if key not in inputs]
        if missing:
            raise ValueError(f"{self.name}: missing input feature '{missing[0]}' "
                             f"(reads: {', '.join(self.feature_keys)})")
        parts = []
        for key, layer in self.features.items():
            embedded = layer(inputs[key], training=training)  # tf-keras drops it for layers that take none
            parts.append(tf.zeros_like(embedded) if key in drop else embedded)
        x = tf.concat(parts, axis=-1)
        for dense, dropout in zip(self.hidden, self.dropouts, strict=False):
            x = dropout(dense(x), training=training)
        return self.output_layer(x)


def build_user_tower(space: FeatureSpace, config: TowerConfig, output_dim: int, *, history_pooling: str) -> Tower:
    features: dict[str, tf.keras.layers.Layer] = {
        USER_ID: CategoricalEmbedding(space.vocabularies[USER_ID], config.id_dim, dropout=config.id_dropout,
                                      name="user_id")}
    features.update(_side_features(space, config, space.user_categorical, space.user_multi_valued, space.user_numeric))
    if space.history_length:
        features[HISTORY] = HistoryEncoder(space.vocabularies[ITEM_ID], config.id_dim, length=space.history_length,
                                           pooling=history_pooling, name="history")
    return Tower(features, config, output_dim, name="user_tower")


def build_item_tower(space: FeatureSpace, config: TowerConfig, output_dim: int,
                     encoder: TextEncoder | None) -> Tower:
    features: dict[str, tf.keras.layers.Layer] = {
        ITEM_ID: CategoricalEmbedding(space.vocabularies[ITEM_ID], config.id_dim, dropout=config.id_dropout,
                                      name="item_id")}
    features.update(_side_features(space, config, space.item_categorical, space.item_multi_valued, space.item_numeric))
    for column in space.item_text:
        if encoder is None:
            raise ValueError(f"text column '{column}' needs a text encoder")
        texts = np.asarray(space.catalog.get(column, []), dtype=object)
        features[column] = TextFeature(encoder, config.text_dim, cached_texts=[str(t) for t in texts],
                                       dropout=config.dropout, name=f"text_{column}")
    return Tower(features, config, output_dim, name="item_tower")


def _side_features(space: FeatureSpace, config: TowerConfig, categorical: Sequence[str],
                   multi_valued: Sequence[str], numeric: Sequence[str]) -> dict[str, tf.keras.layers.Layer]:
    out: dict[str, tf.keras.layers.Layer] = {}
    for column in (*categorical, *multi_valued):
        out[column] = CategoricalEmbedding(space.vocabularies[column], config.feature_dim,
                                           prefix=space.prefixes.get(column), name=f"feature_{column}")
    for column in numeric:
        out[column] = NumericBuckets(space.boundaries[column], config.feature_dim, name=f"feature_{column}")
    return out
