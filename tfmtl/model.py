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
from tfmtl.encoders.pretrain import MaskedLanguageModel
from tfmtl.encoders.text import TextEncoder
from tfmtl.features import FeatureSpace
from tfmtl.targets import Target, content_key, target_key, weight_key
from tfmtl.tasks import (
    GenreHead,
    LossWeighting,
    NextItemRetrieval,
    NumericContentHead,
    RankingHeads,
    RetrievalTask,
)
from tfmtl.towers import build_item_tower, build_user_tower

SUM = tf.keras.losses.Reduction.SUM


class MultiTaskRecommender(tfrs.Model):
    """The configured tasks (see :class:`~tfmtl.config.TaskConfig`) over a user tower and an item tower with a text
    encoder: at most one retrieval task, binary and regression heads on (user, item) pairs, and a content task on
    the item's content.

    Inputs are raw feature dicts (see :class:`FeatureSpace`) plus each ranking task's target
    (``target:<task>``, NaN where missing: that row is left out of the task's loss). Losses per task are tracked
    as ``loss_<task>`` and effective weights as ``weight_<task>`` (reported as ``loss/<task>``).
    """

    def __init__(self, config: ModelConfig, space: FeatureSpace, encoder: TextEncoder | None = None, *,
                 per_example_text: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        targets = space.targets
        ranking = [t for t in targets.values() if t.ranking]
        retrieval = next((t for t in targets.values() if t.type == "retrieval"), None)
        content = next((t for t in targets.values() if t.type == "content"), None)
        mlm = next((t for t in targets.values() if t.type == "mlm"), None)
        # === Layers ===
        item_tower = build_item_tower(space, config.item_tower, config.embedding_dim, encoder,
                                      per_example_text=per_example_text)
        history_texts = ({column: item_tower.features[column] for column in space.item_text}
                         if config.history_text else None)
        self.user_tower = build_user_tower(space, config.user_tower, config.embedding_dim,
                                           history_pooling=config.history_pooling, encoder=encoder,
                                           per_example_text=per_example_text, history_texts=history_texts,
                                           sequence=config.sequence)
        self.item_tower = item_tower
        self.retrieval_name = retrieval.name if retrieval is not None else ""
        self.retrieval_task = RetrievalTask(config.retrieval) if retrieval is not None else None
        self.next_item_task = NextItemRetrieval(config.retrieval) if retrieval is not None else None
        self.ranking_heads = (RankingHeads(config.ranking, [(t.name, t.type, t.mean) for t in ranking],
                                           rating_mean=space.rating_mean,
                                           user_vocabulary=space.vocabularies[USER_ID],
                                           item_vocabulary=space.vocabularies[ITEM_ID],
                                           id_biases=tuple(side for side, tower in (("user", config.user_tower),
                                                                                    ("item", config.item_tower))
                                                           if tower.id_feature),
                                           rated_history=space.rated_history)
                              if ranking else None)
        # TFRS ranking tasks, one per head. SUM reductions, divided by the rows by hand: tf-keras refuses its mean
        # inside a tf.distribute strategy. A head conditioned on another (ESMM) is judged on its probability.
        self.ranking_tasks = {t.name: tfrs.tasks.Ranking(loss=(
            tf.keras.losses.MeanSquaredError(reduction=SUM) if t.type == "regression" else
            tf.keras.losses.BinaryCrossentropy(from_logits=not t.given, reduction=SUM))) for t in ranking}
        self.ranking_targets = {t.name: t for t in ranking}
        self.content_name = content.name if content is not None else ""
        dropout = config.tasks[content.name].dropout if content is not None else 0.0
        self.content_head = (None if content is None else
                             NumericContentHead(content.mean, content.scale, dropout=dropout)
                             if space.content_is_numeric else
                             GenreHead(space.vocabularies[space.genre_column], dropout=dropout))
        self.weighting = LossWeighting({name: t.weight for name, t in targets.items()}, config.loss_weighting,
                                       regression=[t.name for t in ranking if t.type == "regression"])
        self.loss_total_tracker = tf.keras.metrics.Mean(name="loss_total")  # TFRS reports the last batch's loss
        for task in targets:
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
        # The content task's items, in the order it reads them (a fixed shuffle: consecutive catalog rows may share
        # a genre or a year).
        self._content_order = tf.constant(np.random.default_rng(0).permutation(max(1, len(catalog_ids))), tf.int64)
        self._content_items_per_step = config.tasks[content.name].items_per_step if content is not None else 0
        # The mlm task reads catalog texts in turn too (another fixed shuffle), masked with the step as the seed.
        self.mlm_name = mlm.name if mlm is not None else ""
        self.masked_lm = None if mlm is None else MaskedLanguageModel(_mlm_encoder(encoder, space), name="masked_lm")
        self._mlm_order = tf.constant(_rows_with_text(space, rows, seed=1) if mlm is not None else [0], tf.int64)
        self._mlm_items_per_step = config.tasks[mlm.name].items_per_step if mlm is not None else 0
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
        """Joined user + item features [B] -> each ranking task's prediction [B] (see :meth:`rank_tower_outputs`)."""
        if self.ranking_heads is None:
            return {}
        return self.rank_tower_outputs(self.user_tower(features, training=training),
                                       self.item_tower(features, training=training), features[USER_ID],
                                       features[ITEM_ID], history=self._rated_history(features), training=training)

    def rank_tower_outputs(self, users: tf.Tensor, items: tf.Tensor, user_ids: tf.Tensor, item_ids: tf.Tensor, *,
                           history: tuple[tf.Tensor, tf.Tensor] | None = None,
                           training: bool | None = False) -> dict[str, tf.Tensor]:
        """Tower outputs [B, D] and raw ids [B] -> ``<task>`` [B] per regression task (in the label's units) and
        ``<task>_probability`` [B] per binary task (times its ``given`` task's probability, ESMM)."""
        if self.ranking_heads is None:
            return {}
        return self._served(self.ranking_heads(users, items, user_ids, item_ids, history=history, training=training))

    def _served(self, outputs: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        probabilities = self._probabilities(outputs)
        served = {}
        for name, target in self.ranking_targets.items():
            if target.type == "binary":
                served[target.output] = probabilities[name]
            else:
                served[target.output] = tf.math.expm1(outputs[name]) if target.transform == "log1p" else outputs[name]
        return served

    def _probabilities(self, outputs: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        """Each binary task's probability: sigmoid(logit), times p(given) along its ``given`` chain."""
        probabilities: dict[str, tf.Tensor] = {}

        def probability(name: str) -> tf.Tensor:
            if name not in probabilities:
                given = self.ranking_targets[name].given
                own = tf.sigmoid(outputs[name])
                probabilities[name] = own * probability(given) if given else own
            return probabilities[name]

        for name, target in self.ranking_targets.items():
            if target.type == "binary":
                probability(name)
        return probabilities

    def content_outputs(self, features: dict[str, tf.Tensor], training: bool | None = False) -> tf.Tensor:
        """Item features -> the content head's outputs (logits [B, G] of a multi-valued feature such as genres, or a
        numeric feature's standardised value [B]) from the item's content: the tower sees neither that feature nor
        the item id (which would let it memorise it), so the text and other features must carry it."""
        return self._content_head()(self._content(features, training), training=training)

    def _content(self, features: dict[str, tf.Tensor], training: bool | None) -> tf.Tensor:
        return self.item_tower.content(features, drop=(self.space.genre_column, ITEM_ID), training=training)

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
            positive = inputs.get(target_key(self.retrieval_name))
            query, candidate, ids = users, items, inputs[ITEM_ID]
            if positive is not None:  # a `positive` condition: the other rows are not retrieval examples
                keep = tf.equal(positive, 1.0)
                query, candidate, ids = (tf.boolean_mask(v, keep) for v in (users, items, ids))
            # Integer ids (equal exactly when the strings are): collectives gather numbers, not strings.
            index = self._item_index(ids)
            catalog = {}
            if self.config.retrieval.negatives == "catalog":
                catalog = {"catalog_embeddings": self.embed_item(self._catalog, training=training),
                           "catalog_ids": self._item_index(self._catalog[ITEM_ID])}
            losses[self.retrieval_name] = self.retrieval_task(
                self.normalize(query), self.normalize(candidate), index,
                sampling_probability=tf.gather(self._item_probability, index), **catalog)
        if self.ranking_heads is not None:
            outputs = self.ranking_heads(users, items, inputs[USER_ID], inputs[ITEM_ID],
                                         history=self._rated_history(inputs), training=training)
            losses.update(self._ranking_losses(outputs, {name: inputs[target_key(name)] for name in outputs},
                                               {name: inputs[weight_key(name)] for name in outputs
                                                if weight_key(name) in inputs}))
        losses.update(self._item_task_losses(training))
        return losses

    def _ranking_losses(self, outputs: dict[str, tf.Tensor], targets: dict[str, tf.Tensor],
                        weights: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        """Each head's loss: the mean over the rows whose target is known (NaN = missing), sample-weighted."""
        probabilities = self._probabilities(outputs)
        losses = {}
        for name, target in self.ranking_targets.items():
            label = tf.cast(targets[name], tf.float32)
            known = tf.math.is_finite(label)
            weight = tf.cast(known, tf.float32) * weights.get(name, 1.0)
            prediction = probabilities[name] if target.given else outputs[name]
            total = self.ranking_tasks[name](labels=tf.where(known, label, 0.0)[:, tf.newaxis],  # [N, 1]: per row
                                             predictions=prediction[:, tf.newaxis], sample_weight=weight,
                                             compute_metrics=False)
            losses[name] = total / tf.maximum(tf.reduce_sum(tf.cast(known, tf.float32)), 1.0)
        return losses

    def next_item_losses(self, inputs: dict[str, tf.Tensor], training: bool = False) -> dict[str, tf.Tensor]:
        """The all-positions objective on user sequences (``history`` and ``next_item_ids`` [B, H]): the user tower
        at each position (reading that position and the events before it) is the query for the item that came
        next; the rating and like heads judge that item from the same representation (labels ``next_labels``),
        and the content task reads its catalog items (:meth:`_content_items`). Each loss is a mean over positions (the
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
            losses[self.retrieval_name] = self.next_item_task(self.normalize(users), self.normalize(items), column,
                                                              log_probability=log_probability)
        if self.ranking_heads is not None:
            label = tf.boolean_mask(inputs[NEXT_LABELS], present)
            user_ids = tf.boolean_mask(tf.repeat(inputs[USER_ID][:, tf.newaxis], tf.shape(targets)[1], axis=1),
                                       present)
            outputs = self.ranking_heads(users, tf.gather(items, column), user_ids,
                                         tf.gather(self._catalog[ITEM_ID], rows), training=training)
            # Every ranking task reads the history's label here (checked when the feature space is built).
            losses.update(self._ranking_losses(outputs, {name: _target_in_graph(target, label)
                                                         for name, target in self.ranking_targets.items()}, {}))
        losses.update(self._item_task_losses(training))
        return losses

    def content_predictions(self, features: dict[str, tf.Tensor]) -> tf.Tensor:
        """What the content task predicts, in the feature's terms: probabilities [B, G] of a multi-valued feature's
        values, or a numeric feature's value [B] in its units."""
        return self._content_head().predict(self.content_outputs(features, training=False))

    def content_fit_set(self, batch_size: int = 4096) -> tuple[np.ndarray, np.ndarray]:
        """The content head's output layer over the training catalog, as a fixed-feature problem: (what the layer
        reads outside training [N, F], what it predicts: multi-hot [N, G] or standard units [N], NaN if unknown)."""
        head = self._content_head()
        column = self.space.genre_column
        size = int(tf.size(self._catalog[ITEM_ID]))
        inputs, targets = [], []
        for start in range(0, size, batch_size):
            items = self._catalog_rows(tf.range(start, min(start + batch_size, size)))
            inputs.append(head.output_inputs(self._content(items, training=False)).numpy())
            values = items[content_key(column)] if self.space.content_is_numeric else items[column]
            targets.append(head.fit_targets(values).numpy())
        return np.concatenate(inputs).astype(np.float64), np.concatenate(targets).astype(np.float64)

    def _content_head(self) -> GenreHead | NumericContentHead:
        if self.content_head is None:
            raise ValueError("this model has no content task")
        return self.content_head

    def _content_loss(self, items: dict[str, tf.Tensor], training: bool | None) -> tf.Tensor:
        column = self.space.genre_column
        values = items[content_key(column)] if self.space.content_is_numeric else items[column]
        return self._content_head().loss(self.content_outputs(items, training=training), values)

    def _item_task_losses(self, training: bool | None) -> dict[str, tf.Tensor]:
        """The tasks about items rather than interactions: content and mlm, each on its catalog items of the step."""
        losses = {}
        if self.content_head is not None:
            losses[self.content_name] = self._content_loss(self._content_items(), training)
        if self.masked_lm is not None:  # every item text column of the step's items
            items = self._items_in_turn(self._mlm_order, self._mlm_items_per_step)
            texts = tf.concat([items[column] for column in self.space.item_text], axis=0)
            masked = self.masked_lm.mask(texts, tf.stack([self._step(), tf.constant(0, tf.int64)]))
            losses[self.mlm_name] = self.masked_lm.loss(masked, training=training)
        return losses

    def _content_items(self) -> dict[str, tf.Tensor]:
        return self._items_in_turn(self._content_order, self._content_items_per_step)

    def _items_in_turn(self, order: tf.Tensor, per_step: int) -> dict[str, tf.Tensor]:
        """The training-catalog items an item task reads at this step: the next ``per_step`` of its fixed shuffle,
        keyed on the optimizer's step so a resumed or distributed run reads the same ones."""
        size = tf.size(order, out_type=tf.int64)
        count = tf.minimum(tf.constant(per_step, tf.int64), size)
        positions = tf.math.floormod(self._step() * count + tf.range(count), size)
        return self._catalog_rows(tf.gather(order, positions))

    def _step(self) -> tf.Tensor:
        return (tf.cast(self.optimizer.iterations, tf.int64) if getattr(self, "optimizer", None) is not None
                else tf.constant(0, tf.int64))

    def _catalog_rows(self, rows: tf.Tensor) -> dict[str, tf.Tensor]:
        """The item tower's inputs of catalog ``rows``."""
        return {key: tf.gather(values, rows) for key, values in self._catalog.items()}


def _rows_with_text(space: FeatureSpace, rows: np.ndarray, *, seed: int) -> np.ndarray:
    """A fixed shuffle of the training catalog's rows whose item has some text (the mlm task's items)."""
    texts = [np.asarray(space.catalog[column], dtype=object)[rows] for column in space.item_text]
    has_text = np.zeros(len(rows), dtype=bool)
    for values in texts:
        has_text |= np.array([isinstance(v, (str, bytes)) and len(v.strip()) > 0 for v in values], dtype=bool)
    chosen = np.flatnonzero(has_text) if has_text.any() else np.arange(max(1, len(rows)))
    return np.random.default_rng(seed).permutation(chosen)


def _mlm_encoder(encoder: TextEncoder | None, space: FeatureSpace) -> TextEncoder:
    if encoder is None or not space.item_text:
        raise ValueError("config field 'model.tasks' declares an mlm task, but the items have no text column for the "
                         "text encoder to read")
    return encoder


def _target_in_graph(target: Target, label: tf.Tensor) -> tf.Tensor:
    """:func:`tfmtl.targets.target_values` on a label tensor (NaN stays missing)."""
    label = tf.cast(label, tf.float32)
    known = tf.math.is_finite(label)
    if target.op:
        compare = {"==": tf.equal, "!=": tf.not_equal, ">=": tf.greater_equal, "<=": tf.less_equal,
                   ">": tf.greater, "<": tf.less}[target.op]
        values = tf.cast(compare(label, target.value), tf.float32)
    elif target.transform == "log1p":
        values = tf.math.log1p(tf.where(known, label, 0.0))
    else:
        values = label
    return tf.where(known, values, float("nan"))
