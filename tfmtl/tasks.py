"""Tasks as loss layers (TFRS tasks where TFRS has them), ranking heads, and loss weighting."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import tensorflow as tf
import tensorflow_recommenders as tfrs

from tfmtl.config import RankingConfig, RetrievalConfig
from tfmtl.distribute import replica_scale

RETRIEVAL, RATING, LIKE, GENRES = "retrieval", "rating", "like", "genres"  # the MovieLens preset's tasks


# === Retrieval ===

class RetrievalTask(tf.keras.layers.Layer):
    """Softmax over candidates for each (user, positive item) row, via ``tfrs.tasks.Retrieval``.

    ``catalog`` negatives: each row's softmax runs over its positive and every other training-catalog item, each
    counted once (the batch's positives followed by the catalog; the positive's catalog copy is an accidental hit
    and other rows' batch columns are masked, as those items are in the catalog part already).
    ``in_batch`` negatives: the batch's positives only, optionally logQ-corrected.
    The loss is the mean over rows (TFRS sums), so loss weights do not depend on the batch size.
    """

    def __init__(self, config: RetrievalConfig, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.config = config
        remove = config.remove_accidental_hits or config.negatives == "catalog"
        self.task = tfrs.tasks.Retrieval(
            loss=tf.keras.losses.CategoricalCrossentropy(from_logits=True,
                                                         reduction=tf.keras.losses.Reduction.SUM),
            temperature=config.temperature, remove_accidental_hits=remove,
            num_hard_negatives=config.hard_negatives or None)

    def call(self, user_embeddings: tf.Tensor, item_embeddings: tf.Tensor, item_ids: tf.Tensor, *,
             catalog_embeddings: tf.Tensor | None = None, catalog_ids: tf.Tensor | None = None,
             sampling_probability: tf.Tensor | None = None) -> tf.Tensor:
        """users [B, D], positives [B, D] with ids [B]; catalog [N, D] with ids [N]; probabilities [B]."""
        candidates, ids, mask = item_embeddings, item_ids, None
        if self.config.negatives == "catalog":
            if catalog_embeddings is None or catalog_ids is None:
                raise ValueError("catalog negatives need catalog_embeddings and catalog_ids")
            candidates = tf.concat([item_embeddings, catalog_embeddings], axis=0)
            ids = tf.concat([item_ids, catalog_ids], axis=0)
            # Each row keeps only its own batch column: other rows' positives are already in the catalog part.
            rows, catalog_size = tf.shape(item_embeddings)[0], tf.shape(catalog_embeddings)[0]
            mask = tf.concat([tf.eye(rows, dtype=tf.bool), tf.ones([rows, catalog_size], tf.bool)], axis=1)
            sampling_probability = None
        else:
            if not self.config.logq_correction:
                sampling_probability = None
            candidates, ids, sampling_probability = _cross_replica(candidates, ids, sampling_probability)
        total = self.task(user_embeddings, candidates, candidate_sampling_probability=sampling_probability,
                          candidate_ids=ids, compute_metrics=False, compute_batch_metrics=False, score_mask=mask)
        # SUM, then the mean by hand: tf-keras refuses its mean reduction inside a tf.distribute strategy.
        return total / tf.cast(tf.maximum(tf.shape(user_embeddings)[0], 1), total.dtype)


class NextItemRetrieval(tf.keras.layers.Layer):
    """The all-positions retrieval loss: a softmax of each position's user embedding over candidate items.

    ``catalog`` negatives: the candidates are the whole training catalog (an exact softmax). ``in_batch``: they
    are the distinct items the batch's positions predict, each once (so there are no accidental hits), with
    log(sampling probability) subtracted when ``logq_correction`` is on. TFRS's ``Retrieval`` task takes the
    diagonal of a [positions, candidates] block as the positives, which would repeat every target per position;
    this layer keeps TFRS's temperature and logQ conventions and takes each position's target column instead.
    The loss is the mean over positions.
    """

    def __init__(self, config: RetrievalConfig, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.config = config

    def call(self, queries: tf.Tensor, candidates: tf.Tensor, targets: tf.Tensor, *,
             log_probability: tf.Tensor | None = None) -> tf.Tensor:
        """queries [N, D], candidates [C, D], targets [N] (candidate columns), log_probability [C]."""
        logits = tf.matmul(queries, candidates, transpose_b=True) / self.config.temperature
        if log_probability is not None and self.config.negatives == "in_batch" and self.config.logq_correction:
            logits -= log_probability[tf.newaxis]
        losses = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=targets, logits=logits)
        return tf.reduce_sum(losses) / tf.cast(tf.maximum(tf.size(targets), 1), losses.dtype)


def _cross_replica(items: tf.Tensor, ids: tf.Tensor,
                   probability: tf.Tensor | None) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor | None]:
    """In-batch candidates of every replica: this replica's positives first (TFRS's labels are the diagonal),
    then the other replicas' (gradients flow back to them through all_gather). Unchanged on one replica."""
    _, context = replica_scale()
    if context is None:
        return items, ids, probability
    rows = tf.shape(items)[0]
    others = tf.not_equal(tf.range(rows * context.num_replicas_in_sync) // rows,
                          tf.cast(context.replica_id_in_sync_group, tf.int32))

    def gather(local: tf.Tensor) -> tf.Tensor:
        return tf.concat([local, tf.boolean_mask(context.all_gather(local, axis=0), others)], axis=0)

    return gather(items), gather(ids), None if probability is None else gather(probability)


# === Ranking ===

def _mlp(units: Sequence[int], dropout: float, name: str) -> list[tf.keras.layers.Layer]:
    layers: list[tf.keras.layers.Layer] = []
    for i, width in enumerate(units):
        layers += [tf.keras.layers.Dense(width, activation="relu", name=f"{name}_{i}"),
                   tf.keras.layers.Dropout(dropout)]
    return layers


def _run(layers: Sequence[tf.keras.layers.Layer], x: tf.Tensor, training: bool | None) -> tf.Tensor:
    for layer in layers:
        x = layer(x, training=training) if isinstance(layer, tf.keras.layers.Dropout) else layer(x)
    return x


class MixtureOfExperts(tf.keras.layers.Layer):
    """MMoE (Ma et al. 2018): shared experts; each task mixes them with its own softmax gate.

    x [B, F] -> {task: [B, E_out]}.
    """

    def __init__(self, tasks: Sequence[str], num_experts: int, expert_units: Sequence[int], dropout: float,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.experts = [_mlp(expert_units, dropout, f"expert_{e}") for e in range(num_experts)]
        self.gates = {task: tf.keras.layers.Dense(num_experts, activation="softmax", name=f"gate_{task}")
                      for task in tasks}

    def call(self, x: tf.Tensor, training: bool | None = None) -> dict[str, tf.Tensor]:
        experts = tf.stack([_run(expert, x, training) for expert in self.experts], axis=1)  # [B, E, U]
        return {task: tf.einsum("be,beu->bu", gate(x), experts) for task, gate in self.gates.items()}


class RatedHistoryAttention(tf.keras.layers.Layer):
    """The user's rated history, pooled with attention to the candidate item (DIN, Zhou et al. 2018).

    history [B, H] item ids ("" = padding), ratings [B, H], candidate ids [B] -> [B, 2·d + 3]: the attended item
    embedding, the attended rating-deviation-weighted embedding, the attended rating deviation, the mean
    deviation, and log(1 + history size). Deviations are from the training mean rating.
    """

    def __init__(self, item_vocabulary: Sequence[str], dim: int, *, rating_mean: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.lookup = tf.keras.layers.StringLookup(vocabulary=list(item_vocabulary), num_oov_indices=1)
        self.embedding = tf.keras.layers.Embedding(len(item_vocabulary) + 1, dim)
        self.rating_mean = float(rating_mean)
        self.scale = float(dim) ** -0.5

    def call(self, history: tf.Tensor, ratings: tf.Tensor, item_ids: tf.Tensor) -> tf.Tensor:
        present = tf.cast(tf.not_equal(history, ""), tf.float32)  # [B, H]
        items = self.embedding(self.lookup(history))  # [B, H, d]
        candidate = self.embedding(self.lookup(item_ids))  # [B, d]
        logits = tf.einsum("bhd,bd->bh", items, candidate) * self.scale
        weights = tf.nn.softmax(logits + (present - 1.0) * 1e9, axis=-1) * present  # all-padding rows -> 0
        ratings = tf.cast(ratings, tf.float32)
        known = present * tf.cast(tf.math.is_finite(ratings), tf.float32)  # a missing label deviates by 0
        deviation = tf.where(known > 0, ratings - self.rating_mean, 0.0)
        count = tf.reduce_sum(present, axis=-1, keepdims=True)
        return tf.concat([
            tf.einsum("bh,bhd->bd", weights, items),
            tf.einsum("bh,bhd->bd", weights * deviation, items),
            tf.reduce_sum(weights * deviation, axis=-1, keepdims=True),
            tf.reduce_sum(deviation, axis=-1, keepdims=True) / tf.maximum(count, 1.0),
            tf.math.log1p(count),
        ], axis=-1)


class RankingHeads(tf.keras.layers.Layer):
    """(user, item) representations -> one output per binary or regression task [B], over a shared bottom or MMoE.

    A regression head adds its target's training mean and, with ``rating_biases``, a user bias and an item bias
    (looked up by raw id) to its MLP output: the biases carry most of a rating's signal and the MLP learns the
    interaction. A binary head outputs a logit.
    """

    def __init__(self, config: RankingConfig, tasks: Sequence[tuple[str, str, float]], *,
                 user_vocabulary: Sequence[str], item_vocabulary: Sequence[str], rating_mean: float = 0.0,
                 rated_history: bool = False, id_biases: Sequence[str] = ("user", "item"), **kwargs: Any) -> None:
        """``tasks``: (name, "binary" | "regression", the regression target's training mean) per head."""
        super().__init__(**kwargs)
        # === Layers ===
        self.tasks = tuple(name for name, _, _ in tasks)
        if config.bottom == "mmoe":
            self.mixture = MixtureOfExperts(self.tasks, config.num_experts, config.expert_units, config.dropout)
        else:
            self.bottom = _mlp(config.hidden_units, config.dropout, "bottom")
        self.heads = {task: _mlp(config.head_units, config.dropout, f"{task}_head") +
                      [tf.keras.layers.Dense(1, name=f"{task}_output")] for task in self.tasks}
        self.means = {name: float(mean) for name, kind, mean in tasks if kind == "regression"}
        # One bias per id and regression task, on the sides in ``id_biases`` (a side whose ids are not a feature
        # gets none).
        biased = [name for name in self.means] if config.rating_biases else []
        self.user_lookup = self.item_lookup = None
        if biased and "user" in id_biases:
            self.user_lookup = tf.keras.layers.StringLookup(vocabulary=list(user_vocabulary), num_oov_indices=1)
        if biased and "item" in id_biases:
            self.item_lookup = tf.keras.layers.StringLookup(vocabulary=list(item_vocabulary), num_oov_indices=1)
        self.user_biases = {name: tf.keras.layers.Embedding(len(user_vocabulary) + 1, 1,
                                                            embeddings_initializer="zeros", name=f"{name}_user_bias")
                            for name in biased} if self.user_lookup is not None else {}
        self.item_biases = {name: tf.keras.layers.Embedding(len(item_vocabulary) + 1, 1,
                                                            embeddings_initializer="zeros", name=f"{name}_item_bias")
                            for name in biased} if self.item_lookup is not None else {}
        self.history_attention = (RatedHistoryAttention(item_vocabulary, config.history_dim,
                                                        rating_mean=rating_mean)
                                  if config.history_attention and rated_history else None)
        # === Config ===
        self.config = config

    def call(self, users: tf.Tensor, items: tf.Tensor, user_ids: tf.Tensor, item_ids: tf.Tensor,
             history: tuple[tf.Tensor, tf.Tensor] | None = None,
             training: bool | None = None) -> dict[str, tf.Tensor]:
        """users [B, D], items [B, D] (tower outputs), ids [B], (history [B, H], its labels [B, H]) ->
        {task: [B]}: a regression task's value (in its trained units), a binary task's logit."""
        parts = [users, items, users * items]
        if self.history_attention is not None:
            if history is None:
                raise ValueError("these ranking heads read the rated history: pass history=(items, ratings)")
            parts.append(self.history_attention(history[0], history[1], item_ids))
        x = tf.concat(parts, axis=-1)
        if self.config.bottom == "mmoe":
            shared = self.mixture(x, training=training)
        else:
            bottom = _run(self.bottom, x, training)
            shared = {task: bottom for task in self.tasks}
        outputs = {task: tf.squeeze(_run(self.heads[task], shared[task], training), -1) for task in self.tasks}
        user_index = self.user_lookup(user_ids) if self.user_lookup is not None else None
        item_index = self.item_lookup(item_ids) if self.item_lookup is not None else None
        for task, mean in self.means.items():
            value = outputs[task] + mean
            if task in self.user_biases:
                value += tf.squeeze(self.user_biases[task](user_index), -1)
            if task in self.item_biases:
                value += tf.squeeze(self.item_biases[task](item_index), -1)
            outputs[task] = value
        return outputs


class _ContentHead(tf.keras.layers.Layer):
    """An item's content [B, F] -> ``units`` outputs: a linear layer over the layer-normalised content, behind
    optional dropout. The normalisation puts the encoder's small coordinates on the scale the optimizer's steps are
    made for; dropout holds back a head that sees every training item's content each epoch (it memorises them
    without)."""

    def __init__(self, units: int, output_name: str, *, dropout: float = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.normalization = tf.keras.layers.LayerNormalization(name="content_normalization")
        self.dropout = tf.keras.layers.Dropout(dropout)
        self.output_layer = tf.keras.layers.Dense(units, name=output_name)

    def call(self, content: tf.Tensor, training: bool | None = None) -> tf.Tensor:
        return self.output_layer(self.dropout(self.normalization(content), training=training))

    def output_inputs(self, content: tf.Tensor) -> tf.Tensor:
        """What the output layer reads outside training [B, F]: the normalised content (no dropout then)."""
        return self.normalization(content)

    def set_output(self, weights: np.ndarray) -> None:
        """Replaces the output layer's weights by ``weights`` [F + 1, units], the bias last (a refit)."""
        self.output_layer.kernel.assign(np.asarray(weights[:-1], np.float32))
        self.output_layer.bias.assign(np.asarray(weights[-1], np.float32))


class GenreHead(_ContentHead):
    """An item's content [B, F] -> logits [B, G] of a multi-valued feature (e.g. genres; multi-label), with
    multi-hot targets from padded lists."""

    def __init__(self, genres: Sequence[str], *, dropout: float = 0.0, **kwargs: Any) -> None:
        super().__init__(len(genres), "genre_logits", dropout=dropout, **kwargs)
        self.genres = tuple(genres)
        self.lookup = tf.keras.layers.StringLookup(vocabulary=list(genres), num_oov_indices=1)

    def targets(self, genre_lists: tf.Tensor) -> tf.Tensor:
        """Padded genre lists [B, W] -> multi-hot [B, G] (unknown genres and padding dropped)."""
        index = self.lookup(genre_lists)  # 0 = padding or unknown
        hot = tf.reduce_max(tf.one_hot(index, len(self.genres) + 1), axis=1)
        return hot[:, 1:]

    def loss(self, logits: tf.Tensor, genre_lists: tf.Tensor) -> tf.Tensor:
        """Sigmoid cross-entropy, a mean over items and values."""
        return tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=self.targets(genre_lists),
                                                                      logits=logits))

    def predict(self, logits: tf.Tensor) -> tf.Tensor:
        return tf.sigmoid(logits)

    def fit_targets(self, genre_lists: tf.Tensor) -> tf.Tensor:
        """What the output layer is fitted to: multi-hot [B, G]."""
        return self.targets(genre_lists)


class NumericContentHead(_ContentHead):
    """An item's content [B, F] -> a numeric item feature [B] (e.g. a duration or a price), trained on the feature
    standardised with the training items' ``mean`` and ``scale``; an item whose value is missing is left out of the
    loss."""

    def __init__(self, mean: float, scale: float, *, dropout: float = 0.0, **kwargs: Any) -> None:
        super().__init__(1, "content_value", dropout=dropout, **kwargs)
        self.mean, self.scale = float(mean), float(scale)

    def call(self, content: tf.Tensor, training: bool | None = None) -> tf.Tensor:
        """Standardised predictions [B]."""
        return tf.squeeze(super().call(content, training=training), -1)

    def loss(self, standardised: tf.Tensor, values: tf.Tensor) -> tf.Tensor:
        """Mean squared error in standard units over the items whose value is known (0 when none is)."""
        values = tf.cast(values, tf.float32)
        known = tf.math.is_finite(values)
        target = (tf.where(known, values, self.mean) - self.mean) / self.scale
        squared = tf.where(known, tf.square(standardised - target), 0.0)
        return tf.math.divide_no_nan(tf.reduce_sum(squared), tf.reduce_sum(tf.cast(known, tf.float32)))

    def predict(self, standardised: tf.Tensor) -> tf.Tensor:
        """The feature's value in its own units [B]."""
        return standardised * self.scale + self.mean

    def fit_targets(self, values: tf.Tensor) -> tf.Tensor:
        """What the output layer is fitted to: the values in standard units [B], NaN where unknown."""
        values = tf.cast(values, tf.float32)
        return tf.where(tf.math.is_finite(values), (values - self.mean) / self.scale, float("nan"))


# === Loss weighting ===

class LossWeighting(tf.keras.layers.Layer):
    """Per-task losses -> total; also reports each task's effective weight.

    ``static``: total = Σ_t w_t · L_t.
    ``uncertainty`` (Kendall, Gal & Cipolla 2018) with a learned s_t = log σ_t²:
    total = Σ_t w_t · (c_t · exp(-s_t) · L_t + s_t / 2), c_t = 1/2 for regression tasks, 1 otherwise.
    The effective weight of task t is w_t · c_t · exp(-s_t).
    """

    def __init__(self, weights: dict[str, float], strategy: str, *, regression: Sequence[str] = (),
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.static = {task: float(w) for task, w in weights.items()}
        self.strategy = strategy
        # Kendall et al. (2018): a Gaussian likelihood gives 1/(2σ²)·L + log σ, a softmax/Bernoulli 1/σ²·L + log σ.
        self.scales = {task: 0.5 if task in regression else 1.0 for task in weights}
        self.log_variances = {task: self.add_weight(name=f"log_variance_{task}", shape=(), initializer="zeros",
                                                    trainable=True)
                              for task in weights} if strategy == "uncertainty" else {}

    def effective_weights(self) -> dict[str, tf.Tensor]:
        if self.strategy == "static":
            return {task: tf.constant(w) for task, w in self.static.items()}
        return {task: w * self.scales[task] * tf.exp(-self.log_variances[task])
                for task, w in self.static.items()}

    def call(self, losses: dict[str, tf.Tensor]) -> tf.Tensor:
        weights = self.effective_weights()
        total = tf.add_n([weights[task] * loss for task, loss in losses.items()])
        if self.strategy == "uncertainty":
            total += tf.add_n([self.static[task] * self.log_variances[task] / 2 for task in losses])
        return total
