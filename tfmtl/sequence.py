"""Causal self-attention over a behaviour sequence: each position reads itself and the events before it.

Sequences are right-aligned (newest last, padding on the left), as training, offline evaluation and the served
model (``exporting.module.newest_items``) all lay them out. Positions are encoded either as a learned bias per
head on the distance between the reading and the read event (``relative``: the output at an event depends only
on that event and what came before it, wherever it sits in the window, so a prefix served alone gives exactly
the output that position had in training), or as learned embeddings of the distance from the window's newest
event (``absolute``, SASRec's).
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf

MASKED = -1e9  # not -inf: a padded position that may read nothing gets a finite (unused) average, never NaN


class CausalSelfAttention(tf.keras.layers.Layer):
    """Multi-head attention of each position over itself and earlier present positions, plus a learned bias per
    head and distance (``relative_positions``). x [B, H, d], present [B, H] -> [B, H, d]."""

    def __init__(self, width: int, num_heads: int, max_length: int, *, relative_positions: bool, dropout: float,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if width % num_heads:
            raise ValueError(f"the sequence width ({width}) must be divisible by its heads ({num_heads})")
        self.num_heads, self.head_dim, self.max_length = num_heads, width // num_heads, max_length
        self.query = tf.keras.layers.Dense(width, name="query")
        self.key = tf.keras.layers.Dense(width, name="key")
        self.value = tf.keras.layers.Dense(width, name="value")
        self.output_dense = tf.keras.layers.Dense(width, name="output")
        self.dropout = tf.keras.layers.Dropout(dropout)
        self.relative_positions = relative_positions
        if relative_positions:
            self.distance_bias = self.add_weight(name="distance_bias", shape=[num_heads, max_length],
                                                 initializer="zeros")

    def call(self, x: tf.Tensor, present: tf.Tensor, training: bool | None = None) -> tf.Tensor:
        def heads(t: tf.Tensor) -> tf.Tensor:  # [B, H, d] -> [B, heads, H, d/heads]
            shape = tf.shape(t)
            return tf.transpose(tf.reshape(t, [shape[0], shape[1], self.num_heads, self.head_dim]), [0, 2, 1, 3])

        q, k, v = heads(self.query(x)), heads(self.key(x)), heads(self.value(x))
        scores = tf.matmul(q, k, transpose_b=True) * (self.head_dim ** -0.5)  # [B, heads, H, H]
        length = tf.shape(x)[1]
        reader = tf.range(length)[:, tf.newaxis]
        read = tf.range(length)[tf.newaxis, :]
        if self.relative_positions:
            distance = tf.minimum(reader - read, self.max_length - 1)
            scores += tf.gather(self.distance_bias, tf.maximum(distance, 0), axis=1)[tf.newaxis]
        allowed = (read <= reader)[tf.newaxis, tf.newaxis] & present[:, tf.newaxis, tf.newaxis, :]
        weights = self.dropout(tf.nn.softmax(tf.where(allowed, scores, MASKED), axis=-1), training=training)
        out = tf.transpose(tf.matmul(weights, v), [0, 2, 1, 3])
        return self.output_dense(tf.reshape(out, tf.shape(x)))


class CausalTransformer(tf.keras.layers.Layer):
    """Pre-norm transformer blocks over item embeddings [B, H, d] with a present mask [B, H] -> [B, H, d]; the
    outputs at padded positions are zeros."""

    def __init__(self, width: int, *, num_layers: int, num_heads: int, max_length: int, positions: str,
                 dropout: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.positions = (tf.keras.layers.Embedding(max_length, width, name="positions")
                          if positions == "absolute" else None)
        self.input_dropout = tf.keras.layers.Dropout(dropout)
        self.attention = [CausalSelfAttention(width, num_heads, max_length, relative_positions=positions == "relative",
                                              dropout=dropout, name=f"attention_{i}") for i in range(num_layers)]
        self.attention_norms = [tf.keras.layers.LayerNormalization(name=f"attention_norm_{i}")
                                for i in range(num_layers)]
        self.feed_forward = [[tf.keras.layers.Dense(width, activation="relu", name=f"feed_forward_{i}_0"),
                              tf.keras.layers.Dense(width, name=f"feed_forward_{i}_1")] for i in range(num_layers)]
        self.feed_forward_norms = [tf.keras.layers.LayerNormalization(name=f"feed_forward_norm_{i}")
                                   for i in range(num_layers)]
        self.dropouts = [tf.keras.layers.Dropout(dropout) for _ in range(2 * num_layers)]
        self.output_norm = tf.keras.layers.LayerNormalization(name="output_norm")

    def call(self, x: tf.Tensor, present: tf.Tensor, training: bool | None = None) -> tf.Tensor:
        if self.positions is not None:  # distance from the window's newest slot: 0 is the newest
            x += self.positions(tf.range(tf.shape(x)[1] - 1, -1, -1))[tf.newaxis]
        mask = tf.cast(present, x.dtype)[..., tf.newaxis]
        x = self.input_dropout(x, training=training) * mask
        for i, attention in enumerate(self.attention):
            x += self.dropouts[2 * i](attention(self.attention_norms[i](x), present, training=training),
                                      training=training)
            hidden = self.feed_forward[i][1](self.feed_forward[i][0](self.feed_forward_norms[i](x)))
            x = (x + self.dropouts[2 * i + 1](hidden, training=training)) * mask
        return self.output_norm(x) * mask
