"""The one-pass catalog metrics give TFRS's own numbers: ``tfrs.metrics.FactorizedTopK`` (the TFRS protocol:
every catalog item, nothing excluded) on a toy catalog, scored once as a matrix on our side and batch by batch on
TFRS's.

FactorizedTopK scores each row's positive with a row-wise sum and the catalog with a matmul, and the positive is also
in the catalog, so with arbitrary floats the row's rank hangs on whether two roundings of the same dot product tie
(on the toy run, 2 of 120 rows flip at k=1). The embeddings here are small multiples of 1/64, so every dot product
is exact in float32 whatever the order of the sums: both sides see the same numbers and must agree exactly.

``evaluate_model`` scores the positive with FactorizedTopK's own row-wise sum, so on a real model's float
embeddings (no exactness, ties and roundings included) it still reports TFRS's numbers.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
import tensorflow_recommenders as tfrs

from tests.toy import untrained_toy_model
from tfmtl.data.interactions import ITEM_ID
from tfmtl.evaluate import _predict_rows, catalog_embeddings, evaluate_model
from tfmtl.metrics import chunked_retrieval_metrics

KS = (1, 3, 5, 10, 50)


def test_one_pass_top_k_accuracy_equals_factorized_top_k() -> None:
    rng = np.random.default_rng(7)
    users = (rng.integers(-50, 51, (300, 8)) / 64).astype(np.float32)
    items = (rng.integers(-50, 51, (120, 8)) / 64).astype(np.float32)
    positives = rng.integers(0, len(items), len(users))
    # Rows whose positive ties another item are left out: there the two protocols break ties differently
    # (TFRS counts every tied item as in the top k; we break ties by catalog order, as tf.math.top_k does).
    scores = users.astype(np.float64) @ items.T.astype(np.float64)
    untied = (scores == scores[np.arange(len(users)), positives][:, None]).sum(1) == 1
    users, positives = users[untied], positives[untied]
    assert len(users) > 250

    ours = chunked_retrieval_metrics(lambda start, stop: users[start:stop] @ items.T, positives,
                                     lambda start, stop: None, ks=KS, chunk_size=64)

    index = tfrs.layers.factorized_top_k.BruteForce(k=max(KS))
    index.index(tf.constant(items), tf.constant([f"i{i}" for i in range(len(items))]))
    metric = tfrs.metrics.FactorizedTopK(candidates=index, ks=KS)
    for start in range(0, len(users), 50):  # TFRS's batches differ from our chunks
        metric.update_state(tf.constant(users[start:start + 50]), tf.constant(items[positives[start:start + 50]]))
    theirs = [float(m.result()) for m in metric._top_k_metrics]

    assert 0 < theirs[0] < theirs[-1] < 1  # a case where the metric has something to say
    np.testing.assert_allclose([ours[f"retrieval/top_{k}_accuracy"] for k in KS], theirs, atol=1e-6)


def test_evaluate_model_reports_factorized_top_k_on_float_embeddings() -> None:
    data, split, space, model = untrained_toy_model()
    ks = (1, 3, 5, 10)

    ours = evaluate_model(model, data, split.train, split.test, ks=ks, batch_size=32, tasks=("retrieval",))

    # TFRS's side, from the same model's embeddings: a brute-force index over its catalog, each row's positive.
    items = catalog_embeddings(model, batch_size=32)  # as evaluate_model batches them
    arrays = space.interaction_arrays(data, split.train, split.test, is_training=False, until_row_time=True)
    users, _ = _predict_rows(model, arrays, batch_size=32)
    column = {str(item): i for i, item in enumerate(space.catalog[ITEM_ID])}
    positives = np.array([column[str(item)] for item in arrays[ITEM_ID]])
    index = tfrs.layers.factorized_top_k.BruteForce(k=max(ks))
    index.index(tf.constant(items), tf.constant([str(i) for i in range(len(items))]))
    metric = tfrs.metrics.FactorizedTopK(candidates=index, ks=ks)
    # One batch, as evaluate_model scores up to 2048 rows at once: CPU matmul rounding can depend on the shapes.
    metric.update_state(tf.constant(users), tf.constant(items[positives]))
    theirs = [float(m.result()) for m in metric._top_k_metrics]

    assert 100 < len(users) < 2048 and 0 < theirs[0] < theirs[-1] < 1
    np.testing.assert_allclose([ours[f"retrieval/top_{k}_accuracy"] for k in ks], theirs, atol=1e-6)
