from __future__ import annotations

import numpy as np
import pytest

from tfmtl.baselines import EASE, BiasesModel, LogisticRegression, interaction_matrix, popularity_scores, tune_ease_l2

# A tiny 5-user x 4-item interaction log (pairs (user, item); the repeated (0, 1) counts once in X).
USERS = np.array([0, 0, 0, 1, 1, 2, 2, 2, 3, 4, 4, 0])
ITEMS = np.array([0, 1, 2, 1, 3, 0, 2, 3, 2, 1, 2, 1])


def test_popularity_counts_by_hand() -> None:
    # item 0: users 0, 2 -> 2; item 1: users 0, 1, 4, 0 again -> 4; item 2: users 0, 2, 3, 4 -> 4; item 3: 1, 2 -> 2
    scores = popularity_scores(ITEMS, 5)
    assert scores.dtype == np.float32
    assert scores.tolist() == [2.0, 4.0, 4.0, 2.0, 0.0]
    with pytest.raises(ValueError, match="item_index"):
        popularity_scores(np.array([0, 5]), 5)


def test_interaction_matrix_is_binary() -> None:
    matrix = interaction_matrix(USERS, ITEMS, 5, 4)
    assert matrix.dtype == bool
    assert matrix.sum() == 11  # 12 rows, one repeated pair
    assert matrix[0].tolist() == [True, True, True, False]


def ridge_per_column(x: np.ndarray, l2: float) -> np.ndarray:
    """EASE column by column: ridge-regress item j on every other item, by least squares on an augmented system."""
    num_items = x.shape[1]
    weights = np.zeros((num_items, num_items))
    for j in range(num_items):
        others = [i for i in range(num_items) if i != j]
        design = np.vstack([x[:, others], np.sqrt(l2) * np.eye(len(others))])
        target = np.concatenate([x[:, j], np.zeros(len(others))])
        weights[others, j] = np.linalg.lstsq(design, target, rcond=None)[0]
    return weights


@pytest.mark.parametrize("l2", [0.5, 3.0])
def test_ease_equals_constrained_ridge_regression(l2: float) -> None:
    model = EASE().fit(USERS, ITEMS, 5, 4, l2=l2)
    x = interaction_matrix(USERS, ITEMS, 5, 4).astype(np.float64)
    expected = ridge_per_column(x, l2)
    np.testing.assert_allclose(model.weights, expected, atol=1e-6)
    assert np.all(np.diag(model.weights) == 0)
    np.testing.assert_allclose(model.scores(np.array([2, 0])), x[[2, 0]] @ expected, atol=1e-6)


def test_ease_on_a_random_matrix_against_ridge() -> None:
    rng = np.random.default_rng(0)
    x = rng.random((40, 9)) < 0.3
    users, items = np.nonzero(x)
    model = EASE().fit(users, items, 40, 9, l2=2.0)
    np.testing.assert_allclose(model.weights, ridge_per_column(x.astype(np.float64), 2.0), atol=1e-5)


def test_ease_errors() -> None:
    with pytest.raises(ValueError, match="before fit"):
        EASE().scores(np.array([0]))
    with pytest.raises(ValueError, match="l2"):
        EASE().fit(USERS, ITEMS, 5, 4, l2=0.0)
    with pytest.raises(ValueError, match="user_index"):
        EASE().fit(USERS, ITEMS, 4, 4)  # user 4 is outside [0, 4)


def test_tune_ease_l2_returns_a_grid_value() -> None:
    rng = np.random.default_rng(1)
    # Two taste groups: users 0-29 like items 0-9, users 30-59 like items 10-19, plus noise.
    group = np.arange(60) >= 30
    liked = rng.random((60, 20)) < np.where(group[:, None] == (np.arange(20) >= 10)[None, :], 0.5, 0.05)
    users, items = np.nonzero(liked)
    validation = rng.random(len(users)) < 0.2
    grid = (1.0, 10.0, 1e6)
    best = tune_ease_l2(users[~validation], items[~validation], users[validation], items[validation], 60, 20,
                        grid=grid, k=5)
    assert best in grid
    with pytest.raises(ValueError, match="grid"):
        tune_ease_l2(users, items, users, items, 60, 20, grid=())


def test_biases_recover_planted_biases() -> None:
    rng = np.random.default_rng(0)
    num_users, num_items = 60, 40
    user_bias = rng.normal(0.0, 0.5, num_users)
    item_bias = rng.normal(0.0, 0.7, num_items)
    user_bias -= user_bias.mean()  # zero-mean, so the global mean identifies mu
    item_bias -= item_bias.mean()
    users, items = (grid.ravel() for grid in np.meshgrid(np.arange(num_users), np.arange(num_items), indexing="ij"))
    ratings = 3.5 + user_bias[users] + item_bias[items] + rng.normal(0.0, 0.05, len(users))
    model = BiasesModel().fit(users, items, ratings, num_users, num_items, l2=0.01, rounds=20)
    assert model.mean == pytest.approx(3.5, abs=0.01)
    np.testing.assert_allclose(model.user_bias, user_bias, atol=0.03)
    np.testing.assert_allclose(model.item_bias, item_bias, atol=0.03)
    predicted = model.predict(np.array([3, -1, 3, -1]), np.array([5, 5, -1, -1]))
    assert predicted[0] == pytest.approx(model.mean + model.user_bias[3] + model.item_bias[5], abs=1e-5)
    assert predicted[1] == pytest.approx(model.mean + model.item_bias[5], abs=1e-5)  # unknown user: 0 bias
    assert predicted[2] == pytest.approx(model.mean + model.user_bias[3], abs=1e-5)  # unknown item: 0 bias
    assert predicted[3] == pytest.approx(model.mean, abs=1e-5)


def test_biases_shrink_sparse_items_by_hand() -> None:
    # One user, one item, rating 5, other ratings 1: mu = (5 + 1 + 1) / 3. With a huge l2 every bias -> 0.
    model = BiasesModel().fit(np.array([0, 1, 1]), np.array([0, 1, 1]), np.array([5.0, 1.0, 1.0]), 2, 2,
                              l2=1e9, rounds=3)
    assert model.predict(np.array([0]), np.array([0]))[0] == pytest.approx(7 / 3, abs=1e-6)
    with pytest.raises(ValueError, match="user_index"):
        model.predict(np.array([-2]), np.array([0]))
    with pytest.raises(ValueError, match="before fit"):
        BiasesModel().predict(np.array([0]), np.array([0]))


# === Logistic regression ===

def test_logistic_regression_on_one_binary_feature_recovers_each_groups_rate() -> None:
    """Unpenalised, one 0/1 feature: the maximum-likelihood fit predicts each group's empirical rate (1/4 and
    2/3 here, worked out by hand)."""
    x = np.array([[0.0], [0.0], [0.0], [0.0], [1.0], [1.0], [1.0]])
    y = np.array([1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.0])
    p = LogisticRegression(l2=0.0).fit(x, y).predict(np.array([[0.0], [1.0]]))
    np.testing.assert_allclose(p[:, 0], [1 / 4, 2 / 3], atol=1e-8)


def test_logistic_regression_stops_where_the_penalised_gradient_vanishes_per_label_column() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3))
    y = np.stack([(x[:, 0] + rng.normal(size=200) > 0), (x[:, 1] - x[:, 2] > 0.5)], axis=1).astype(float)
    model = LogisticRegression(l2=2.0).fit(x, y)
    p = model.predict(x)
    assert p.shape == (200, 2)
    w = model.weights
    assert w is not None
    x1 = np.hstack([x, np.ones((200, 1))])
    for g in range(2):  # the first-order condition of the L2-penalised log-likelihood, intercept unpenalised
        gradient = x1.T @ (p[:, g] - y[:, g]) + 2.0 * np.append(w[:3, g], 0.0)
        np.testing.assert_allclose(gradient, 0.0, atol=1e-6)
    assert np.abs(w[:3, 1]).sum() > np.abs(LogisticRegression(l2=200.0).fit(x, y).weights[:3, 1]).sum()


def test_logistic_regression_names_bad_labels() -> None:
    with pytest.raises(ValueError, match="labels must be 0 or 1"):
        LogisticRegression().fit(np.zeros((2, 1)), np.array([0.0, 2.0]))


def test_logistic_regression_from_a_nearby_fit_reaches_the_same_optimum() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(200, 4))
    y = np.stack([(x[:, 0] + rng.normal(size=200) > 0), (x[:, 1] - x[:, 2] > 0.5)], axis=1).astype(float)
    start = LogisticRegression(l2=50.0).fit(x, y).weights
    warm = LogisticRegression(l2=2.0).fit(x, y, initial=start).weights
    np.testing.assert_allclose(warm, LogisticRegression(l2=2.0).fit(x, y).weights, atol=1e-6)
    assert np.abs(warm - start).max() > 0.1  # it moved: the start was another L2's optimum
