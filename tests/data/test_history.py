"""Behaviour histories worked out by hand: no row sees itself or anything later; padding on the left."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tfmtl.data.history import HISTORY, HISTORY_LABELS, history_features, user_histories
from tfmtl.data.interactions import InteractionData, finish
from tfmtl.data.schema import FeatureColumns


def _data() -> InteractionData:
    # Row: user, item, rating, time.  u1's timeline by time: r3 (t=5, A), r0 (t=10, B), r1 (t=10, C), r4 (t=30, D)
    rows = [("u1", "B", 4.0, 10), ("u1", "C", 3.0, 10), ("u2", "A", 5.0, 7), ("u1", "A", 2.0, 5),
            ("u1", "D", 1.0, 30), ("u1", "E", 5.0, 20), ("u3", "B", 4.0, 1)]
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])
    items = pd.DataFrame({"item_id": list("ABCDE")})
    users = pd.DataFrame({"user_id": ["u1", "u2", "u3"]})
    return finish(InteractionData("h", frame, items, users, ("rating",), FeatureColumns(), FeatureColumns()))


TRAIN = np.array([0, 1, 2, 3, 4, 6])  # row 5 (u1, E, t=20) is a test row


def test_training_rows_see_only_earlier_training_items() -> None:
    out = history_features(_data(), TRAIN, TRAIN, length=3, is_training=True, label="rating")
    # r0 (t=10) follows r3 (t=5): [A]; r1 (t=10, tie broken by row position) follows r3, r0: [A, B];
    # r2 is u2's first; r3 is u1's first; r4 (t=30) follows A, B, C; r6 is u3's first.
    assert out[HISTORY].tolist() == [["", "", "A"], ["", "A", "B"], ["", "", ""], ["", "", ""], ["A", "B", "C"],
                                     ["", "", ""]]
    assert out[HISTORY_LABELS].tolist()[4] == [2.0, 4.0, 3.0]
    assert out[HISTORY_LABELS].tolist()[0] == [0.0, 0.0, 2.0]


def test_other_rows_see_training_items_up_to_their_time_or_everything() -> None:
    test = np.array([5])
    until = history_features(_data(), TRAIN, test, length=3, is_training=False)
    assert until[HISTORY].tolist() == [["A", "B", "C"]]  # t=20: D (t=30) is later
    everything = history_features(_data(), TRAIN, test, length=2, is_training=False, until_row_time=False)
    assert everything[HISTORY].tolist() == [["C", "D"]]  # newest two, oldest first
    assert HISTORY_LABELS not in everything


def test_asking_for_a_training_row_as_an_evaluation_row_is_refused() -> None:
    with pytest.raises(ValueError, match="row 4 is a training row"):
        history_features(_data(), TRAIN, np.array([4]), length=3, is_training=False)
    with pytest.raises(ValueError, match="row 5 is not a training row"):
        history_features(_data(), TRAIN, np.array([5]), length=3, is_training=True)


def test_bag_mode_sees_every_other_training_item() -> None:
    out = history_features(_data(), TRAIN, TRAIN, length=2, is_training=True, mode="others")
    # u1's timeline A, B, C, D: r0 (B) sees the newest two others C, D; r4 (D) sees B, C; r3 (A) sees C, D.
    assert out[HISTORY].tolist()[0] == ["C", "D"]
    assert out[HISTORY].tolist()[4] == ["B", "C"]
    assert out[HISTORY].tolist()[3] == ["C", "D"]
    assert out[HISTORY].tolist()[2] == ["", ""]  # u2 has no other item
    test = history_features(_data(), TRAIN, np.array([5]), length=3, is_training=False, mode="others")
    assert test[HISTORY].tolist() == [["B", "C", "D"]]  # no time cut in a bag


def test_served_histories_are_the_newest_items_per_user() -> None:
    assert user_histories(_data(), TRAIN, length=2) == {"u1": ["C", "D"], "u2": ["A"], "u3": ["B"]}
