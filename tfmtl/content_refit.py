"""The content head's output layer, refitted exactly after training.

The head is a linear layer over the item's normalised content. Trained jointly with the recommendation tasks it
gets one optimizer step per training step (about a thousand on MovieLens-100K) and stops short of the
regularised optimum: a logistic-regression probe on the same frozen features predicts new items' genres better
(``benchmarks/content_task.py``). Once training has fixed what the layer reads, its best weights are a convex
problem: L2-regularised logistic regression per value of a multi-valued feature (Newton's method), or ridge
regression in standard units for a numeric one, with the L2 strength chosen on a held-out fifth of the training
catalog's items and then refitted on all of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from tfmtl.baselines import LogisticRegression, Ridge
from tfmtl.metrics import multilabel_metrics

if TYPE_CHECKING:
    from tfmtl.model import MultiTaskRecommender

L2_GRID = (100.0, 300.0, 1000.0, 3000.0, 10000.0, 30000.0)  # in the normalised content's units (unit variance)
MAX_ITEMS = 10_000  # Newton's method costs items x features^2 per value and step; a larger catalog is sampled
MIN_VALIDATION_ITEMS = 50  # fewer cannot tell the L2 values apart: the grid's middle is used instead


@dataclass(frozen=True)
class Refit:
    """What :func:`refit_content_head` did: ``l2`` chosen by ``validation`` (L2 -> its score: macro AUC over the
    values, or minus the mean squared error in standard units; empty when too few items to hold any out), fitted
    on ``items`` of the training catalog's ``catalog_items``."""

    l2: float
    items: int
    catalog_items: int
    metric: str
    validation: dict[float, float]


def refit_content_head(model: MultiTaskRecommender, *, seed: int = 0, grid: tuple[float, ...] = L2_GRID,
                       max_items: int = MAX_ITEMS) -> Refit:
    """Refits ``model``'s content head in place on its training catalog; see the module docstring."""
    inputs, targets = model.content_fit_set()  # raises without a content task
    weights, refit = fit_output(inputs, targets, seed=seed, grid=grid, max_items=max_items)
    assert model.content_head is not None
    model.content_head.set_output(weights)
    return refit


def fit_output(inputs: np.ndarray, targets: np.ndarray, *, seed: int = 0, grid: tuple[float, ...] = L2_GRID,
               max_items: int = MAX_ITEMS) -> tuple[np.ndarray, Refit]:
    """(weights [F + 1, G], the bias last; how) of the output layer for ``inputs`` [N, F] and ``targets``: multi-hot
    [N, G] (logistic) or values [N] (ridge; NaN = unknown, left out)."""
    numeric = targets.ndim == 1
    rows = np.flatnonzero(np.isfinite(targets)) if numeric else np.arange(len(targets))
    if len(rows) == 0:
        raise ValueError("content task: no training-catalog item has a value to refit the head on")
    rng = np.random.default_rng(seed)
    if len(rows) > max_items:
        rows = np.sort(rng.choice(rows, max_items, replace=False))
    shuffled = rng.permutation(rows)
    held_out, fit = shuffled[: len(rows) // 5], shuffled[len(rows) // 5:]
    validation, start = {}, None
    if len(held_out) >= MIN_VALIDATION_ITEMS:
        for l2 in sorted(grid, reverse=True):  # each fit starts from the previous, stronger L2's: fewer steps
            estimator = _fit(numeric, l2, inputs[fit], targets[fit], start)
            start = estimator.weights
            score = _score(estimator.predict(inputs[held_out]), targets[held_out], numeric)
            if np.isfinite(score):
                validation[l2] = score
    l2 = max(validation, key=validation.__getitem__) if validation else grid[len(grid) // 2]
    weights = _fit(numeric, l2, inputs[rows], targets[rows], None).weights
    assert weights is not None
    return weights, Refit(l2=l2, items=len(rows), catalog_items=len(targets),
                          metric="minus_mse" if numeric else "macro_auc", validation=validation)


def _fit(numeric: bool, l2: float, inputs: np.ndarray, targets: np.ndarray,
         start: np.ndarray | None) -> LogisticRegression | Ridge:
    if numeric:
        return Ridge(l2=l2).fit(inputs, targets)
    return LogisticRegression(l2=l2, iterations=25, tolerance=1e-6).fit(inputs, targets, initial=start)


def _score(predicted: np.ndarray, targets: np.ndarray, numeric: bool) -> float:
    if numeric:
        return -float(np.mean((predicted[:, 0] - targets) ** 2))
    return multilabel_metrics(predicted, targets, prefix="content")["content/macro_auc"]
