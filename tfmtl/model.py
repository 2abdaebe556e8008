"""The multi-task recommender: towers + tasks, composed in one ``tfrs.Model`` whose only override is the loss."""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf
import tensorflow_recommenders as tfrs

from tfmtl.config import ModelConfig
from tfmtl.data.history import HISTORY, HISTORY_LABELS, NEXT_ITEMS, NEXT_LABELS
from tfmtl.data.interactions import ITEM_ID, USER_ID
from tfmtl.data.pipeline import PAD
from tfmtl.distribute import replica_scale
from tfmtl.encoders.text import TextEncoder
from tfmtl.features import FeatureSpace
from tfmtl.tasks import (
    GENRES,
    LIKE,
    RATING,
    RETRIEVAL,
    GenreHead,
    LossWeighting,
    NextItemRetrieval,
    RankingHeads,
    RetrievalTask,
)
from tfmtl.towers import build_item_tower, build_user_tower

SUM = tf.keras.losses.Reduction.SUM


class MultiTaskRecommender(tfrs.Model):
    """Retrieval, rating, like and genre tasks over a user tower and an item tower with a text encoder.

    Inputs are raw feature dicts (see :class:`FeatureSpace`); the rating label, when present, is read by the
    rating and like tasks only. Losses per task are tracked as ``loss_<task>`` and effective weights as
    ``weight_<task>`` (reported as ``loss/<task>``).
    """

    def __init__(self, config: ModelConfig, space: FeatureSpace, encoder: TextEncoder | None = None, *,
                 per_example_text: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        tasks = config.tasks
        # === Layers ===
        item_tower = build_item_tower(space, config.item_tower, config.embedding_dim, encoder,
                                      per_example_text=per_example_text)
        history_texts = ({column: item_tower.features[column] for column in space.item_text}
                         if config.history_text else None)
        self.user_tower = build_user_tower(space, config.user_tower, config.embedding_dim,
                                           history_pooling=config.history_pooling, history_texts=history_texts,
                                           sequence=config.sequence)
        self.item_tower = item_tower
        self.retrieval_task = RetrievalTask(config.retrieval) if RETRIEVAL in tasks else None
        self.next_item_task = NextItemRetrieval(config.retrieval) if RETRIEVAL in tasks else None
        self.ranking_heads = (RankingHeads(config.ranking, tuple(tasks), rating_mean=space.rating_mean,
                                           user_vocabulary=space.vocabularies[USER_ID],
                                           item_vocabulary=space.vocabularies[ITEM_ID],
                                           id_biases=tuple(side for side, tower in (("user", config.user_tower),
                                                                                    ("item", config.item_tower))
                                                           if tower.id_feature),
                                           rated_history=space.rated_history)
                              if RATING in tasks or LIKE in tasks else None)
        # SUM reductions, divided by the rows by hand: tf-keras refuses its mean inside a tf.distribute strategy.
        self.rating_task = (tfrs.tasks.Ranking(loss=tf.keras.losses.MeanSquaredError(reduction=SUM))
                            if RATING in tasks else None)
        self.like_task = (tfrs.tasks.Ranking(loss=tf.keras.losses.BinaryCrossentropy(from_logits=True, reduction=SUM))
                          if LIKE in tasks else None)
        self.genre_head = GenreHead(space.vocabularies[space.genre_column]) if GENRES in tasks else None
        self.weighting = LossWeighting(dict(tasks), config.loss_weighting)
        self.loss_total_tracker = tf.keras.metrics.Mean(name="loss_total")  # TFRS reports the last batch's loss
        for task in tasks:
            setattr(self, f"loss_{task}_tracker", tf.keras.metrics.Mean(name=f"loss_{task}"))
            setattr(self, f"weight_{task}_tracker", tf.keras.metrics.Mean(name=f"weight_{task}"))

        # The training catalog (items seen in training) is every retrieval row's negatives.
        known = set(space.vocabularies[ITEM_ID])
        rows = np.array([str(i) in known for i in space.catalog[ITEM_ID]], dtype=bool)
        self._catalog = {k: tf.constant(v[rows]) for k, v in space.catalog.items()}
        counts = np.asarray(space.item_counts, dtype=np.float64)
        probability = counts / max(1.0, counts.sum())
        floor = probability[probability > 0].min() if (probability > 0).any() else 1.0
        self._item_index = tf.keras.layers.StringLookup(vocabulary=list(space.vocabularies[ITEM_ID]),
                                                        num_oov_indices=1)
        self._item_probability = tf.constant(np.r_[floor, np.maximum(probability, floor)], tf.float32)
        catalog_ids = [str(i) for i in np.asarray(space.catalog[ITEM_ID])[rows]]
        self._catalog_row = tf.lookup.StaticHashTable(  # item id -> its row of the training catalog
            tf.lookup.KeyValueTensorInitializer(tf.constant(catalog_ids or [""], tf.string),
                                                tf.range(max(1, len(catalog_ids)), dtype=tf.int64)), default_value=-1)

        # === Config ===
        self.config = config
        self.space = space

    # --- inference ---

    def embed_user(self, features: dict[str, tf.Tensor], training: bool | None = False) -> tf.Tensor:
        """User features -> L2-normalised user embeddings [B, D]."""
        return self.normalize(self.user_tower(features, training=training))

    def embed_item(self, features: dict[str, tf.Tensor], training: bool | None = False) -> tf.Tensor:
        """Item features (raw text included) -> L2-normalised item embeddings [B, D]."""
        return self.normalize(self.item_tower(features, training=training))

    def rank(self, features: dict[str, tf.Tensor], training: bool | None = False) -> dict[str, tf.Tensor]:
        """Joined user + item features [B] -> ``rating`` [B] and ``like_probability`` [B] (heads that are on)."""
        if self.ranking_heads is None:
            return {}
        return self.rank_tower_outputs(self.user_tower(features, training=training),
                                       self.item_tower(features, training=training), features[USER_ID],
                                       features[ITEM_ID], history=self._rated_history(features), training=training)

    def rank_tower_outputs(self, users: tf.Tensor, items: tf.Tensor, user_ids: tf.Tensor, item_ids: tf.Tensor, *,
                           history: tuple[tf.Tensor, tf.Tensor] | None = None,
                           training: bool | None = False) -> dict[str, tf.Tensor]:
        """Tower outputs [B, D] and raw ids [B] -> the ranking heads' predictions (see :meth:`rank`)."""
        if self.ranking_heads is None:
            return {}
        outputs = self.ranking_heads(users, items, user_ids, item_ids, history=history, training=training)
        return {("like_probability" if task == LIKE else task): (tf.sigmoid(v) if task == LIKE else v)
                for task, v in outputs.items()}

    def genre_logits(self, features: dict[str, tf.Tensor], training: bool | None = False) -> tf.Tensor:
        """Item features -> genre logits [B, G] from the item's content: the tower sees neither the genres nor the
        item id (which would let it memorise them), so the text and other features must carry them."""
        if self.genre_head is None:
            raise ValueError("the genres task is off in this model")
        hidden = (self.space.genre_column, ITEM_ID)
        return self.genre_head(self.normalize(self.item_tower(features, training=training, drop=hidden)))

    def normalize(self, embeddings: tf.Tensor) -> tf.Tensor:
        """Tower outputs -> embeddings (L2-normalised when ``normalize_embeddings``)."""
        return tf.math.l2_normalize(embeddings, axis=-1) if self.config.normalize_embeddings else embeddings

    def _rated_history(self, features: dict[str, tf.Tensor]) -> tuple[tf.Tensor, tf.Tensor] | None:
        if HISTORY_LABELS not in self.space.user_columns:
            return None
        return features[HISTORY], features[HISTORY_LABELS]

    # --- training ---

    def compute_loss(self, inputs: dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
        losses = self.task_losses(inputs, training=training)
        total = self.weighting(losses)
        for task, weight in self.weighting.effective_weights().items():
            getattr(self, f"loss_{task}_tracker").update_state(losses[task])
            getattr(self, f"weight_{task}_tracker").update_state(weight)
        self.loss_total_tracker.update_state(total)
        scale, _ = replica_scale()  # the optimizer sums replicas' gradients: each returns its share of the mean
        return total * scale

    def task_losses(self, inputs: dict[str, tf.Tensor], training: bool = False) -> dict[str, tf.Tensor]:
        """Unweighted loss per task that is on, each a mean over the batch (of sequence positions, for sequence
        rows: see :meth:`next_item_losses`)."""
        if NEXT_ITEMS in inputs:
            return self.next_item_losses(inputs, training=training)
        users = self.user_tower(inputs, training=training)
        items = self.item_tower(inputs, training=training)
        losses: dict[str, tf.Tensor] = {}
        if self.retrieval_task is not None:
            # Integer ids (equal exactly when the strings are): collectives gather numbers, not strings.
            index = self._item_index(inputs[ITEM_ID])
            catalog = {}
            if self.config.retrieval.negatives == "catalog":
                catalog = {"catalog_embeddings": self.embed_item(self._catalog, training=training),
                           "catalog_ids": self._item_index(self._catalog[ITEM_ID])}
            losses[RETRIEVAL] = self.retrieval_task(
                self.normalize(users), self.normalize(items), index,
                sampling_probability=tf.gather(self._item_probability, index), **catalog)
        if self.ranking_heads is not None:
            label = tf.cast(inputs[self.space.rating_label], tf.float32)
            rows = tf.cast(tf.maximum(tf.shape(label)[0], 1), tf.float32)
            outputs = self.ranking_heads(users, items, inputs[USER_ID], inputs[ITEM_ID],
                                         history=self._rated_history(inputs), training=training)
            if self.rating_task is not None:
                losses[RATING] = self.rating_task(labels=label[:, tf.newaxis],  # [B, 1]: one loss per row
                                                  predictions=outputs[RATING][:, tf.newaxis],
                                                  compute_metrics=False) / rows
            if self.like_task is not None:
                liked = tf.cast(label >= self.config.ranking.like_threshold, tf.float32)
                losses[LIKE] = self.like_task(labels=liked[:, tf.newaxis], predictions=outputs[LIKE][:, tf.newaxis],
                                              compute_metrics=False) / rows
        if self.genre_head is not None:
            targets = self.genre_head.targets(inputs[self.space.genre_column])
            logits = self.genre_logits(inputs, training=training)
            losses[GENRES] = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=targets, logits=logits))
        return losses

    def next_item_losses(self, inputs: dict[str, tf.Tensor], training: bool = False) -> dict[str, tf.Tensor]:
        """The all-positions objective on user sequences (``history`` and ``next_item_ids`` [B, H]): the user tower
        at each position (reading that position and the events before it) is the query for the item that came
        next; the rating and like heads judge that item from the same representation (labels ``next_labels``),
        and the content task reads the batch's distinct target items. Each loss is a mean over positions (the
        content task's over those items)."""
        targets = inputs[NEXT_ITEMS]
        present = tf.not_equal(targets, PAD)
        users = tf.boolean_mask(self.user_tower.call_sequence(inputs, training=training), present)  # [N, D]
        rows = self._catalog_row.lookup(tf.boolean_mask(targets, present))
        distinct, column = tf.unique(rows)
        if self.config.retrieval.negatives == "catalog":
            items = self.item_tower(self._catalog, training=training)  # [I, D]; column = catalog row
            column, log_probability = rows, None
        else:
            items = self.item_tower(self._catalog_rows(distinct), training=training)  # [U, D]
            log_probability = tf.math.log(tf.gather(self._item_probability,
                                                    self._item_index(tf.gather(self._catalog[ITEM_ID], distinct))))
        losses: dict[str, tf.Tensor] = {}
        if self.next_item_task is not None:
            losses[RETRIEVAL] = self.next_item_task(self.normalize(users), self.normalize(items), column,
                                                    log_probability=log_probability)
        if self.ranking_heads is not None:
            label = tf.boolean_mask(inputs[NEXT_LABELS], present)
            user_ids = tf.boolean_mask(tf.repeat(inputs[USER_ID][:, tf.newaxis], tf.shape(targets)[1], axis=1),
                                       present)
            outputs = self.ranking_heads(users, tf.gather(items, column), user_ids,
                                         tf.gather(self._catalog[ITEM_ID], rows), training=training)
            positions = tf.cast(tf.maximum(tf.size(label), 1), tf.float32)
            if self.rating_task is not None:
                losses[RATING] = self.rating_task(labels=label[:, tf.newaxis],
                                                  predictions=outputs[RATING][:, tf.newaxis],
                                                  compute_metrics=False) / positions
            if self.like_task is not None:
                liked = tf.cast(label >= self.config.ranking.like_threshold, tf.float32)
                losses[LIKE] = self.like_task(labels=liked[:, tf.newaxis], predictions=outputs[LIKE][:, tf.newaxis],
                                              compute_metrics=False) / positions
        if self.genre_head is not None:
            features = self._catalog_rows(distinct)
            logits = self.genre_logits(features, training=training)
            losses[GENRES] = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(
                labels=self.genre_head.targets(features[self.space.genre_column]), logits=logits))
        return losses

    def _catalog_rows(self, rows: tf.Tensor) -> dict[str, tf.Tensor]:
        """The item tower's inputs of catalog ``rows``."""
        return {key: tf.gather(values, rows) for key, values in self._catalog.items()}
