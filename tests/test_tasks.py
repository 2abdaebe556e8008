"""Task layers against values worked out by hand (explicit score matrices, written-out softmaxes)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import tensorflow as tf

from tfmtl.config import RetrievalConfig
from tfmtl.tasks import LossWeighting, RetrievalTask

# Two users and three items, D = 2. Scores u·c by hand:
#   u0 = (1, 0), u1 = (0, 1); c0 = (1, 0), c1 = (0, 1), c2 = (1, 1)
#   S = [[1, 0, 1],
#        [0, 1, 1]]
USERS = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)
ITEMS = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], np.float32)


def _xent(logits: list[float], positive: int) -> float:
    return -logits[positive] + math.log(sum(math.exp(v) for v in logits))


def test_in_batch_softmax_is_the_mean_cross_entropy_over_the_diagonal() -> None:
    task = RetrievalTask(RetrievalConfig(negatives="in_batch", temperature=1.0, logq_correction=False,
                                         remove_accidental_hits=False))
    loss = task(tf.constant(USERS), tf.constant(ITEMS[:2]), tf.constant(["a", "b"]))
    # Row 0 logits [1, 0] positive 0; row 1 logits [0, 1] positive 1.
    expected = (_xent([1, 0], 0) + _xent([0, 1], 1)) / 2
    assert float(loss) == pytest.approx(expected, rel=1e-6)


def test_temperature_divides_the_logits() -> None:
    task = RetrievalTask(RetrievalConfig(negatives="in_batch", temperature=0.5, logq_correction=False,
                                         remove_accidental_hits=False))
    loss = task(tf.constant(USERS), tf.constant(ITEMS[:2]), tf.constant(["a", "b"]))
    expected = (_xent([2, 0], 0) + _xent([0, 2], 1)) / 2
    assert float(loss) == pytest.approx(expected, rel=1e-6)


def test_accidental_hits_are_masked_like_an_independent_reference() -> None:
    # Three rows whose positives are items "x", "y", "x": row 0's column 2 and row 2's column 0 are the same item
    # as the row's positive, so they must not count as negatives.
    users = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]], np.float32)
    items = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]], np.float32)
    ids = ["x", "y", "x"]
    scores = users @ items.T
    reference = []
    for row in range(3):
        kept = [scores[row, col] for col in range(3) if col == row or ids[col] != ids[row]]
        positive = [col for col in range(3) if col == row or ids[col] != ids[row]].index(row)
        reference.append(_xent(kept, positive))
    task = RetrievalTask(RetrievalConfig(negatives="in_batch", temperature=1.0, logq_correction=False,
                                         remove_accidental_hits=True))
    loss = task(tf.constant(users), tf.constant(items), tf.constant(ids))
    assert float(loss) == pytest.approx(np.mean(reference), rel=1e-5)
    unmasked = RetrievalTask(RetrievalConfig(negatives="in_batch", temperature=1.0, logq_correction=False,
                                             remove_accidental_hits=False))
    assert float(unmasked(tf.constant(users), tf.constant(items), tf.constant(ids))) != pytest.approx(
        np.mean(reference), rel=1e-3)


def test_logq_correction_subtracts_log_sampling_probability() -> None:
    task = RetrievalTask(RetrievalConfig(negatives="in_batch", temperature=1.0, logq_correction=True,
                                         remove_accidental_hits=False))
    q = np.array([0.5, 0.1], np.float32)
    loss = task(tf.constant(USERS), tf.constant(ITEMS[:2]), tf.constant(["a", "b"]),
                sampling_probability=tf.constant(q))
    logq = np.log(q)
    expected = (_xent([1 - logq[0], 0 - logq[1]], 0) + _xent([0 - logq[0], 1 - logq[1]], 1)) / 2
    assert float(loss) == pytest.approx(expected, rel=1e-5)


def test_catalog_negatives_score_every_catalog_item_once() -> None:
    # Positives: row 0 -> item "c0", row 1 -> item "c1"; the catalog is c0, c1, c2. Each row's softmax runs over
    # its positive plus every OTHER catalog item, once: the positive's catalog copy is an accidental hit, and the
    # other row's batch column is the same item as its catalog column.
    task = RetrievalTask(RetrievalConfig(negatives="catalog", temperature=1.0))
    loss = task(tf.constant(USERS), tf.constant(ITEMS[:2]), tf.constant(["c0", "c1"]),
                catalog_embeddings=tf.constant(ITEMS), catalog_ids=tf.constant(["c0", "c1", "c2"]))
    # Row 0 columns: [c0 (pos) 1, c1 (batch, masked), c0 (hit, masked), c1 0, c2 1] -> logits [1, 0, 1];
    # row 1: [c0 (batch, masked), c1 (pos) 1, c0 0, c1 (hit, masked), c2 1] -> logits [1, 0, 1].
    expected = (_xent([1, 0, 1], 0) + _xent([1, 0, 1], 0)) / 2
    assert float(loss) == pytest.approx(expected, rel=1e-5)


def test_static_weighting_is_the_weighted_sum() -> None:
    weighting = LossWeighting({"retrieval": 1.0, "rating": 0.5, "like": 0.0}, "static")
    total = weighting({"retrieval": tf.constant(2.0), "rating": tf.constant(4.0), "like": tf.constant(9.0)})
    assert float(total) == pytest.approx(1.0 * 2.0 + 0.5 * 4.0 + 0.0 * 9.0)


def test_uncertainty_weighting_formula() -> None:
    weighting = LossWeighting({"retrieval": 1.0, "rating": 2.0}, "uncertainty", regression=["rating"])
    weighting({"retrieval": tf.constant(1.0), "rating": tf.constant(1.0)})  # builds
    weighting.log_variances["retrieval"].assign(math.log(4.0))  # σ² = 4
    weighting.log_variances["rating"].assign(math.log(0.25))  # σ² = 1/4
    total = weighting({"retrieval": tf.constant(3.0), "rating": tf.constant(2.0)})
    # retrieval (classification): 1 · (1/σ² · 3 + log σ) = 3/4 + log 2
    # rating (regression), static weight 2: 2 · (1/(2σ²) · 2 + log σ) = 2 · (2 · 2 + log 0.5) = 8 - 2 log 2
    expected = 0.75 + math.log(2.0) + 8.0 - 2 * math.log(2.0)
    assert float(total) == pytest.approx(expected, rel=1e-5)
    effective = {k: float(v) for k, v in weighting.effective_weights().items()}
    assert effective == pytest.approx({"retrieval": 0.25, "rating": 2.0 * 0.5 * 4.0})


def test_uncertainty_log_variances_learn_toward_the_loss() -> None:
    # d/ds [e^{-s} L + s/2] = 0  at  s = log(2L): a loss of 2 pulls s toward log 4.
    weighting = LossWeighting({"like": 1.0}, "uncertainty")
    optimizer = tf.keras.optimizers.SGD(0.5)
    for _ in range(300):
        with tf.GradientTape() as tape:
            total = weighting({"like": tf.constant(2.0)})
        variables = weighting.trainable_weights
        optimizer.apply_gradients(zip(tape.gradient(total, variables), variables, strict=True))
    assert float(weighting.log_variances["like"]) == pytest.approx(math.log(4.0), abs=1e-3)
