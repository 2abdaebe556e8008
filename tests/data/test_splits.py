from __future__ import annotations

import hashlib

import numpy as np
import pytest

from tests.conftest import run_python
from tfmtl.data.splits import (
    Split,
    hold_out_last,
    hold_out_validation,
    leave_last_n_split,
    tfrs_tutorial_split,
    time_cutoff_split,
)


def tutorial_reference(num_rows: int) -> tuple[list[int], list[int]]:
    """The TFRS tutorial's own code, applied to rows that carry their position."""
    import tensorflow as tf

    ratings = tf.data.Dataset.from_tensor_slices({"row": np.arange(num_rows), "rating": np.ones(num_rows)})
    tf.random.set_seed(42)
    shuffled = ratings.shuffle(100_000, seed=42, reshuffle_each_iteration=False)
    train_size = int(num_rows * 0.8)
    train = shuffled.take(train_size)
    test = shuffled.skip(train_size).take(num_rows - train_size)
    return ([int(x["row"]) for x in train.as_numpy_iterator()],
            [int(x["row"]) for x in test.as_numpy_iterator()])


def test_tfrs_split_equals_the_tutorial_code() -> None:
    train, test = tutorial_reference(1_000)
    split = tfrs_tutorial_split(1_000)
    assert split.train.tolist() == train
    assert split.test.tolist() == test


def test_tfrs_split_is_a_partition_with_80_20_sizes() -> None:
    split = tfrs_tutorial_split(100_000)
    assert (len(split.train), len(split.test)) == (80_000, 20_000)
    assert np.array_equal(np.sort(np.r_[split.train, split.test]), np.arange(100_000))


def test_tfrs_split_is_stable_across_processes() -> None:
    code = ("import hashlib, tfmtl\nfrom tfmtl.data.splits import tfrs_tutorial_split\n"
            "s = tfrs_tutorial_split(100_000)\n"
            "print(hashlib.sha256(s.train.tobytes() + s.test.tobytes()).hexdigest())\n")
    digests = set()
    for _ in range(2):
        result = run_python(code)
        assert result.returncode == 0, result.stderr[-2000:]
        digests.add(result.stdout.split()[-1])
    here = tfrs_tutorial_split(100_000)
    digests.add(hashlib.sha256(here.train.tobytes() + here.test.tobytes()).hexdigest())
    assert len(digests) == 1


def test_time_cutoff_by_hand() -> None:
    timestamps = np.array([50, 10, 40, 20, 30])
    split = time_cutoff_split(timestamps, cutoff=30)
    assert split.train.tolist() == [1, 3]   # 10 and 20 are before 30
    assert split.test.tolist() == [0, 2, 4]
    quantile = time_cutoff_split(timestamps, quantile=0.6)  # 60% of 5 rows: sorted[3] = 40
    assert quantile.notes["cutoff"] == 40
    assert quantile.train.tolist() == [1, 3, 4]


def test_leave_last_n_by_hand() -> None:
    users = np.array(["a", "b", "a", "a", "b", "c"])
    times = np.array([3, 1, 1, 3, 2, 9])     # a: rows 2 (t1), 0 (t3), 3 (t3, later in file); b: 1, 4; c: 5
    split = leave_last_n_split(users, times, n=1)
    assert split.test.tolist() == [3, 4]     # a's last is row 3 (tie broken by file order); b's is row 4
    assert split.train.tolist() == [0, 1, 2, 5]  # c has one row only: kept whole in train
    assert split.notes["users_kept_whole_in_train"] == 1
    two = leave_last_n_split(users, times, n=2)
    assert two.test.tolist() == [0, 3]       # only a has more than two rows
    with pytest.raises(ValueError, match="n must be"):
        leave_last_n_split(users, times, n=0)


def test_hold_out_validation_is_seeded_and_disjoint() -> None:
    base = tfrs_tutorial_split(1_000)
    first, second = hold_out_validation(base, 0.1, seed=3), hold_out_validation(base, 0.1, seed=3)
    assert np.array_equal(first.validation, second.validation)
    assert len(first.validation) == 80
    assert not set(first.validation) & set(first.train)
    assert set(first.validation) | set(first.train) == set(base.train)


def test_time_cutoff_refuses_an_empty_part() -> None:
    with pytest.raises(ValueError, match="leaves train empty"):
        time_cutoff_split(np.array([5, 5, 5, 5]))
    with pytest.raises(ValueError, match="no rows"):
        time_cutoff_split(np.array([], dtype=np.int64))


def test_hold_out_last_moves_each_users_last_training_event_ties_by_file_order() -> None:
    users = np.array(["a", "b", "a", "a", "b", "c", "a"])
    times = np.array([5, 1, 9, 9, 2, 3, 20])
    base = Split("leave_last", train=np.array([3, 0, 1, 2, 4, 5]), test=np.array([6]))  # any order
    held = hold_out_last(base, users, times)
    # a: rows 0 (t5), 2 (t9), 3 (t9, later in the file) -> 3 validates; b: 1, 4 -> 4; c has one row: it stays.
    assert held.validation.tolist() == [3, 4]
    assert held.train.tolist() == [0, 1, 2, 5]
    assert held.test.tolist() == [6]
    assert held.summary()["validation"] == 2
