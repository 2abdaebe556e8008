"""``evaluate_model(candidates=...)`` ranks among a subset of the catalog (the new items of a cold-start test),
checked against ranks worked out in plain NumPy from the model's own embeddings."""

from __future__ import annotations

import numpy as np
import pytest

from tests.toy import untrained_toy_model
from tfmtl.data.interactions import ITEM_ID, USER_ID
from tfmtl.evaluate import _predict_rows, catalog_embeddings, evaluate_model


@pytest.fixture(scope="module")
def untrained():  # type: ignore[no-untyped-def]
    return untrained_toy_model()


def test_candidates_rank_only_those_items_with_training_items_excluded(untrained) -> None:  # type: ignore[no-untyped-def]
    data, split, space, model = untrained
    candidates = [f"i{i}" for i in range(0, 40, 3)]  # 14 of the 40 items
    frame = data.interactions
    rows = split.test[np.isin(frame[ITEM_ID].to_numpy()[split.test].astype(str), candidates)]
    ks = (1, 3, 5)

    ours = evaluate_model(model, data, split.train, rows, ks=ks, batch_size=32, tasks=("retrieval",),
                          candidates=candidates)

    # By hand: each row's positive against the candidates its user did not rate in training, in float64.
    catalog = [str(i) for i in space.catalog[ITEM_ID]]
    items = catalog_embeddings(model, batch_size=32).astype(np.float64)
    arrays = space.interaction_arrays(data, split.train, rows, is_training=False, until_row_time=True)
    users, _ = _predict_rows(model, arrays, batch_size=32)
    train = frame.iloc[split.train]
    seen = set(zip(train[USER_ID].astype(str), train[ITEM_ID].astype(str), strict=True))
    ranks = []
    for user, positive, embedding in zip(arrays[USER_ID].astype(str), arrays[ITEM_ID].astype(str), users,
                                         strict=True):
        others = [c for c in candidates if c != positive and (user, c) not in seen]
        score = {c: float(items[catalog.index(c)] @ embedding.astype(np.float64)) for c in [positive, *others]}
        ranks.append(sum(score[c] > score[positive] for c in others))
    ranks = np.array(ranks)

    assert 40 < len(rows) and 0 < (ranks < 1).mean() < (ranks < 5).mean() < 1
    for k in ks:  # a near-tie may round the other way in float32: one row at most
        assert abs(ours[f"retrieval/recall_at_{k}"] - (ranks < k).mean()) <= 1.0 / len(rows) + 1e-9
    assert abs(ours["retrieval/mrr"] - np.mean(1.0 / (ranks + 1))) < 0.02


def test_candidates_name_the_item_that_is_not_among_them(untrained) -> None:  # type: ignore[no-untyped-def]
    data, split, _, model = untrained
    with pytest.raises(ValueError, match=r"item 'i\d+' is not in the candidates"):
        evaluate_model(model, data, split.train, split.test, tasks=("retrieval",), candidates=["i0", "i1"])
    with pytest.raises(ValueError, match="'nope' is not"):
        evaluate_model(model, data, split.train, split.test, tasks=("retrieval",), candidates=["i0", "nope"])
