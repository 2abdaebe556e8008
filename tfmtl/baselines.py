"""Non-neural baselines in pure NumPy: popularity, EASE (item-item closed form), user/item rating biases, and a
logistic and a ridge regression (probes on fixed features).

Inputs are integer index arrays into dense ranges: ``user_index`` [N] in ``[0, U)``, ``item_index`` [N] in
``[0, I)`` (map string ids with a vocabulary first), and ``ratings`` float [N] where a model needs them.
A learned model that cannot beat these is not learning anything the counts do not already say.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tfmtl.metrics import retrieval_metrics, retrieval_ranks

EASE_L2_GRID = (50.0, 100.0, 200.0, 300.0, 500.0, 800.0, 1200.0)
_SCORE_CHUNK = 4096  # rows scored at once: bounds the [rows, I] score matrix on large catalogs


def interaction_matrix(user_index: np.ndarray, item_index: np.ndarray, num_users: int,
                       num_items: int) -> np.ndarray:
    """Binary user × item matrix (repeated pairs count once).

    Args:
        user_index: int [N] in ``[0, num_users)``.
        item_index: int [N] in ``[0, num_items)``.
        num_users: U.
        num_items: I.

    Returns:
        bool [U, I]; also the "seen in training" mask for :func:`tfmtl.metrics.retrieval_ranks`.
    """
    user_index = _index_array(user_index, num_users, "user_index", "num_users")
    item_index = _index_array(item_index, num_items, "item_index", "num_items")
    _same_length(user_index, item_index, "user_index", "item_index")
    matrix = np.zeros((num_users, num_items), dtype=bool)
    matrix[user_index, item_index] = True
    return matrix


def popularity_scores(item_index: np.ndarray, num_items: int) -> np.ndarray:
    """Training interaction counts per item: the same ranking for every user.

    Args:
        item_index: int [N] in ``[0, num_items)``, one entry per training interaction.
        num_items: I.

    Returns:
        float32 [I].
    """
    item_index = _index_array(item_index, num_items, "item_index", "num_items")
    return np.bincount(item_index, minlength=num_items).astype(np.float32)


class EASE:
    """Embarrassingly Shallow Autoencoder (Steck, WWW 2019): an item-item weight matrix in closed form.

    With binary X [U, I], ``G = XᵀX + λI`` and ``P = G⁻¹``, the weights are ``B = −P / diag(P)`` (each column j
    divided by ``P_jj``) with ``diag(B) = 0``: the ridge regression of each item column on all the other columns.
    A user's scores are ``X[u] @ B``. The inverse runs in float64 (G is ill-conditioned for small λ).
    """

    def __init__(self) -> None:
        self.weights: np.ndarray | None = None  # float32 [I, I]
        self.interactions: np.ndarray | None = None  # bool [U, I]
        self.l2: float | None = None

    def fit(self, user_index: np.ndarray, item_index: np.ndarray, num_users: int, num_items: int,
            l2: float = 500.0) -> EASE:
        """Fits B on the binary interaction matrix.

        Args:
            user_index: int [N] in ``[0, num_users)``.
            item_index: int [N] in ``[0, num_items)``.
            num_users: U.
            num_items: I.
            l2: λ, the ridge penalty (> 0).

        Returns:
            self.
        """
        interactions = interaction_matrix(user_index, item_index, num_users, num_items)
        return self._fit_gram(interactions, _gram(interactions), l2)

    def scores(self, user_rows: np.ndarray) -> np.ndarray:
        """Scores of every item for the given users.

        Args:
            user_rows: int [n] user indices in ``[0, U)``.

        Returns:
            float32 [n, I]; a user's training items get scores too (exclude them when ranking).
        """
        if self.weights is None or self.interactions is None:
            raise ValueError("EASE.scores called before fit(); fit the model on the training interactions first")
        user_rows = _index_array(user_rows, len(self.interactions), "user_rows", "num_users")
        return self.interactions[user_rows].astype(np.float32) @ self.weights

    def _fit_gram(self, interactions: np.ndarray, gram: np.ndarray, l2: float) -> EASE:
        if not np.isfinite(l2) or l2 <= 0:
            raise ValueError(f"l2 must be a positive number, got {l2}")
        regularised = gram.copy()
        regularised[np.diag_indices_from(regularised)] += l2
        inverse = np.linalg.inv(regularised)
        weights = -inverse / np.diag(inverse)[None, :]
        np.fill_diagonal(weights, 0.0)  # an item may not predict itself: the constraint that makes EASE work
        self.weights = weights.astype(np.float32)
        self.interactions = interactions
        self.l2 = float(l2)
        return self


def tune_ease_l2(train_user_index: np.ndarray, train_item_index: np.ndarray,
                 validation_user_index: np.ndarray, validation_item_index: np.ndarray, num_users: int,
                 num_items: int, grid: Sequence[float] = EASE_L2_GRID, k: int = 100) -> float:
    """Picks EASE's λ by validation recall@k, with each user's training items excluded.

    Fit on the training rows only; the validation rows are held-out interactions (e.g. from
    ``tfmtl.data.hold_out_validation``), never the test rows. XᵀX is computed once for the whole grid.

    Args:
        train_user_index: int [N] user indices of the training rows.
        train_item_index: int [N] item indices of the training rows.
        validation_user_index: int [M] user indices of the validation rows.
        validation_item_index: int [M] item indices of the validation rows.
        num_users: U.
        num_items: I.
        grid: candidate λ values, tried in order; ties go to the earlier one.
        k: the recall cut-off.

    Returns:
        The λ with the highest validation ``retrieval/recall_at_{k}``.
    """
    grid = tuple(float(value) for value in grid)
    if not grid:
        raise ValueError("grid is empty; give at least one l2 value to try")
    validation_user_index = _index_array(validation_user_index, num_users, "validation_user_index", "num_users")
    validation_item_index = _index_array(validation_item_index, num_items, "validation_item_index", "num_items")
    _same_length(validation_user_index, validation_item_index, "validation_user_index", "validation_item_index")
    if validation_user_index.size == 0:
        raise ValueError("there are no validation rows to tune l2 on")
    interactions = interaction_matrix(train_user_index, train_item_index, num_users, num_items)
    gram = _gram(interactions)
    best_l2, best_recall = grid[0], -1.0
    for l2 in grid:
        model = EASE()._fit_gram(interactions, gram, l2)
        recall = _recall_at_k(model, interactions, validation_user_index, validation_item_index, k)
        if recall > best_recall:
            best_l2, best_recall = l2, recall
    return best_l2


class BiasesModel:
    """Rating baseline ``r̂ = μ + b_u + b_i``, fitted by alternating regularised least squares.

    Each round solves the item biases given the user biases, then the user biases given the item biases, each
    in closed form: ``b_i = Σ_u (r − μ − b_u) / (λ + n_i)``. Unknown users or items (index −1) get a 0 bias.
    """

    def __init__(self) -> None:
        self.mean: float | None = None
        self.user_bias: np.ndarray | None = None  # float64 [U]
        self.item_bias: np.ndarray | None = None  # float64 [I]

    def fit(self, user_index: np.ndarray, item_index: np.ndarray, ratings: np.ndarray, num_users: int,
            num_items: int, l2: float = 10.0, rounds: int = 10) -> BiasesModel:
        """Fits μ and the biases on training ratings.

        Args:
            user_index: int [N] in ``[0, num_users)``.
            item_index: int [N] in ``[0, num_items)``.
            ratings: float [N].
            num_users: U.
            num_items: I.
            l2: λ, shrinks the biases of users and items with few ratings towards 0 (>= 0).
            rounds: alternating passes (a handful converge on MovieLens).

        Returns:
            self.
        """
        user_index = _index_array(user_index, num_users, "user_index", "num_users")
        item_index = _index_array(item_index, num_items, "item_index", "num_items")
        ratings = np.asarray(ratings, dtype=np.float64)
        _same_length(user_index, item_index, "user_index", "item_index")
        _same_length(user_index, ratings, "user_index", "ratings")
        if ratings.size == 0:
            raise ValueError("BiasesModel.fit got no ratings")
        if not np.isfinite(ratings).all():
            row = int(np.flatnonzero(~np.isfinite(ratings))[0])
            raise ValueError(f"ratings[{row}] is {ratings[row]}; ratings must be finite")
        if not np.isfinite(l2) or l2 < 0:
            raise ValueError(f"l2 must be >= 0, got {l2}")
        if rounds < 1:
            raise ValueError(f"rounds must be >= 1, got {rounds}")
        mean = float(ratings.mean())
        residual = ratings - mean
        user_count = np.bincount(user_index, minlength=num_users)
        item_count = np.bincount(item_index, minlength=num_items)
        user_bias = np.zeros(num_users)
        item_bias = np.zeros(num_items)
        for _ in range(rounds):
            item_bias = _shrunk_mean(residual - user_bias[user_index], item_index, item_count, l2)
            user_bias = _shrunk_mean(residual - item_bias[item_index], user_index, user_count, l2)
        self.mean, self.user_bias, self.item_bias = mean, user_bias, item_bias
        return self

    def predict(self, user_index: np.ndarray, item_index: np.ndarray) -> np.ndarray:
        """Predicted ratings (not clipped to the rating scale).

        Args:
            user_index: int [N] in ``[0, U)``, or −1 for a user unseen in training.
            item_index: int [N] in ``[0, I)``, or −1 for an item unseen in training.

        Returns:
            float32 [N].
        """
        if self.mean is None or self.user_bias is None or self.item_bias is None:
            raise ValueError("BiasesModel.predict called before fit(); fit it on the training ratings first")
        user_index = _index_array(user_index, len(self.user_bias), "user_index", "num_users", allow_unknown=True)
        item_index = _index_array(item_index, len(self.item_bias), "item_index", "num_items", allow_unknown=True)
        _same_length(user_index, item_index, "user_index", "item_index")
        user_part = np.where(user_index >= 0, self.user_bias[np.maximum(user_index, 0)], 0.0)
        item_part = np.where(item_index >= 0, self.item_bias[np.maximum(item_index, 0)], 0.0)
        return (self.mean + user_part + item_part).astype(np.float32)


class LogisticRegression:
    """L2-regularised logistic regression, one per output column (multi-label), fitted by Newton's method (IRLS):
    features [N, F] -> probabilities [N, G]. The intercepts are not penalised. Small F only (an F x F solve)."""

    def __init__(self, l2: float = 1.0, iterations: int = 50, tolerance: float = 1e-8) -> None:
        self.l2, self.iterations, self.tolerance = float(l2), iterations, tolerance
        self.weights: np.ndarray | None = None  # [F + 1, G], the intercept last

    def fit(self, features: np.ndarray, labels: np.ndarray, initial: np.ndarray | None = None) -> LogisticRegression:
        """labels: [N] or [N, G] of 0/1; ``initial``: starting weights [F + 1, G] (e.g. a nearby L2's fit)."""
        x = _with_intercept(np.asarray(features, np.float64))
        y = np.asarray(labels, np.float64).reshape(len(x), -1)
        if not np.isin(y, (0.0, 1.0)).all():
            raise ValueError("LogisticRegression: labels must be 0 or 1")
        penalty = _penalty(x.shape[1], self.l2)
        self.weights = np.zeros((x.shape[1], y.shape[1])) if initial is None else np.array(initial, np.float64)
        for g in range(y.shape[1]):
            w = self.weights[:, g]
            for _ in range(self.iterations):
                p = _sigmoid(x @ w)
                gradient = x.T @ (p - y[:, g]) + penalty * w
                hessian = (x * (p * (1 - p))[:, None]).T @ x + np.diag(penalty) + 1e-9 * np.eye(len(w))
                step = np.linalg.solve(hessian, gradient)
                w -= step
                if np.max(np.abs(step)) < self.tolerance:
                    break
        return self

    def predict(self, features: np.ndarray) -> np.ndarray:
        """Probabilities [N, G] (G = 1 when fitted on one label column)."""
        if self.weights is None:
            raise ValueError("LogisticRegression: call fit first")
        return _sigmoid(_with_intercept(np.asarray(features, np.float64)) @ self.weights)


class Ridge:
    """L2-regularised least squares, one per output column, in closed form: features [N, F] -> values [N, G].
    The intercepts are not penalised. Small F only (an F x F solve)."""

    def __init__(self, l2: float = 1.0) -> None:
        self.l2 = float(l2)
        self.weights: np.ndarray | None = None  # [F + 1, G], the intercept last

    def fit(self, features: np.ndarray, targets: np.ndarray) -> Ridge:
        """targets: [N] or [N, G], finite."""
        x = _with_intercept(np.asarray(features, np.float64))
        y = np.asarray(targets, np.float64).reshape(len(x), -1)
        if not np.isfinite(y).all():
            raise ValueError("Ridge: targets must be finite (leave out the rows whose value is missing)")
        penalty = _penalty(x.shape[1], self.l2)
        self.weights = np.linalg.solve(x.T @ x + np.diag(penalty) + 1e-9 * np.eye(x.shape[1]), x.T @ y)
        return self

    def predict(self, features: np.ndarray) -> np.ndarray:
        """Values [N, G] (G = 1 when fitted on one column)."""
        if self.weights is None:
            raise ValueError("Ridge: call fit first")
        return _with_intercept(np.asarray(features, np.float64)) @ self.weights


def _penalty(size: int, l2: float) -> np.ndarray:
    """Per-weight L2 strengths [size]: the intercept (last) unpenalised."""
    penalty = np.full(size, l2)
    penalty[-1] = 0.0
    return penalty


def _with_intercept(x: np.ndarray) -> np.ndarray:
    return np.hstack([x, np.ones((len(x), 1))])


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # no overflow for large |x|


def _gram(interactions: np.ndarray) -> np.ndarray:
    # Counts are integers below 2**24, so the float32 product is exact; only the inverse needs float64.
    dense = interactions.astype(np.float32)
    return (dense.T @ dense).astype(np.float64)


def _recall_at_k(model: EASE, seen: np.ndarray, user_index: np.ndarray, item_index: np.ndarray, k: int) -> float:
    ranks = []
    for start in range(0, len(user_index), _SCORE_CHUNK):
        users = user_index[start:start + _SCORE_CHUNK]
        _, excluded = retrieval_ranks(model.scores(users), item_index[start:start + _SCORE_CHUNK],
                                      seen[users])
        ranks.append(excluded)
    excluded = np.concatenate(ranks)
    return retrieval_metrics(excluded, excluded, ks=(k,))[f"retrieval/recall_at_{k}"]


def _shrunk_mean(values: np.ndarray, groups: np.ndarray, counts: np.ndarray, l2: float) -> np.ndarray:
    sums = np.bincount(groups, weights=values, minlength=len(counts))
    denominator = counts + l2
    return np.divide(sums, denominator, out=np.zeros_like(sums), where=denominator > 0)


def _index_array(values: np.ndarray, size: int, name: str, size_name: str, allow_unknown: bool = False) -> np.ndarray:
    values = np.asarray(values)
    if values.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {values.shape}")
    if values.size and not np.issubdtype(values.dtype, np.integer):
        raise ValueError(f"{name} must hold integer indices, got dtype {values.dtype}")
    if int(size) != size or size < 0:
        raise ValueError(f"{size_name} must be a non-negative integer, got {size}")
    low = -1 if allow_unknown else 0
    if values.size:
        bad = (values < low) | (values >= size)
        if bad.any():
            position = int(np.flatnonzero(bad)[0])
            allowed = f"[{low}, {size})" + (" (-1 = unknown)" if allow_unknown else "")
            raise ValueError(f"{name}[{position}] = {int(values[position])} is outside {allowed}; "
                             f"check {size_name} or the id-to-index mapping")
    return values.astype(np.int64, copy=False)


def _same_length(first: np.ndarray, second: np.ndarray, first_name: str, second_name: str) -> None:
    if len(first) != len(second):
        raise ValueError(f"{first_name} and {second_name} must have equal lengths, got {len(first)} and "
                         f"{len(second)}")


__all__ = ["EASE_L2_GRID", "interaction_matrix", "popularity_scores", "EASE", "tune_ease_l2", "BiasesModel"]
