"""Evaluation metrics in pure NumPy: full-catalog retrieval ranks, rating errors, binary and multi-label heads.

Names follow ``"<task>/<metric>"`` (see DESIGN.md). Retrieval is computed from 0-based ranks so that callers can
score the catalog in chunks of test rows, concatenate the ranks, and summarise once:

    ranks = [retrieval_ranks(scores_chunk, positives_chunk, seen_chunk) for ...]
    metrics = retrieval_metrics(np.concatenate([r[0] for r in ranks]), np.concatenate([r[1] for r in ranks]))

Shapes: B test rows (interactions), I catalog items, N examples, G labels of a multi-label head.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

DEFAULT_KS = (10, 50, 100)


def retrieval_ranks(scores: np.ndarray, positives: np.ndarray, exclude: np.ndarray | None = None, *,
                    positive_scores: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """0-based rank of each row's held-out item among all items, and among the items not excluded.

    Ties follow ``tf.math.top_k``: an item ranks ahead of the positive when its score is strictly greater, or
    equal with a lower column index.

    With ``positive_scores``, ``rank_all`` follows TFRS ``FactorizedTopK`` instead, to the bit: the positive is
    scored on its own (a row-wise dot product, rounded differently from its column of the matmul), and its rank
    is the number of catalog columns scoring strictly higher, its own column included. (On real floats the two
    roundings differ on most rows; where its column is the higher, TFRS ranks the positive behind itself by one.
    ``rank_excluded`` never does.)

    Args:
        scores: float [B, I], one row per test interaction, one column per catalog item.
        positives: int [B], the column of each row's held-out item.
        exclude: bool [B, I] or None; True marks items to leave out of ``rank_excluded`` (typically the user's
            training items). The positive's own column is never excluded, even when marked.
        positive_scores: float [B] or None; each row's score of its positive computed as FactorizedTopK does.

    Returns:
        ``(rank_all, rank_excluded)``, both int64 [B]; ``rank_excluded == rank_all`` when ``exclude`` and
        ``positive_scores`` are None.

    Raises:
        ValueError: on mismatched shapes, a positive outside ``[0, I)``, or a non-finite score (naming the row).
    """
    scores = np.asarray(scores)
    positives = np.asarray(positives)
    if scores.ndim != 2:
        raise ValueError(f"scores must be 2-D [B, I] (rows = test interactions, columns = items), got shape "
                         f"{scores.shape}")
    num_rows, num_items = scores.shape
    if positives.shape != (num_rows,):
        raise ValueError(f"positives must have shape [{num_rows}] (one column index per score row), got "
                         f"{positives.shape}")
    if not np.issubdtype(positives.dtype, np.integer):
        raise ValueError(f"positives must be integer column indices, got dtype {positives.dtype}")
    if num_rows and (positives.min() < 0 or positives.max() >= num_items):
        bad = int(np.flatnonzero((positives < 0) | (positives >= num_items))[0])
        raise ValueError(f"positives[{bad}] = {int(positives[bad])} is outside the {num_items} score columns")
    finite = np.isfinite(scores).all(axis=1)
    if not finite.all():
        row = int(np.flatnonzero(~finite)[0])
        column = int(np.flatnonzero(~np.isfinite(scores[row]))[0])
        raise ValueError(f"scores row {row} has a non-finite value ({scores[row, column]} in column {column}); "
                         "ranks are undefined for NaN or infinite scores")
    own = scores[np.arange(num_rows), positives][:, None]
    columns = np.arange(num_items)[None, :]
    # The positive never ranks ahead of itself, so its own column drops out of every count below.
    ahead = (scores > own) | ((scores == own) & (columns < positives[:, None]))
    if positive_scores is None:
        rank_all = ahead.sum(axis=1, dtype=np.int64)
    else:
        positive_scores = np.asarray(positive_scores)
        if positive_scores.shape != (num_rows,):
            raise ValueError(f"positive_scores must have shape [{num_rows}] (one score per row), got "
                             f"{positive_scores.shape}")
        if not np.isfinite(positive_scores).all():
            row = int(np.flatnonzero(~np.isfinite(positive_scores))[0])
            raise ValueError(f"positive_scores[{row}] is {positive_scores[row]}; ranks are undefined for NaN or "
                             "infinite scores")
        rank_all = (scores > positive_scores[:, None]).sum(axis=1, dtype=np.int64)
    if exclude is None:
        return rank_all, ahead.sum(axis=1, dtype=np.int64)
    exclude = np.asarray(exclude)
    if exclude.shape != scores.shape:
        raise ValueError(f"exclude must have the shape of scores {scores.shape}, got {exclude.shape}")
    if exclude.dtype != bool:
        raise ValueError(f"exclude must be a boolean mask, got dtype {exclude.dtype}")
    rank_excluded = (ahead & ~exclude).sum(axis=1, dtype=np.int64)
    return rank_all, rank_excluded


def retrieval_metrics(rank_all: np.ndarray, rank_excluded: np.ndarray,
                      ks: Sequence[int] = DEFAULT_KS) -> dict[str, float]:
    """Summarises 0-based ranks from :func:`retrieval_ranks` (micro-averaged over test rows).

    One relevant item per row, so recall@K is a hit rate and the ideal DCG is 1.

    Args:
        rank_all: int [B], rank among all items (nothing excluded).
        rank_excluded: int [B], rank with the user's training items excluded.
        ks: cut-offs K.

    Returns:
        ``retrieval/top_{K}_accuracy`` (``rank_all < K``: the TFRS FactorizedTopK protocol),
        ``retrieval/recall_at_{K}`` (``rank_excluded < K``), ``retrieval/ndcg_at_{K}``
        (``1 / log2(rank_excluded + 2)`` inside the cut-off, else 0) for each K, and ``retrieval/mrr``
        (mean ``1 / (rank_excluded + 1)``, not truncated).

    Raises:
        ValueError: on empty or mismatched inputs, negative ranks, or a K below 1.
    """
    rank_all = np.asarray(rank_all)
    rank_excluded = np.asarray(rank_excluded)
    if rank_all.ndim != 1 or rank_excluded.shape != rank_all.shape:
        raise ValueError(f"rank_all and rank_excluded must be 1-D of equal length, got shapes {rank_all.shape} "
                         f"and {rank_excluded.shape}")
    if rank_all.size == 0:
        raise ValueError("retrieval_metrics got no ranks (rank_all is empty); evaluate at least one test row")
    if rank_all.min() < 0 or rank_excluded.min() < 0:
        raise ValueError("ranks must be >= 0 (0-based, as retrieval_ranks returns them)")
    ks = tuple(ks)
    if not ks or any(int(k) != k or k < 1 for k in ks):
        raise ValueError(f"ks must be positive integers, got {ks}")
    gains = 1.0 / np.log2(rank_excluded.astype(np.float64) + 2.0)
    metrics: dict[str, float] = {}
    for k in ks:
        metrics[f"retrieval/top_{k}_accuracy"] = float(np.mean(rank_all < k))
    for k in ks:
        metrics[f"retrieval/recall_at_{k}"] = float(np.mean(rank_excluded < k))
    for k in ks:
        metrics[f"retrieval/ndcg_at_{k}"] = float(np.mean(np.where(rank_excluded < k, gains, 0.0)))
    metrics["retrieval/mrr"] = float(np.mean(1.0 / (rank_excluded.astype(np.float64) + 1.0)))
    return metrics


def chunked_retrieval_metrics(scores: Callable[[int, int], np.ndarray], positives: np.ndarray,
                              exclude: Callable[[int, int], np.ndarray | None], *, ks: Sequence[int] = DEFAULT_KS,
                              chunk_size: int = 2048,
                              positive_scores: Callable[[int, int], np.ndarray] | None = None) -> dict[str, float]:
    """:func:`retrieval_metrics` over many rows without a full [B, I] matrix in memory.

    Args:
        scores: ``scores(start, stop)`` -> float [stop - start, I] for rows ``start:stop``.
        positives: int [B], each row's held-out column.
        exclude: ``exclude(start, stop)`` -> bool [stop - start, I] (e.g. the user's training items) or None.
        ks: cut-offs.
        chunk_size: rows scored at once.
        positive_scores: ``positive_scores(start, stop)`` -> float [stop - start] (see :func:`retrieval_ranks`)
            or None.
    """
    rank_all, rank_excluded = [], []
    for start in range(0, len(positives), chunk_size):
        stop = min(start + chunk_size, len(positives))
        ranks = retrieval_ranks(scores(start, stop), positives[start:stop], exclude(start, stop),
                                positive_scores=None if positive_scores is None else positive_scores(start, stop))
        rank_all.append(ranks[0])
        rank_excluded.append(ranks[1])
    if not rank_all:
        raise ValueError("chunked_retrieval_metrics: there are no rows to score")
    return retrieval_metrics(np.concatenate(rank_all), np.concatenate(rank_excluded), ks=tuple(ks))


def columns_mask(rows: Sequence[Sequence[int]], num_columns: int) -> np.ndarray:
    """Column lists per row -> bool [len(rows), num_columns]."""
    mask = np.zeros((len(rows), num_columns), dtype=bool)
    for row, columns in enumerate(rows):
        mask[row, list(columns)] = True
    return mask


def rating_metrics(predicted: np.ndarray, actual: np.ndarray, prefix: str = "rating") -> dict[str, float]:
    """Root mean squared and mean absolute error.

    Args:
        predicted: float [N].
        actual: float [N].
        prefix: the task name in front of each metric.

    Returns:
        ``{prefix}/rmse`` and ``{prefix}/mae``.
    """
    predicted, actual = _paired_vectors(predicted, actual, "predicted", "actual")
    errors = predicted - actual
    return {f"{prefix}/rmse": float(np.sqrt(np.mean(errors**2))), f"{prefix}/mae": float(np.mean(np.abs(errors)))}


def binary_metrics(probability: np.ndarray, label: np.ndarray, prefix: str = "like",
                   threshold: float = 0.5) -> dict[str, float]:
    """AUC and thresholded classification metrics of a binary head.

    A prediction is positive when ``probability > threshold`` (strictly, as Keras ``BinaryAccuracy`` and
    ``Precision`` decide it). Precision, recall and F1 are 0 when their denominator is 0 (no predicted positives,
    no actual positives, or both zero). AUC is the Mann–Whitney statistic with average ranks for ties (a tied
    positive/negative pair counts one half); it is NaN when ``label`` holds only one class.

    Args:
        probability: float [N], scores (probabilities or logits; AUC only needs their order).
        label: [N] of 0/1 (bool or numbers).
        prefix: the task name in front of each metric.
        threshold: the decision threshold for accuracy, precision, recall and F1.

    Returns:
        ``{prefix}/auc``, ``{prefix}/accuracy``, ``{prefix}/precision``, ``{prefix}/recall``, ``{prefix}/f1``.
    """
    probability, label = _paired_vectors(probability, label, "probability", "label")
    truth = _binary_labels(label, "label")
    predicted = probability > threshold
    tp = int(np.sum(predicted & truth))
    fp = int(np.sum(predicted & ~truth))
    fn = int(np.sum(~predicted & truth))
    precision = _ratio(tp, tp + fp)
    recall = _ratio(tp, tp + fn)
    return {
        f"{prefix}/auc": _auc(probability, truth),
        f"{prefix}/accuracy": float(np.mean(predicted == truth)),
        f"{prefix}/precision": precision,
        f"{prefix}/recall": recall,
        f"{prefix}/f1": _ratio(2 * precision * recall, precision + recall),
    }


def multilabel_metrics(scores: np.ndarray, labels: np.ndarray, prefix: str = "genres",
                       threshold: float = 0.5) -> dict[str, float]:
    """Metrics of a multi-label head (e.g. an item's genres).

    Args:
        scores: float [N, G], per-label probabilities.
        labels: [N, G] of 0/1.
        prefix: the task name in front of each metric.
        threshold: a label is predicted when its score is strictly above this.

    Returns:
        ``{prefix}/micro_f1``: F1 over all N×G decisions pooled (0 when nothing is predicted or true);
        ``{prefix}/macro_auc``: mean AUC over the labels that have both classes (NaN when none has);
        ``{prefix}/precision_at_1``: share of rows whose top-scored label (lowest index on ties) is true,
        over rows with at least one true label (NaN when no row has one);
        ``{prefix}/accuracy``: element-wise accuracy of the thresholded decisions.
    """
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels)
    if scores.ndim != 2 or labels.shape != scores.shape:
        raise ValueError(f"scores and labels must both be [N, G] with equal shapes, got {scores.shape} and "
                         f"{labels.shape}")
    if scores.size == 0:
        raise ValueError(f"multilabel_metrics got no values (scores shape {scores.shape})")
    _check_finite(scores, "scores")
    truth = _binary_labels(labels, "labels")
    predicted = scores > threshold
    tp = int(np.sum(predicted & truth))
    fp = int(np.sum(predicted & ~truth))
    fn = int(np.sum(~predicted & truth))
    aucs = [_auc(scores[:, g], truth[:, g]) for g in range(scores.shape[1])]
    defined = [a for a in aucs if not np.isnan(a)]
    has_label = truth.any(axis=1)
    top = np.argmax(scores, axis=1)
    hits = truth[np.arange(len(top)), top][has_label]
    return {
        f"{prefix}/micro_f1": _ratio(2 * tp, 2 * tp + fp + fn),
        f"{prefix}/macro_auc": float(np.mean(defined)) if defined else float("nan"),
        f"{prefix}/precision_at_1": float(np.mean(hits)) if hits.size else float("nan"),
        f"{prefix}/accuracy": float(np.mean(predicted == truth)),
    }


def _auc(scores: np.ndarray, truth: np.ndarray) -> float:
    """Mann–Whitney AUC with average ranks for ties; NaN when one class is absent."""
    positives = int(truth.sum())
    negatives = truth.size - positives
    if positives == 0 or negatives == 0:
        return float("nan")
    ranks = _average_ranks(scores)
    return float((ranks[truth].sum() - positives * (positives + 1) / 2.0) / (positives * negatives))


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks; tied values share the mean of the ranks they span."""
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    starts = np.r_[0, np.flatnonzero(ordered[1:] != ordered[:-1]) + 1]
    ends = np.r_[starts[1:], len(values)]
    group_rank = (starts + ends + 1) / 2.0  # mean of the 1-based ranks start+1 .. end
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = np.repeat(group_rank, ends - starts)
    return ranks


def _paired_vectors(first: np.ndarray, second: np.ndarray, first_name: str,
                    second_name: str) -> tuple[np.ndarray, np.ndarray]:
    first = np.asarray(first, dtype=np.float64)
    second = np.asarray(second, dtype=np.float64)
    if first.ndim != 1 or second.shape != first.shape:
        raise ValueError(f"{first_name} and {second_name} must be 1-D of equal length, got shapes {first.shape} "
                         f"and {second.shape}")
    if first.size == 0:
        raise ValueError(f"{first_name} is empty; there is nothing to evaluate")
    _check_finite(first, first_name)
    _check_finite(second, second_name)
    return first, second


def _binary_labels(labels: np.ndarray, name: str) -> np.ndarray:
    values = np.asarray(labels)
    if values.dtype == bool:
        return values
    invalid = (values != 0) & (values != 1)
    if invalid.any():
        where = np.argwhere(invalid)[0]
        raise ValueError(f"{name} must be 0/1, got {values[tuple(where)]} at index {tuple(int(i) for i in where)}")
    return values == 1


def _check_finite(values: np.ndarray, name: str) -> None:
    bad = ~np.isfinite(values)
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"{name} has a non-finite value {values[where]} at index {where}")


def _ratio(numerator: float, denominator: float) -> float:
    return float(numerator / denominator) if denominator else 0.0


__all__ = ["DEFAULT_KS", "retrieval_ranks", "retrieval_metrics", "chunked_retrieval_metrics", "columns_mask",
           "rating_metrics", "binary_metrics", "multilabel_metrics"]
