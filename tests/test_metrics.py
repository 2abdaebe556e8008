from __future__ import annotations

import math

import numpy as np
import pytest

from tfmtl.metrics import (
    binary_metrics,
    chunked_retrieval_metrics,
    columns_mask,
    multilabel_metrics,
    rating_metrics,
    retrieval_metrics,
    retrieval_ranks,
)

# Three test rows (users) over four items. Expected ranks, worked out by hand:
# row 0: positive item 2 (0.5). Ahead: item 0 (0.9 > 0.5) and item 1 (0.5 tie, lower index) -> rank_all 2.
#        item 0 is a training item -> rank_excluded 1 (only item 1 left ahead).
# row 1: positive item 1 (0.8). Item 3 ties at 0.8 but has a higher index, so nothing is ahead -> rank_all 0.
#        exclude marks the positive itself; it is never excluded -> rank_excluded 0.
# row 2: positive item 3 (0.1), the lowest score -> rank_all 3; items 0 and 1 are training items,
#        item 2 (0.2) stays ahead -> rank_excluded 1.
SCORES = np.array([
    [0.9, 0.5, 0.5, 0.1],
    [0.2, 0.8, 0.3, 0.8],
    [0.4, 0.3, 0.2, 0.1],
])
POSITIVES = np.array([2, 1, 3])
EXCLUDE = np.array([
    [True, False, False, False],
    [False, True, False, False],
    [True, True, False, False],
])


def test_ranks_by_hand() -> None:
    rank_all, rank_excluded = retrieval_ranks(SCORES, POSITIVES, EXCLUDE)
    assert rank_all.tolist() == [2, 0, 3]
    assert rank_excluded.tolist() == [1, 0, 1]


def test_ranks_without_exclusion_are_equal() -> None:
    rank_all, rank_excluded = retrieval_ranks(SCORES, POSITIVES)
    assert rank_all.tolist() == [2, 0, 3]
    assert rank_excluded.tolist() == [2, 0, 3]


def test_ties_break_by_lower_column_index_like_top_k() -> None:
    scores = np.array([[1.0, 1.0, 1.0, 1.0]])
    # All tied: the positive's rank is the number of columns left of it.
    assert [int(retrieval_ranks(scores, np.array([j]))[0][0]) for j in range(4)] == [0, 1, 2, 3]


def test_row_wise_positive_scores_rank_as_factorized_top_k() -> None:
    # FactorizedTopK: the rank is the number of catalog columns strictly above the row's own positive score.
    scores = np.array([[0.3, 0.7, 0.7, 0.2],
                       [0.3, 0.7, 0.1, 0.2]])
    positives = np.array([2, 1])
    # Row 0: column 1 ties the positive; TFRS keeps tied items in the top k, top_k order puts column 1 ahead.
    # Row 1: the row-wise score is an ulp below the positive's own column, which TFRS then counts ahead of it.
    row_wise = np.array([0.7, np.nextafter(np.float64(0.7), 0.0)])
    rank_all, rank_excluded = retrieval_ranks(scores, positives, positive_scores=row_wise)
    assert rank_all.tolist() == [0, 1]
    assert rank_excluded.tolist() == [1, 0]
    with pytest.raises(ValueError, match=r"positive_scores\[1\] is nan"):
        retrieval_ranks(scores, positives, positive_scores=np.array([0.7, np.nan]))


def test_positive_is_never_excluded_even_when_marked() -> None:
    scores = np.array([[0.3, 0.9, 0.1]])
    # The positive (item 1) is marked and the top item; item 0 (0.3) is behind it either way.
    _, excluded = retrieval_ranks(scores, np.array([1]), np.array([[False, True, False]]))
    assert excluded.tolist() == [0]
    # Marking everything leaves the positive alone at rank 0.
    _, excluded = retrieval_ranks(np.array([[0.9, 0.1, 0.5]]), np.array([1]), np.ones((1, 3), dtype=bool))
    assert excluded.tolist() == [0]


def test_metrics_by_hand() -> None:
    # rank_all = [2, 0, 3], rank_excluded = [1, 0, 1] (from the toy case above).
    metrics = retrieval_metrics(np.array([2, 0, 3]), np.array([1, 0, 1]), ks=(1, 3))
    expected = {
        "retrieval/top_1_accuracy": 1 / 3,     # only row 1 has rank_all < 1
        "retrieval/top_3_accuracy": 2 / 3,     # rows 0 and 1 (rank_all 2, 0); row 2 has rank 3
        "retrieval/recall_at_1": 1 / 3,        # only row 1 has rank_excluded < 1
        "retrieval/recall_at_3": 1.0,          # all rank_excluded < 3
        "retrieval/ndcg_at_1": 1 / 3,          # row 1 gains 1/log2(2) = 1; rows 0, 2 are cut off
        # rows 0 and 2 gain 1/log2(3) = 0.630930, row 1 gains 1: (0.630930 * 2 + 1) / 3
        "retrieval/ndcg_at_3": 0.7539531690,
        "retrieval/mrr": 2 / 3,                # (1/2 + 1/1 + 1/2) / 3
    }
    assert list(metrics) == list(expected)
    for name, value in expected.items():
        assert metrics[name] == pytest.approx(value, abs=1e-9), name


def test_default_ks_names() -> None:
    names = set(retrieval_metrics(np.array([0]), np.array([0])))
    assert names == {f"retrieval/{m}_{k}" for m in ("recall_at", "ndcg_at") for k in (10, 50, 100)} | {
        f"retrieval/top_{k}_accuracy" for k in (10, 50, 100)} | {"retrieval/mrr"}


def test_nonfinite_score_names_the_row() -> None:
    scores = SCORES.copy()
    scores[2, 1] = np.nan
    with pytest.raises(ValueError, match="row 2"):
        retrieval_ranks(scores, POSITIVES)
    scores[2, 1] = np.inf
    with pytest.raises(ValueError, match="row 2"):
        retrieval_ranks(scores, POSITIVES)


def test_bad_inputs_raise_value_errors() -> None:
    with pytest.raises(ValueError, match="positives"):
        retrieval_ranks(SCORES, np.array([0, 4, 1]))
    with pytest.raises(ValueError, match="exclude"):
        retrieval_ranks(SCORES, POSITIVES, EXCLUDE[:, :3])
    with pytest.raises(ValueError, match="empty"):
        retrieval_metrics(np.array([], dtype=int), np.array([], dtype=int))
    with pytest.raises(ValueError, match="ks"):
        retrieval_metrics(np.array([0]), np.array([0]), ks=(0,))


def test_rating_metrics_by_hand() -> None:
    # errors: +1, -2, 0, +1 -> squared mean (1 + 4 + 0 + 1) / 4 = 1.5; absolute mean (1 + 2 + 0 + 1) / 4 = 1.0
    metrics = rating_metrics(np.array([4.0, 1.0, 3.0, 5.0]), np.array([3.0, 3.0, 3.0, 4.0]))
    assert metrics == {"rating/rmse": pytest.approx(math.sqrt(1.5)), "rating/mae": pytest.approx(1.0)}
    with pytest.raises(ValueError, match="equal length"):
        rating_metrics(np.array([1.0]), np.array([1.0, 2.0]))


# Binary toy: positives score 0.4 and 0.8, negatives 0.1, 0.4, 0.3.
PROBABILITY = np.array([0.1, 0.4, 0.4, 0.8, 0.3])
LABEL = np.array([0, 1, 0, 1, 0])


def test_auc_with_ties_by_hand() -> None:
    # Pairs (positive, negative): 0.4 beats 0.1 and 0.3, ties 0.4 (half) -> 2.5; 0.8 beats all three -> 3.
    # AUC = 5.5 / (2 * 3) = 0.916667.
    assert binary_metrics(PROBABILITY, LABEL)["like/auc"] == pytest.approx(5.5 / 6)


def test_binary_confusion_matrix_by_hand() -> None:
    # threshold 0.5: only 0.8 is predicted positive. TP 1, FP 0, FN 1 (the 0.4 positive), TN 3.
    metrics = binary_metrics(PROBABILITY, LABEL, prefix="click")
    assert metrics["click/accuracy"] == pytest.approx(4 / 5)
    assert metrics["click/precision"] == pytest.approx(1.0)
    assert metrics["click/recall"] == pytest.approx(0.5)
    assert metrics["click/f1"] == pytest.approx(2 / 3)     # 2 * 1 * 0.5 / 1.5
    # threshold 0.35: 0.4, 0.4, 0.8 predicted positive. TP 2, FP 1, FN 0, TN 2.
    metrics = binary_metrics(PROBABILITY, LABEL, threshold=0.35)
    assert metrics["like/accuracy"] == pytest.approx(4 / 5)
    assert metrics["like/precision"] == pytest.approx(2 / 3)
    assert metrics["like/recall"] == pytest.approx(1.0)
    assert metrics["like/f1"] == pytest.approx(0.8)        # 2 * (2/3) * 1 / (5/3)


def test_binary_threshold_is_strict_and_undefined_cases() -> None:
    # 0.5 is not above 0.5: no predicted positives -> precision and F1 are 0 by definition.
    metrics = binary_metrics(np.array([0.5, 0.2]), np.array([1, 0]))
    assert metrics["like/precision"] == 0.0
    assert metrics["like/recall"] == 0.0
    assert metrics["like/f1"] == 0.0
    assert metrics["like/auc"] == pytest.approx(1.0)
    # One class only: AUC is undefined.
    assert math.isnan(binary_metrics(np.array([0.1, 0.9]), np.array([0, 0]))["like/auc"])
    with pytest.raises(ValueError, match="0/1"):
        binary_metrics(np.array([0.1, 0.9]), np.array([0, 2]))


def test_multilabel_by_hand() -> None:
    scores = np.array([
        [0.9, 0.2, 0.6],
        [0.1, 0.7, 0.4],
        [0.3, 0.2, 0.1],
    ])
    labels = np.array([
        [1, 0, 0],
        [0, 0, 1],
        [0, 0, 0],
    ])
    metrics = multilabel_metrics(scores, labels)
    # Predicted (> 0.5): [1,0,1], [0,1,0], [0,0,0]. TP (0,0); FP (0,2), (1,1); FN (1,2).
    # micro F1 = 2*1 / (2*1 + 2 + 1) = 0.4
    assert metrics["genres/micro_f1"] == pytest.approx(0.4)
    # element-wise correct: row 0 two, row 1 one, row 2 three -> 6 / 9
    assert metrics["genres/accuracy"] == pytest.approx(6 / 9)
    # top label: row 0 -> genre 0 (true), row 1 -> genre 1 (false), row 2 has no labels and is skipped -> 1/2
    assert metrics["genres/precision_at_1"] == pytest.approx(0.5)
    # AUC per genre: genre 0 positive 0.9 beats 0.1 and 0.3 -> 1.0; genre 1 has no positives (skipped);
    # genre 2 positive 0.4 loses to 0.6, beats 0.1 -> 0.5. Mean of the defined ones: 0.75.
    assert metrics["genres/macro_auc"] == pytest.approx(0.75)
    assert list(metrics) == ["genres/micro_f1", "genres/macro_auc", "genres/precision_at_1", "genres/accuracy"]


def test_chunked_metrics_equal_the_hand_worked_toy_case() -> None:
    # The toy case above scored two rows at a time, exclusions given as column lists.
    seen = [[0], [1], [0, 1]]
    chunked = chunked_retrieval_metrics(lambda start, stop: SCORES[start:stop], POSITIVES,
                                        lambda start, stop: columns_mask(seen[start:stop], 4), ks=(1, 3),
                                        chunk_size=2)
    assert chunked == retrieval_metrics(np.array([2, 0, 3]), np.array([1, 0, 1]), ks=(1, 3))
