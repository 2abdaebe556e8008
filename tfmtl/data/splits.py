"""Deterministic train/test splits of the interaction rows (positions into ``data.interactions``)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tfmtl.data.interactions import TIMESTAMP, USER_ID, InteractionData

SPLIT_STRATEGIES = ("tfrs", "time", "leave_last")


@dataclass(frozen=True)
class Split:
    """Row positions of each part, plus what the split decided (e.g. users kept whole in train)."""

    strategy: str
    train: np.ndarray
    test: np.ndarray
    validation: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    notes: dict[str, object] = field(default_factory=dict)

    @property
    def known(self) -> np.ndarray:
        """Train and validation rows: everything observed before the test rows (histories, seen items)."""
        return np.sort(np.concatenate([self.train, self.validation]))

    def summary(self) -> dict[str, object]:
        return {"strategy": self.strategy, "train": int(len(self.train)), "validation": int(len(self.validation)),
                "test": int(len(self.test)), **self.notes}


def tfrs_tutorial_split(num_rows: int, *, train_fraction: float = 0.8, seed: int = 42,
                        buffer_size: int = 100_000) -> Split:
    """The TFRS tutorial protocol, reproduced with the same TensorFlow ops.

    ``tf.random.set_seed(42)``; ``shuffle(100_000, seed=42, reshuffle_each_iteration=False)`` over the rows in
    file order; the first 80% train, the rest test (80,000 / 20,000 on MovieLens-100K). Shuffling indices
    gives the same permutation as shuffling the rows themselves: the op only sees positions.
    """
    import tensorflow as tf

    _check_fraction(train_fraction, "train_fraction")
    tf.random.set_seed(seed)
    order = tf.data.Dataset.range(num_rows).shuffle(buffer_size, seed=seed, reshuffle_each_iteration=False)
    permutation = order.batch(max(1, num_rows)).get_single_element().numpy() if num_rows else np.zeros(0, np.int64)
    cut = int(round(num_rows * train_fraction))
    return Split("tfrs", train=permutation[:cut], test=permutation[cut:],
                 notes={"seed": seed, "buffer_size": buffer_size})


def time_cutoff_split(timestamps: np.ndarray, *, cutoff: int | None = None, quantile: float = 0.8) -> Split:
    """Rows before ``cutoff`` (Unix seconds) train, the rest test; by default the 80% time quantile."""
    timestamps = np.asarray(timestamps)
    if len(timestamps) == 0:
        raise ValueError("time_cutoff_split: there are no rows to split")
    if cutoff is None:
        _check_fraction(quantile, "quantile")
        cutoff = int(np.sort(timestamps, kind="stable")[int(len(timestamps) * quantile)])
    rows = np.arange(len(timestamps), dtype=np.int64)
    before = timestamps < cutoff
    if before.all() or not before.any():
        part = "test" if before.all() else "train"
        raise ValueError(f"time_cutoff_split: cutoff {cutoff} leaves {part} empty (timestamps run from "
                         f"{int(timestamps.min())} to {int(timestamps.max())}); pick another cutoff or quantile")
    return Split("time", train=rows[before], test=rows[~before], notes={"cutoff": int(cutoff)})


def leave_last_n_split(user_ids: np.ndarray, timestamps: np.ndarray, *, n: int = 1) -> Split:
    """Each user's last ``n`` interactions (by time, ties by file order) test, the rest train.

    Users with ``n`` or fewer interactions stay whole in train, so no user is only in test; they are counted.
    """
    if n < 1:
        raise ValueError(f"leave_last_n_split: n must be >= 1, got {n}")
    user_ids, timestamps = np.asarray(user_ids), np.asarray(timestamps)
    rows = np.arange(len(user_ids), dtype=np.int64)
    order = np.lexsort((rows, timestamps, user_ids))  # by user, then time, then file order
    sorted_users = user_ids[order]
    starts = np.r_[0, np.flatnonzero(sorted_users[1:] != sorted_users[:-1]) + 1]
    counts = np.diff(np.r_[starts, len(order)])
    rank_from_end = np.repeat(starts + counts, counts) - np.arange(len(order)) - 1  # 0 = the user's last row
    in_test = (rank_from_end < n) & np.repeat(counts > n, counts)
    test, train = np.sort(order[in_test]), np.sort(order[~in_test])
    return Split("leave_last", train=train, test=test,
                 notes={"n": n, "users_kept_whole_in_train": int((counts <= n).sum())})


def split_interactions(data: InteractionData, strategy: str = "tfrs", **options: object) -> Split:
    """Splits ``data`` by name: ``tfrs`` (tutorial protocol), ``time`` (global cutoff), ``leave_last``."""
    if strategy == "tfrs":
        return tfrs_tutorial_split(len(data.interactions), **options)  # type: ignore[arg-type]
    if strategy in ("time", "leave_last") and not data.has_timestamps:
        raise ValueError(f"split '{strategy}' needs timestamps, and dataset '{data.name}' has none; "
                         "name a timestamp column in the schema or use split 'tfrs'")
    if strategy == "time":
        return time_cutoff_split(data.interactions[TIMESTAMP].to_numpy(), **options)  # type: ignore[arg-type]
    if strategy == "leave_last":
        return leave_last_n_split(data.interactions[USER_ID].to_numpy(), data.interactions[TIMESTAMP].to_numpy(),
                                  **options)  # type: ignore[arg-type]
    raise ValueError(f"unknown split strategy {strategy!r}; expected one of {', '.join(SPLIT_STRATEGIES)}")


def hold_out_validation(split: Split, fraction: float, *, seed: int = 0) -> Split:
    """Moves a seeded random ``fraction`` of the train rows into ``validation`` (for early stopping)."""
    _check_fraction(fraction, "fraction")
    shuffled = np.random.default_rng(seed).permutation(split.train)
    size = int(round(len(shuffled) * fraction))
    return Split(split.strategy, train=np.sort(shuffled[size:]), test=split.test,
                 validation=np.sort(shuffled[:size]), notes={**split.notes, "validation_seed": seed})


def _check_fraction(value: float, name: str) -> None:
    if not 0.0 < value < 1.0:
        raise ValueError(f"{name} must be between 0 and 1 (exclusive), got {value}")


def hold_out_last(split: Split, user_ids: np.ndarray, timestamps: np.ndarray) -> Split:
    """Moves each user's last training row (by time, ties by file order) into ``validation``: the sequential
    protocol's validation event, the one before the test event. Users with a single training row keep it.

    ``user_ids`` and ``timestamps`` are the columns of every interaction row (``split`` holds positions into them).
    """
    train = np.sort(split.train)  # positions in file order, so ties keep breaking by file order
    inner = leave_last_n_split(np.asarray(user_ids)[train], np.asarray(timestamps)[train], n=1)
    return Split(split.strategy, train=train[inner.train], test=split.test, validation=train[inner.test],
                 notes={**split.notes, "validation_split": "leave_last"})
