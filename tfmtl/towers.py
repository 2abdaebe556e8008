"""User and item towers: raw feature dicts -> embeddings [B, D]. Each tower reads only its declared keys.

Every lookup happens in-graph on raw values (string ids, categories, numbers, text), so an exported model
takes the same raw values a client has. Unknown ids and categories fall into a shared OOV bucket (index 0).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from tfmtl.config import SequenceConfig, TowerConfig
from tfmtl.data.history import HISTORY
from tfmtl.data.interactions import ITEM_ID, USER_ID
from tfmtl.data.pipeline import PAD
from tfmtl.encoders.text import TextEncoder
from tfmtl.features import FeatureSpace
from tfmtl.sequence import CausalTransformer


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


class VectorFeature(tf.keras.layers.Layer):
    """Precomputed embeddings [B, input_dim] (an LLM's, CLIP's; zeros where missing) -> a trainable projection to
    the tower's text width [B, dim], as a :class:`TextFeature` projects its encoder's output.

    The vectors are read raw, not normalised: a model whose embeddings are meant to be compared by cosine should
    have them L2-normalised before they are written (the projection learns any scale, but not a per-row one).
    """

    def __init__(self, input_dim: int, dim: int, *, dropout: float = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # === Layers ===
        self.projection = tf.keras.layers.Dense(dim, name="projection")
        self.dropout_layer = tf.keras.layers.Dropout(dropout)
        # === Config ===
        self.input_dim = int(input_dim)
        self.dim = int(dim)
        self.dropout = float(dropout)

    def call(self, vectors: tf.Tensor, training: bool | None = None) -> tf.Tensor:
        return self.dropout_layer(self.projection(self.encode(vectors)), training=training)

    def encode(self, vectors: tf.Tensor, training: bool | None = None) -> tf.Tensor:
        """The vectors themselves [B, input_dim] (what the item's content says, before any training)."""
        return tf.ensure_shape(tf.cast(vectors, tf.float32), [None, self.input_dim])

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "input_dim": self.input_dim, "dim": self.dim, "dropout": self.dropout}


class TextFeature(tf.keras.layers.Layer):
    """Texts [B] -> projected text embeddings [B, dim]. The work scales with items, not with rows:

    * a frozen encoder's output depends on the text alone, so the catalog's texts are encoded once and looked
      up (a checkpointed cache); only texts outside the catalog (a new item) run the encoder;
    * otherwise the encoder runs once per unique text of the batch, and in training the catalog's token ids and
      the frozen stage's hidden states (``TextEncoder.lower``) are precomputed once per item, so a step runs only
      the trainable layers (``TextEncoder.upper``). These training caches are rebuilt by :meth:`fill_cache`,
      never checkpointed or exported.

    ``per_example=True`` is the straightforward reference path: tokenise and encode every row, no caches.
    """

    def __init__(self, encoder: TextEncoder, dim: int, *, cached_texts: Sequence[str] = (), dropout: float = 0.0,
                 per_example: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.encoder = encoder
        self.projection = tf.keras.layers.Dense(dim, name="projection")
        self.dropout = tf.keras.layers.Dropout(dropout)
        self.per_example = per_example
        # The encoder's own projection trains, so only a fully frozen encoder's output can be cached.
        self.frozen = encoder.config.trainable_layers == 0 and encoder.projection is None
        texts = sorted({str(t) for t in cached_texts})
        keys = texts if self.frozen else []
        self.cache_keys = keys
        self.cache = tf.Variable(tf.zeros([max(1, len(keys)), encoder.output_dim]), trainable=False,
                                 name="text_cache")
        self.cache_index = _index(keys) if keys and not per_example else None
        self.catalog_texts = texts
        self._train_cache = _TrainingCache()

    def fill_cache(self, batch_size: int = 64) -> None:
        """Encode the cached texts (once, after the weights are final for a frozen encoder), and precompute the
        training caches of a trainable encoder."""
        if self.cache_keys and not self.per_example:
            self.cache.assign(self.encoder.embed(self.cache_keys, batch_size=batch_size))
        if not self.frozen and not self.per_example and self.catalog_texts:
            self._train_cache = _TrainingCache.build(self.encoder, self.catalog_texts, batch_size=batch_size)

    def call(self, texts: tf.Tensor, training: bool | None = None) -> tf.Tensor:
        return self.dropout(self.projection(self.encode(texts, training=training)), training=training)

    def encode(self, texts: tf.Tensor, training: bool | None = None) -> tf.Tensor:
        """Texts [B] -> encoder outputs [B, E] (cached where possible)."""
        texts = tf.reshape(tf.convert_to_tensor(texts, tf.string), [-1])
        if self.per_example:
            return self.encoder(texts, training=training)
        if self.cache_index is not None:
            return _with_misses(self.cache_index.lookup(texts), lambda index: tf.gather(self.cache, index),
                                texts, lambda missed: self.encoder(missed, training=False))
        unique, position = tf.unique(texts)
        return tf.gather(self._encode_unique(unique, training), position)

    def _encode_unique(self, texts: tf.Tensor, training: bool | None) -> tf.Tensor:
        cache = self._train_cache
        if not training or cache.index is None:
            return self.encoder(texts, training=training)

        def cached(index: tf.Tensor) -> tf.Tensor:
            # Texts of similar length run together, each group trimmed to its own width.
            group = tf.searchsorted(tf.constant(cache.widths), tf.gather(cache.lengths, index))
            positions = tf.dynamic_partition(tf.range(tf.size(index)), group, len(cache.widths))
            return tf.dynamic_stitch(positions, [self._encode_cached(tf.gather(index, rows), width, training)
                                                 for rows, width in zip(positions, cache.widths, strict=True)])

        return _with_misses(cache.index.lookup(texts), cached, texts,
                            lambda missed: self.encoder(missed, training=training))

    def _encode_cached(self, rows: tf.Tensor, width: int, training: bool | None) -> tf.Tensor:
        """Catalog rows of the training cache whose texts fit in ``width`` tokens -> encoder outputs."""
        cache = self._train_cache
        mask = tf.gather(cache.padding_mask, rows)[:, :width]
        if cache.hidden is not None:
            return self.encoder.upper(tf.gather(cache.hidden, rows)[:, :width], mask, training=training)
        token_ids = tf.gather(cache.token_ids, rows)[:, :width]
        return self.encoder({"token_ids": token_ids, "segment_ids": tf.zeros_like(token_ids),
                             "padding_mask": mask}, training=training)


HIDDEN_CACHE_LIMIT_BYTES = 2 << 30  # above this, training caches token ids only
LENGTH_GROUPS = 4  # one encoder call per group and step; four already drop most of the padding of short texts


class _TrainingCache:
    """Per catalog text: token ids and padding mask [N, W], and the frozen stage's hidden states [N, W, H].

    W is the longest tokenised catalog text: the columns after it are padding for every item, and padding
    positions are masked out of attention and pooling, so dropping them changes nothing. For the same reason a
    step groups its texts by length (``widths``: ascending, at most ``LENGTH_GROUPS``, the last is W) and runs
    each group trimmed to its width. Not a trackable attribute: it is neither checkpointed nor exported.
    """

    def __init__(self) -> None:
        self.index: tf.lookup.StaticHashTable | None = None
        self.token_ids: tf.Tensor | None = None
        self.padding_mask: tf.Tensor | None = None
        self.hidden: tf.Tensor | None = None
        self.lengths: tf.Tensor | None = None  # tokens per text, int32 [N]
        self.widths: list[int] = []

    @classmethod
    def build(cls, encoder: TextEncoder, texts: Sequence[str], *, batch_size: int) -> _TrainingCache:
        tokens = [encoder.tokenize(texts[i:i + batch_size]) for i in range(0, len(texts), batch_size)]
        token_ids = tf.concat([t["token_ids"] for t in tokens], axis=0)
        padding_mask = tf.concat([t["padding_mask"] for t in tokens], axis=0)
        lengths = tf.reduce_sum(tf.cast(padding_mask, tf.int32), axis=1)
        width = max(1, int(tf.reduce_max(lengths)))
        cache = cls()
        cache.index = _index(list(texts))
        cache.lengths = lengths
        quantiles = np.quantile(lengths.numpy(), np.arange(1, LENGTH_GROUPS) / LENGTH_GROUPS, method="higher")
        cache.widths = sorted({max(1, int(q)) for q in quantiles} | {width})
        cache.token_ids, cache.padding_mask = token_ids[:, :width], padding_mask[:, :width]
        if encoder.has_frozen_stage and len(texts) * width * encoder.hidden_dim * 4 <= HIDDEN_CACHE_LIMIT_BYTES:
            lower = tf.function(encoder.lower, autograph=False)
            cache.hidden = tf.concat([lower({"token_ids": cache.token_ids[i:i + batch_size],
                                             "segment_ids": tf.zeros_like(cache.token_ids[i:i + batch_size]),
                                             "padding_mask": cache.padding_mask[i:i + batch_size]})
                                      for i in range(0, len(texts), batch_size)], axis=0)
        return cache


def _index(keys: Sequence[str]) -> tf.lookup.StaticHashTable:
    """Text -> its row in a cache; -1 for texts outside it."""
    return tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(tf.constant(list(keys), tf.string),
                                            tf.range(len(keys), dtype=tf.int64)), default_value=-1)


def _with_misses(index: tf.Tensor, cached: Any, texts: tf.Tensor, compute: Any) -> tf.Tensor:
    """Rows found in a cache (index >= 0) come from ``cached(index)``; the others from ``compute(texts)``."""
    hit = index >= 0
    found = cached(tf.maximum(index, 0))

    def fill_misses() -> tf.Tensor:
        misses = tf.where(~hit)
        return tf.tensor_scatter_nd_update(found, misses, compute(tf.gather_nd(texts, misses)))

    return tf.cond(tf.reduce_all(hit), lambda: found, fill_misses)


class HistoryText(tf.keras.layers.Layer):
    """Item vocabulary indices [B, H] (0 = unknown or padding) -> the masked mean of the items' frozen text
    embeddings, through the item tower's own projection and dropout [B, dim]: a content profile in the space the
    item tower reads this text column in.

    Projecting the mean equals the mean of the projections (the projection is affine and the weights sum to 1),
    so a step averages the users' cached embeddings (padding skipped, never gathered) and projects once.
    """

    def __init__(self, text: TextFeature, rows: np.ndarray, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not text.frozen or text.per_example:
            raise ValueError(f"model.history_text reads the frozen text cache of '{text.name}', which a trainable "
                             "encoder and per-example text (the reference path) do not keep")
        self.text = text
        self.rows = tf.constant(rows, tf.int32)  # vocabulary index -> row of text.cache; -1: no text

    def call(self, index: tf.Tensor, training: bool | None = None) -> tf.Tensor:
        rows = tf.gather(self.rows, index)
        present = tf.where(rows >= 0)
        ids = tf.SparseTensor(present, tf.gather_nd(rows, present), tf.shape(rows, out_type=tf.int64))
        # A user with no known item gets zeros (then the projection's bias).
        mean = tf.nn.safe_embedding_lookup_sparse([self.text.cache], ids, combiner="mean")
        return self.text.dropout(self.text.projection(mean), training=training)

    def per_event(self, index: tf.Tensor, training: bool | None = None) -> tf.Tensor:
        """Vocabulary indices [B, H] -> each item's projected text embedding [B, H, dim] (zeros: no text)."""
        rows = tf.gather(self.rows, index)
        known = tf.cast(rows >= 0, self.text.cache.dtype)[..., tf.newaxis]
        embedded = tf.gather(self.text.cache, tf.maximum(rows, 0)) * known
        return self.text.dropout(self.text.projection(embedded), training=training) * known


class HistoryEncoder(tf.keras.layers.Layer):
    """The user's earlier item ids [B, H] ("" = padding on the left, newest last) -> [B, dim (+ text dims)].

    ``mean``: masked mean of item embeddings. ``attention``: one self-attention layer over the items plus
    position embeddings (recency), then a masked mean. ``texts``: item text features whose content profile of
    the same items (:class:`HistoryText`) is concatenated. ``causal``: a causal transformer
    (:class:`~tfmtl.sequence.CausalTransformer`) whose output at the newest event is the user; each event's input is
    its item embedding plus, for ``texts``, its own text embedding; :meth:`sequence` gives every position's output.
    """

    def __init__(self, item_vocabulary: Sequence[str], dim: int, *, length: int, pooling: str,
                 texts: Sequence[tuple[TextFeature, Sequence[str]]] = (), sequence: SequenceConfig | None = None,
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
        if pooling == "causal":
            sequence = sequence or SequenceConfig()
            self.transformer = CausalTransformer(dim, num_layers=sequence.num_layers, num_heads=sequence.num_heads,
                                                 max_length=length, positions=sequence.positions,
                                                 dropout=sequence.dropout, name="transformer")
            self.text_inputs = [tf.keras.layers.Dense(dim, use_bias=False, name=f"text_input_{text.name}")
                                for text, _ in texts]
        self.texts = [HistoryText(text, _cache_rows(text, item_texts), name=f"history_{text.name}")
                      for text, item_texts in texts]

    def call(self, history: tf.Tensor, training: bool | None = None) -> tf.Tensor:
        if self.pooling == "causal":
            return self.sequence(history, training=training)[:, -1]  # zeros when there is no history
        present = tf.not_equal(history, PAD)
        index = self.lookup(history)
        items = self.embedding(index)
        if self.pooling == "attention":
            items = items + self.positions(tf.range(tf.shape(history)[1]))[tf.newaxis]
            mask = present[:, tf.newaxis, :] & present[:, :, tf.newaxis]
            items = self.norm(items + self.attention(items, items, attention_mask=mask, training=training))
        weights = tf.cast(present, items.dtype)[..., tf.newaxis]
        pooled = tf.reduce_sum(items * weights, axis=1) / tf.maximum(tf.reduce_sum(weights, axis=1), 1.0)
        if not self.texts:
            return pooled
        return tf.concat([pooled, *(text(index, training=training) for text in self.texts)], axis=-1)

    def sequence(self, history: tf.Tensor, training: bool | None = None) -> tf.Tensor:
        """``causal`` only: every position's output [B, H, dim], each reading itself and the events before it
        (zeros at padding)."""
        present = tf.not_equal(history, PAD)
        index = self.lookup(history)
        items = self.embedding(index)
        for text, to_input in zip(self.texts, self.text_inputs, strict=True):
            items += to_input(text.per_event(index, training=training))
        return self.transformer(items, present, training=training)


def _cache_rows(text: TextFeature, item_texts: Sequence[str]) -> np.ndarray:
    """Texts of the item vocabulary, in order -> rows of ``text.cache`` [V + 1]; row 0 (unknown) is -1."""
    row = {key: i for i, key in enumerate(text.cache_keys)}
    return np.array([-1, *(row.get(str(t), -1) for t in item_texts)], dtype=np.int32)


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
        return self._head(tf.concat(parts, axis=-1), training)

    def content(self, inputs: dict[str, tf.Tensor], drop: Sequence[str] = (),
                training: bool | None = None) -> tf.Tensor:
        """What the item's features say before the MLP shapes them for retrieval [B, F]: every feature's embedding
        but ``drop``'s, a text as the encoder's output (not the projection retrieval trains)."""
        parts = [layer.encode(inputs[key], training=training) if hasattr(layer, "encode")  # a text feature
                 else layer(inputs[key], training=training)
                 for key, layer in self.features.items() if key not in drop]
        return tf.concat(parts, axis=-1)

    def call_sequence(self, inputs: dict[str, tf.Tensor], training: bool | None = None) -> tf.Tensor:
        """The user tower at every position of its causal history [B, H, D]: position t reads the side features and
        the history up to t (its last position is :meth:`call`)."""
        sequence = self.features[HISTORY].sequence(inputs[HISTORY], training=training)  # [B, H, d]
        length = tf.shape(sequence)[1]
        parts = []
        for key, layer in self.features.items():
            if key == HISTORY:
                parts.append(sequence)
            else:
                embedded = layer(inputs[key], training=training)
                parts.append(tf.repeat(embedded[:, tf.newaxis], length, axis=1))
        return self._head(tf.concat(parts, axis=-1), training)

    def _head(self, x: tf.Tensor, training: bool | None) -> tf.Tensor:
        for dense, dropout in zip(self.hidden, self.dropouts, strict=False):
            x = dropout(dense(x), training=training)
        return self.output_layer(x)


def build_user_tower(space: FeatureSpace, config: TowerConfig, output_dim: int, *, history_pooling: str,
                     encoder: TextEncoder | None = None, per_example_text: bool = False,
                     history_texts: dict[str, TextFeature] | None = None,
                     sequence: SequenceConfig | None = None) -> Tower:
    """``encoder``: reads the user text columns (the item tower's, shared); ``history_texts``: item text column ->
    the item tower's feature for it, read by the history's content profile."""
    features = _id_feature(space, config, USER_ID)
    features.update(_side_features(space, config, space.user_categorical, space.user_multi_valued, space.user_numeric))
    features.update(_text_features(space.user_texts, encoder, config, per_example_text=per_example_text,
                                   prefix="user_text"))
    features.update(_vector_features(space.user_vector, config, prefix="user_vector"))
    if space.history_length:
        vocabulary = space.vocabularies[ITEM_ID]
        texts = [(feature, _item_texts(space, column, vocabulary)) for column, feature in (history_texts or {}).items()]
        features[HISTORY] = HistoryEncoder(vocabulary, config.id_dim, length=space.history_length,
                                           pooling=history_pooling, texts=texts, sequence=sequence,
                                           name="history")
    return Tower(features, config, output_dim, name="user_tower")


def _item_texts(space: FeatureSpace, column: str, items: Sequence[str]) -> list[str]:
    """Each item's text in ``column``, in the order of ``items`` (all in the catalog)."""
    text = dict(zip((str(i) for i in space.catalog[ITEM_ID]), (str(t) for t in space.catalog[column]), strict=True))
    return [text[str(item)] for item in items]


def build_item_tower(space: FeatureSpace, config: TowerConfig, output_dim: int,
                     encoder: TextEncoder | None, *, per_example_text: bool = False) -> Tower:
    features = _id_feature(space, config, ITEM_ID)
    features.update(_side_features(space, config, space.item_categorical, space.item_multi_valued, space.item_numeric))
    features.update(_text_features({column: space.catalog.get(column, []) for column in space.item_text}, encoder,
                                   config, per_example_text=per_example_text, prefix="text"))
    features.update(_vector_features(space.item_vector, config, prefix="vector"))
    return Tower(features, config, output_dim, name="item_tower")


def _text_features(texts: Mapping[str, Sequence[Any]], encoder: TextEncoder | None, config: TowerConfig, *,
                   per_example_text: bool, prefix: str) -> dict[str, tf.keras.layers.Layer]:
    """A :class:`TextFeature` per text column (column -> its texts, cached), all on the one ``encoder``."""
    out: dict[str, tf.keras.layers.Layer] = {}
    for column, values in texts.items():
        if encoder is None:
            raise ValueError(f"text column '{column}' needs a text encoder")
        out[column] = TextFeature(encoder, config.text_dim, cached_texts=[str(t) for t in values],
                                  dropout=config.dropout, per_example=per_example_text, name=f"{prefix}_{column}")
    return out


def _vector_features(dims: Mapping[str, int], config: TowerConfig, *, prefix: str) -> dict[str, tf.keras.layers.Layer]:
    """A :class:`VectorFeature` per precomputed vector column (column -> its dim)."""
    return {column: VectorFeature(dim, config.text_dim, dropout=config.dropout, name=f"{prefix}_{column}")
            for column, dim in dims.items()}


def _id_feature(space: FeatureSpace, config: TowerConfig, column: str) -> dict[str, tf.keras.layers.Layer]:
    if not config.id_feature:
        return {}
    return {column: CategoricalEmbedding(space.vocabularies[column], config.id_dim, dropout=config.id_dropout,
                                         name=column)}


def _side_features(space: FeatureSpace, config: TowerConfig, categorical: Sequence[str],
                   multi_valued: Sequence[str], numeric: Sequence[str]) -> dict[str, tf.keras.layers.Layer]:
    out: dict[str, tf.keras.layers.Layer] = {}
    for column in (*categorical, *multi_valued):
        out[column] = CategoricalEmbedding(space.vocabularies[column], config.feature_dim,
                                           prefix=space.prefixes.get(column), name=f"feature_{column}")
    for column in numeric:
        out[column] = NumericBuckets(space.boundaries[column], config.feature_dim, name=f"feature_{column}")
    return out
