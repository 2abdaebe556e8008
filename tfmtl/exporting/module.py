"""The serving ``tf.Module``: only the inference parts of a trained model, with the wire contract's signatures.

It holds the towers and ranking heads (never the ``tfrs.Model``, whose tasks cannot be serialised), a snapshot of
the known users and items (:class:`FeatureStore`), and the catalog's item embeddings computed once at export, so
``retrieve`` runs only the user tower and one matmul + top-k; ``item_embedding`` and ``rank`` run the item tower
(and the text encoder) only for items the snapshot does not cover.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import tensorflow as tf

from tfmtl.config import RequestLimits
from tfmtl.data.history import HISTORY
from tfmtl.data.pipeline import make_dataset
from tfmtl.features import FeatureSpace
from tfmtl.model import MultiTaskRecommender
from tfmtl.serving import signatures as wire


class FeatureStore(tf.Module):
    """Known entities' features by id: fills a request's missing values (see ``serving.signatures``).

    ``columns``: name -> array [N] (strings or float32) or [N, W] (string lists) or [N, dim] (float32 vectors),
    row n for ``ids[n]``.
    ``defaults``: numeric or vector column -> the value for an unknown id's missing number (or vector's numbers).
    A vector is missing when its whole row is NaN (see ``serving.signatures``).
    """

    def __init__(self, ids: np.ndarray, columns: Mapping[str, np.ndarray], defaults: Mapping[str, float],
                 name: str) -> None:
        super().__init__(name=name)
        keys = np.asarray(ids).astype(str)
        self.size = len(keys)
        self.index = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(tf.constant(keys if len(keys) else [""], tf.string),
                                                tf.range(max(1, len(keys)), dtype=tf.int64)),
            default_value=-1)
        self.values = {column: tf.Variable(_tensor(array), trainable=False, name=column)
                       for column, array in columns.items()}
        self.defaults = {column: float(value) for column, value in defaults.items()}

    def rows(self, ids: tf.Tensor) -> tf.Tensor:
        """ids (any shape) -> row numbers, -1 for unknown ids (and for "", which is never an id)."""
        if not self.size:
            return tf.fill(tf.shape(ids, out_type=tf.int64), tf.constant(-1, tf.int64))
        found = self.index.lookup(ids)
        return tf.where(tf.equal(ids, wire.MISSING_STRING), tf.constant(-1, tf.int64), found)

    def stored(self, column: str, rows: tf.Tensor) -> tf.Tensor:
        """The snapshot's values at ``rows`` (-1 -> padding/zero)."""
        table = self.values[column]
        values = tf.gather(table, tf.maximum(rows, 0))
        known = _expand(rows >= 0, values.shape.rank)
        return tf.where(known, values, tf.zeros_like(values) if table.dtype != tf.string else tf.fill(
            tf.shape(values), wire.PAD))

    def fill(self, features: Mapping[str, tf.Tensor], rows: tf.Tensor) -> dict[str, tf.Tensor]:
        """Missing values of known rows from the snapshot; unknown rows' missing numbers get their default."""
        out = dict(features)
        known = rows >= 0
        for column in (*self.values, *(c for c in self.defaults if c not in self.values)):
            if column not in features:
                continue
            value = features[column]
            if column not in self.values:  # not in the snapshot: a missing number gets its default
                default = tf.fill(tf.shape(value), tf.constant(self.defaults[column], value.dtype))
                out[column] = tf.where(_missing_numbers(value, rows), default, value)
                continue
            stored = self.stored(column, rows)
            if value.dtype == tf.string and value.shape.rank == rows.shape.rank:
                out[column] = tf.where(known & tf.equal(value, wire.MISSING_STRING), stored, value)
            elif value.dtype == tf.string:  # lists [..., W]: a row of "" is missing
                value, stored = _same_width(value, stored)
                missing = tf.reduce_all(tf.equal(value, wire.PAD), axis=-1)
                out[column] = tf.where((known & missing)[..., tf.newaxis], stored, value)
            else:
                default = tf.fill(tf.shape(value), tf.constant(self.defaults.get(column, 0.0), value.dtype))
                filled = tf.where(_expand(known, value.shape.rank), tf.cast(stored, value.dtype), default)
                out[column] = tf.where(_missing_numbers(value, rows), filled, value)
        return out

    def sent(self, features: Mapping[str, tf.Tensor], rows: tf.Tensor) -> tf.Tensor:
        """Per row: whether any stored column was sent with a value (not missing)."""
        sent = tf.zeros_like(rows, dtype=tf.bool)
        for column in self.values:
            value = features.get(column)
            if value is None:
                continue
            if value.dtype == tf.string and value.shape.rank == rows.shape.rank:
                sent |= tf.not_equal(value, wire.MISSING_STRING)
            elif value.dtype == tf.string:
                sent |= tf.reduce_any(tf.not_equal(value, wire.PAD), axis=-1)
            else:
                sent |= ~tf.reshape(_missing_numbers(value, rows), tf.shape(rows))
        return sent


class _Untracked:
    """Plain holder: the training model stays out of the saved object graph."""

    def __init__(self, model: MultiTaskRecommender) -> None:
        self.model = model


class ServingModule(tf.Module):
    """Signatures of ``serving.signatures`` over a trained model; see :func:`build_serving_module`."""

    def __init__(self, model: MultiTaskRecommender, *, users: FeatureStore, items: FeatureStore,
                 catalog_outputs: np.ndarray, max_k: int, limits: RequestLimits | None = None) -> None:
        super().__init__(name="tfmtl_serving")
        space = model.space
        # === Layers ===
        self.user_tower = model.user_tower
        self.item_tower = model.item_tower
        self.ranking_heads = model.ranking_heads
        self.users = users
        self.items = items
        self.catalog_outputs = tf.Variable(catalog_outputs, trainable=False, name="catalog_outputs")  # [I, D]
        self.catalog_embeddings = tf.Variable(model.normalize(tf.constant(catalog_outputs)), trainable=False,
                                              name="catalog_embeddings")
        # === Config ===
        self._untracked = _Untracked(model)
        self.space = space
        self.max_k = int(max_k)
        self.limits = limits or RequestLimits()
        self.title_column = space.item_text[0] if space.item_text else None

    @property
    def model(self) -> MultiTaskRecommender:
        return self._untracked.model

    # --- the two towers, with the snapshot filling missing values ---

    @property
    def history_fallback(self) -> str:
        """What a row that sends no history gets: the snapshot's history of a known user, or none."""
        return "snapshot" if HISTORY in self.users.values else "none"

    def user_features(self, inputs: Mapping[str, tf.Tensor]) -> tuple[dict[str, tf.Tensor], tf.Tensor]:
        """Request user features [B] -> the user tower's features (missing values filled, the history the row
        sent or else the fallback) and ``history_dropped`` [B]."""
        rows = self.users.rows(inputs[wire.USER_ID])
        features = self.users.fill(inputs, rows)
        dropped = tf.zeros(tf.shape(rows), tf.int32)
        if self.space.history_length:
            history, dropped = newest_items(inputs[wire.HISTORY_ITEM_IDS], self.space.history_length)
            sent = tf.reduce_any(tf.not_equal(history, wire.PAD), axis=1, keepdims=True)
            fallback = (self.users.stored(HISTORY, rows) if self.history_fallback == "snapshot"
                        else tf.fill(tf.shape(history), wire.PAD))
            features[HISTORY] = tf.where(sent, history, fallback)
        return features, dropped

    def user_outputs(self, inputs: Mapping[str, tf.Tensor]) -> tuple[tf.Tensor, tf.Tensor]:
        """User features [B] -> (user tower outputs [B, D], history_dropped [B])."""
        features, dropped = self.user_features(inputs)
        return self.user_tower(features, training=False), dropped

    def item_outputs(self, inputs: Mapping[str, tf.Tensor]) -> tf.Tensor:
        """Item features [N] -> item tower outputs [N, D]: precomputed for catalog items sent by id alone."""
        rows = self.items.rows(inputs[wire.ITEM_ID])
        cached = (rows >= 0) & ~self.items.sent(inputs, rows)
        precomputed = tf.gather(self.catalog_outputs, tf.maximum(rows, 0))

        def compute() -> tf.Tensor:
            computed = self.item_tower(self.items.fill(inputs, rows), training=False)
            return tf.where(cached[:, tf.newaxis], precomputed, computed)

        return tf.cond(tf.reduce_all(cached), lambda: precomputed, compute)

    # --- signatures ---

    def retrieve(self, **inputs: tf.Tensor) -> dict[str, tf.Tensor]:
        k = inputs.pop(wire.K)
        users, dropped = self.user_outputs(inputs)
        scores = tf.matmul(self.model.normalize(users), self.catalog_embeddings, transpose_b=True)
        return self._with_dropped(self._top_k(scores, k), dropped)

    def retrieve_excluding(self, **inputs: tf.Tensor) -> dict[str, tf.Tensor]:
        k, excluded = inputs.pop(wire.K), inputs.pop(wire.EXCLUDE_ITEM_IDS)
        features, dropped = self.user_features(inputs)
        if self.space.history_length:
            exclude_history = inputs.pop(wire.EXCLUDE_HISTORY)[:, tf.newaxis]
            sent, read = _same_width(inputs[wire.HISTORY_ITEM_IDS], features[HISTORY])
            excluded, history = _same_width(excluded, tf.concat([sent, read], axis=1))
            excluded = tf.concat([excluded, tf.where(exclude_history, history, wire.PAD)], axis=1)
        users = self.model.normalize(self.user_tower(features, training=False))
        scores = tf.matmul(users, self.catalog_embeddings, transpose_b=True)
        rows = self.items.rows(excluded)  # [B, M]; "" and unknown ids -> -1, ignored
        where = tf.where(rows >= 0)
        columns = tf.stack([where[:, 0], tf.gather_nd(rows, where)], axis=1)
        hits = tf.scatter_nd(columns, tf.ones(tf.shape(columns)[:1], tf.int32), tf.shape(scores, tf.int64))
        return self._with_dropped(self._top_k(tf.where(hits > 0, tf.constant(-np.inf, scores.dtype), scores), k),
                                  dropped)

    def rank(self, **inputs: tf.Tensor) -> dict[str, tf.Tensor]:
        user_keys = {f.name for f in wire.user_inputs(self.space)}
        user_inputs = {key: value for key, value in inputs.items() if key in user_keys}
        candidates = {key: value for key, value in inputs.items() if key not in user_keys}
        ids = candidates[wire.ITEM_ID]  # [B, C]
        batch, count = tf.shape(ids)[0], tf.shape(ids)[1]
        flat = {key: tf.reshape(value, tf.concat([[-1], tf.shape(value)[2:]], 0)) for key, value in candidates.items()}
        items = self.item_outputs(flat)  # [B·C, D]
        users, dropped = self.user_outputs(user_inputs)
        users = tf.repeat(users, count, axis=0)
        user_ids = tf.repeat(user_inputs[wire.USER_ID], count, axis=0)
        outputs = self.model.rank_tower_outputs(users, items, user_ids, flat[wire.ITEM_ID], training=False)
        if wire.RETRIEVAL_SCORE in wire.rank_outputs(self.space):
            outputs[wire.RETRIEVAL_SCORE] = tf.reduce_sum(self.model.normalize(users) * self.model.normalize(items),
                                                          axis=-1)
        return self._with_dropped({key: tf.reshape(value, [batch, count]) for key, value in outputs.items()},
                                  dropped)

    def user_embedding(self, **inputs: tf.Tensor) -> dict[str, tf.Tensor]:
        users, dropped = self.user_outputs(inputs)
        return self._with_dropped({wire.USER_EMBEDDING_OUTPUT: self.model.normalize(users)}, dropped)

    def item_embedding(self, **inputs: tf.Tensor) -> dict[str, tf.Tensor]:
        return {wire.ITEM_EMBEDDING_OUTPUT: self.model.normalize(self.item_outputs(inputs))}

    def _bounded(self, name: str, fields: list[wire.Field]) -> Any:
        """Signature ``name``, checking its inputs against ``limits`` first (a closure: any key may be an input)."""
        def call(**inputs: tf.Tensor) -> Any:
            return getattr(self, name)(**self._within_limits(name, fields, inputs))

        call.__name__ = name
        return call

    def _within_limits(self, name: str, fields: list[wire.Field], inputs: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        """The inputs, after assertions (INVALID_ARGUMENT in TF Serving) that the request is within ``limits``."""
        limits = self.limits
        user_keys = {f.name for f in wire.user_inputs(self.space)}
        vectors = wire.vector_inputs(self.space)
        checks = []

        def at_most(value: tf.Tensor, limit: int, key: str, what: str, field: str) -> None:
            checks.append(tf.debugging.assert_less_equal(
                tf.cast(value, tf.int64), tf.constant(limit, tf.int64),
                message=f"input {key}: {what} over the limit of {limit} of this export (manifest limits.{field})"))

        for field in fields:
            value = inputs[field.name]
            shape = tf.shape(value, out_type=tf.int64)
            at_most(shape[0], limits.max_batch, field.name, "rows", "max_batch")
            rank = len(field.shape)
            if field.name == wire.EXCLUDE_ITEM_IDS:
                at_most(shape[1], limits.max_exclusions, field.name, "exclusions per row", "max_exclusions")
            elif field.name == wire.HISTORY_ITEM_IDS:
                at_most(shape[1], limits.max_history, field.name, "history items per row", "max_history")
            elif name == wire.RANK and field.name not in user_keys:
                at_most(shape[1], limits.max_candidates, field.name, "candidates per row", "max_candidates")
                if field.name == wire.ITEM_ID:
                    at_most(shape[0] * shape[1], limits.max_rank_items, field.name, "candidates in the request",
                            "max_rank_items")
                if rank == 3 and field.name not in vectors:
                    at_most(shape[2], limits.max_list_width, field.name, "values per list", "max_list_width")
            elif rank == 2 and field.name not in vectors:
                at_most(shape[1], limits.max_list_width, field.name, "values per list", "max_list_width")
            if field.name in vectors:
                checks.extend(_vector_checks(value, field.name, vectors[field.name]))
            if field.dtype == "string":
                longest = tf.reduce_max(tf.concat([tf.reshape(tf.strings.length(value), [-1]), [0]], 0))
                at_most(longest, limits.max_string_bytes, field.name, "bytes in a string", "max_string_bytes")
        with tf.control_dependencies(checks):
            return {key: tf.identity(value) for key, value in inputs.items()}

    def _with_dropped(self, outputs: dict[str, tf.Tensor], dropped: tf.Tensor) -> dict[str, tf.Tensor]:
        if self.space.history_length:
            outputs[wire.HISTORY_DROPPED] = dropped
        return outputs

    def _top_k(self, scores: tf.Tensor, k: tf.Tensor) -> dict[str, tf.Tensor]:
        """scores [B, I], k [B] -> the contract's sorted outputs [B, max(k)]; rows past their own k are padding."""
        checks = [tf.debugging.assert_greater_equal(k, 1, message="input k must be >= 1"),
                  tf.debugging.assert_less_equal(k, self.max_k,
                                                 message=f"input k must be <= {self.max_k}, the max_k of this export")]
        with tf.control_dependencies(checks):
            width = tf.maximum(tf.reduce_max(tf.concat([k, [0]], 0)), 0)
        # top_k is stable: equal scores keep catalog order, so results are deterministic.
        values, index = tf.math.top_k(scores, k=width, sorted=True)
        valid = (tf.range(width)[tf.newaxis, :] < k[:, tf.newaxis]) & (values > -np.inf)
        out = {wire.ITEM_IDS: tf.where(valid, tf.gather(self.items.values[_ID], index), wire.PAD),
               wire.SCORES: tf.where(valid, values, tf.zeros_like(values))}
        if self.title_column is not None:
            out[wire.ITEM_TITLES] = tf.where(valid, tf.gather(self.items.values[self.title_column], index), wire.PAD)
        return out

    # --- export ---

    def signatures(self) -> dict[str, Any]:
        """Signature name -> concrete function, with input keys and dtypes from ``serving.signatures``; each checks
        the request against ``limits`` before any work."""
        functions = {}
        for name, fields in wire.signature_inputs(self.space).items():
            specs = {f.name: tf.TensorSpec(f.shape, tf.as_dtype(f.dtype), name=f.name) for f in fields}

            functions[name] = tf.function(self._bounded(name, fields)).get_concrete_function(**specs)
        functions[wire.DEFAULT] = functions.get(wire.RETRIEVE, functions[wire.USER_EMBEDDING])
        return functions


_ID = "ids"  # the item store column that holds the ids themselves (no feature is named so)


def build_serving_module(model: MultiTaskRecommender, *, user_ids: np.ndarray, user_columns: Mapping[str, np.ndarray],
                         user_defaults: Mapping[str, float], item_defaults: Mapping[str, float],
                         max_k: int, batch_size: int = 4096, limits: RequestLimits | None = None) -> ServingModule:
    """The serving module of ``model``: its catalog is ``model.space.catalog``; users are the given snapshot.

    ``user_columns``: the user tower's side features and ``history`` [U, H], row u for ``user_ids[u]``.
    """
    space: FeatureSpace = model.space
    # A vector the request leaves missing, of an entity the snapshot lacks, is read as zeros (as training reads an
    # entity without one).
    user_defaults = {**{c: 0.0 for c in space.user_vector}, **user_defaults}
    item_defaults = {**{c: 0.0 for c in space.item_vector}, **item_defaults}
    if space.rated_history:
        raise ValueError("config field 'model.ranking.history_attention' is on: exporting a model whose ranking "
                         "heads read the rated history is not supported yet; train with it off")
    catalog = space.catalog
    item_columns = {c: catalog[c] for c in model.item_tower.feature_keys if c != wire.ITEM_ID}
    item_columns[_ID] = np.asarray(catalog[wire.ITEM_ID]).astype(str)
    items = FeatureStore(catalog[wire.ITEM_ID], item_columns, item_defaults, name="items")
    users = FeatureStore(user_ids, user_columns, user_defaults, name="users")
    max_k = min(int(max_k), len(item_columns[_ID]))
    if max_k < 1:
        raise ValueError("cannot export a model whose item catalog is empty")
    outputs = catalog_tower_outputs(model, batch_size=batch_size)
    return ServingModule(model, users=users, items=items, catalog_outputs=outputs, max_k=max_k, limits=limits)


def catalog_tower_outputs(model: MultiTaskRecommender, *, batch_size: int = 4096) -> np.ndarray:
    """Item tower outputs [I, D] of every catalog item (inference mode), in catalog order."""
    tower = tf.function(lambda batch: model.item_tower(batch, training=False))
    columns = {c: model.space.catalog[c] for c in model.item_tower.feature_keys}
    return np.concatenate([tower(batch).numpy() for batch in make_dataset(columns, batch_size=batch_size)])


def newest_items(items: tf.Tensor, length: int) -> tuple[tf.Tensor, tf.Tensor]:
    """Item ids [B, W] (oldest first, "" padding anywhere) -> (the newest ``length`` [B, length], newest last and
    padded on the left, as training reads them; how many older ones did not fit [B] int32)."""
    present = tf.not_equal(items, wire.PAD)
    position = tf.range(tf.shape(items, out_type=tf.int64)[1])[tf.newaxis, :]
    # Padding first, then the items in their own order: a stable sort on (is an item, position).
    key = tf.where(present, position + tf.shape(items, out_type=tf.int64)[1], position)
    packed = tf.gather(items, tf.argsort(key, axis=1, stable=True), batch_dims=1)
    newest = tf.pad(packed, [[0, 0], [length, 0]], constant_values=wire.PAD)[:, -length:]
    count = tf.reduce_sum(tf.cast(present, tf.int32), axis=1)
    return newest, tf.maximum(count - length, 0)


def _tensor(array: np.ndarray) -> tf.Tensor:
    array = np.asarray(array)
    if array.dtype == object or array.dtype.kind in "US":
        return tf.constant(array.astype(str).tolist() if array.size else np.zeros(array.shape, dtype=bytes),
                           dtype=tf.string, shape=array.shape)
    return tf.constant(array.astype(np.float32))


def _vector_checks(value: tf.Tensor, key: str, dim: int) -> list[tf.Operation]:
    """Assertions (INVALID_ARGUMENT) that a vector input [..., dim] has this export's dim and that each row is finite
    numbers or all NaN (missing). The dim is checked through the element count, which no graph optimisation can
    fold away the way it may fold the signature's own (static) last dimension."""
    shape = tf.shape(value, out_type=tf.int64)
    rows = tf.reduce_prod(shape[:-1])
    finite_or_missing = tf.reduce_all(tf.math.is_finite(value), axis=-1) | tf.reduce_all(tf.math.is_nan(value), axis=-1)
    return [
        tf.debugging.assert_equal(tf.size(value, out_type=tf.int64), rows * dim,
                                  message=f"input {key}: each row must hold exactly {dim} numbers, this export's "
                                          f"vector dim (manifest vectors)"),
        tf.debugging.assert_equal(tf.reduce_all(finite_or_missing), True,
                                  message=f"input {key}: each row must be {dim} finite numbers, or all NaN for a "
                                          "missing vector"),
    ]


def _missing_numbers(value: tf.Tensor, rows: tf.Tensor) -> tf.Tensor:
    """NaN marks a missing number [..]; a vector [.., dim] is missing when its whole row is NaN ([.., 1])."""
    missing = tf.math.is_nan(value)
    if value.shape.rank == rows.shape.rank:
        return missing
    return tf.reduce_all(missing, axis=-1, keepdims=True)


def _expand(mask: tf.Tensor, rank: int | None) -> tf.Tensor:
    for _ in range((rank or 0) - (mask.shape.rank or 0)):
        mask = mask[..., tf.newaxis]
    return mask


def _same_width(a: tf.Tensor, b: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Pads two string lists [..., Wa], [..., Wb] with "" to the same width."""
    width = tf.maximum(tf.shape(a)[-1], tf.shape(b)[-1])

    def pad(x: tf.Tensor) -> tf.Tensor:
        rank = x.shape.rank
        paddings = tf.concat([tf.zeros([rank - 1, 2], tf.int32), [[0, width - tf.shape(x)[-1]]]], 0)
        return tf.pad(x, paddings, constant_values=wire.PAD)

    return pad(a), pad(b)
