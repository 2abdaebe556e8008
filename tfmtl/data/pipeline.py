"""``tf.data`` pipelines of raw feature dicts, and the vocabularies a model looks them up in.

Features stay raw (string ids, string categories, padded string lists, floats, precomputed vectors) so that the
model does its own lookups in-graph and serving takes the same raw values. Feature keys are the column names.
"""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd

from tfmtl.data.interactions import ITEM_ID, TIMESTAMP, USER_ID, InteractionData
from tfmtl.data.vectors import vector_array
from tfmtl.data.vocab import Vocabulary

PAD = ""


def build_vocabularies(data: InteractionData, rows: np.ndarray) -> dict[str, Vocabulary]:
    """Vocabularies of ids and categorical features, from the given (training) rows only."""
    joined = data.joined(rows)
    names = [USER_ID, ITEM_ID, *data.item_features.categorical, *data.item_features.multi_valued,
             *data.user_features.categorical, *data.user_features.multi_valued]
    return {name: Vocabulary.build(name, joined[name]) for name in names}


def multi_valued_widths(data: InteractionData) -> dict[str, int]:
    """Padding width per multi-valued column: its longest list in the item or user table."""
    widths = {}
    for table, columns in ((data.items, data.item_features.multi_valued),
                           (data.users, data.user_features.multi_valued)):
        for column in columns:
            widths[column] = max(1, int(table[column].map(len).max()))
    return widths


def feature_arrays(frame: pd.DataFrame, data: InteractionData, *, include_labels: bool = True) -> dict[str, np.ndarray]:
    """Column arrays for ``tf.data``: strings, padded string lists [N, W], float32 numbers, float32 vectors [N, dim]
    (zeros where missing) and labels."""
    widths = multi_valued_widths(data)
    arrays: dict[str, np.ndarray] = {}
    for features, table in ((data.item_features, data.items), (data.user_features, data.users)):
        if not set(features.all) <= set(frame):
            continue  # e.g. the item table alone carries no user columns
        for column in features.text + features.categorical:
            arrays[column] = frame[column].fillna(PAD).astype(str).to_numpy(dtype=object)
        for column in features.multi_valued:
            arrays[column] = _pad(frame[column], widths[column])
        for column in features.numeric:
            fill = numeric_fill(table, column)
            arrays[column] = frame[column].astype("float32").fillna(fill).to_numpy(np.float32)
        for column, dim in features.vector.items():
            arrays[column] = vector_array(frame[column], dim)
    for column in (USER_ID, ITEM_ID):
        if column in frame:
            arrays[column] = frame[column].astype(str).to_numpy(dtype=object)
    if include_labels:
        for label in data.labels:
            arrays[label] = frame[label].to_numpy(np.float32)
        if TIMESTAMP in frame:
            arrays[TIMESTAMP] = frame[TIMESTAMP].to_numpy(np.int64)
    return arrays


def numeric_fill(table: pd.DataFrame, column: str) -> float:
    """What a missing number becomes: its table's mean (the same for every split and at serving), else 0."""
    mean = table[column].astype("float64").mean()
    return float(mean) if np.isfinite(mean) else 0.0


def _pad(series: pd.Series, width: int) -> np.ndarray:
    out = np.full((len(series), width), PAD, dtype=object)
    for row, values in enumerate(series):
        if isinstance(values, (tuple, list, np.ndarray)):
            kept = [str(v) for v in values][:width]
            out[row, : len(kept)] = kept
    return out


def make_dataset(arrays: dict[str, np.ndarray], *, batch_size: int, shuffle: bool = False, seed: int = 0,
                 drop_remainder: bool = False):  # type: ignore[no-untyped-def]
    """Batches of feature dicts; shuffling is seeded and reshuffles each epoch; prefetched."""
    import tensorflow as tf

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    dataset = tf.data.Dataset.from_tensor_slices(arrays)
    if shuffle:
        size = len(next(iter(arrays.values())))
        dataset = dataset.shuffle(size, seed=seed, reshuffle_each_iteration=True)
    return dataset.batch(batch_size, drop_remainder=drop_remainder).prefetch(tf.data.AUTOTUNE)


def epoch_batches(arrays: dict[str, np.ndarray], *, batch_size: int, seed: int, first_epoch: int,
                  epochs: int):  # type: ignore[no-untyped-def]
    """Shuffled batches of epochs ``first_epoch .. epochs-1``, one epoch after another.

    Epoch e's order depends only on (seed, e), not on how many epochs this process has run, so a run resumed at
    epoch e sees exactly the batches an uninterrupted run would.
    """
    import tensorflow as tf

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    rows = tf.data.Dataset.from_tensor_slices(arrays)
    size = len(next(iter(arrays.values())))
    # One dataset per epoch with a Python-int seed: a tensor seed breaks TF's seed logic when the global seed is 0.
    epochs_of_batches = [rows.shuffle(size, seed=seed * 7919 + number, reshuffle_each_iteration=False)
                         .batch(batch_size) for number in range(first_epoch, epochs)]
    if not epochs_of_batches:
        return rows.take(0).batch(batch_size)
    return functools.reduce(lambda a, b: a.concatenate(b), epochs_of_batches).prefetch(tf.data.AUTOTUNE)


def interaction_dataset(data: InteractionData, rows: np.ndarray, *, batch_size: int, shuffle: bool = False,
                        seed: int = 0, drop_remainder: bool = False):  # type: ignore[no-untyped-def]
    """Interactions at ``rows`` joined with their item and user features."""
    return make_dataset(feature_arrays(data.joined(rows), data), batch_size=batch_size, shuffle=shuffle,
                        seed=seed, drop_remainder=drop_remainder)


def item_dataset(data: InteractionData, *, batch_size: int):  # type: ignore[no-untyped-def]
    """The whole item catalog, one row per item, in table order."""
    return make_dataset(feature_arrays(data.items, data, include_labels=False), batch_size=batch_size)
