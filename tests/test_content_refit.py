"""The content head refitted after training: the layer the graph runs is the penalised optimum (checked through the
optimality conditions, from the model's own outputs), the run folder keeps it, and the L2 is chosen on held-out
items the way a known signal says it should be."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from tfmtl.config import TaskConfig
from tfmtl.content_refit import L2_GRID, fit_output
from tfmtl.run import RunFolder, load_run


def _catalog_outputs(model) -> np.ndarray:  # type: ignore[no-untyped-def]
    """The content head's outputs over the training catalog, through the model's graph (the layer as assigned)."""
    return model.content_outputs(model._catalog_rows(tf.range(int(tf.size(model._catalog["item_id"]))))).numpy()


def test_the_refitted_genre_layer_is_the_penalised_optimum_and_the_run_keeps_it(toy_run) -> None:  # type: ignore[no-untyped-def]
    refit = RunFolder(toy_run.path).content_refit()
    assert refit is not None
    assert refit["l2"] in L2_GRID and refit["items"] == refit["catalog_items"] > 0
    _, model, _ = load_run(toy_run.path)  # the best weights as saved
    inputs, targets = model.content_fit_set()
    logits = _catalog_outputs(model).astype(np.float64)
    np.testing.assert_allclose(_catalog_outputs(toy_run.model), logits, atol=1e-6)  # as trained = as saved
    kernel = model.content_head.output_layer.kernel.numpy().astype(np.float64)
    bias = model.content_head.output_layer.bias.numpy().astype(np.float64)
    np.testing.assert_allclose(inputs @ kernel + bias, logits, atol=1e-4)
    # Σ_i CE(σ(z_i·w_g + b_g), y_ig) + l2/2 ||w_g||² is minimal: its gradient vanishes for every genre.
    residual = 1.0 / (1.0 + np.exp(-logits)) - targets
    scale = np.abs(inputs.T @ residual).max() + np.abs(refit["l2"] * kernel).max()
    np.testing.assert_allclose(inputs.T @ residual, -refit["l2"] * kernel, atol=1e-3 * scale)
    np.testing.assert_allclose(residual.sum(axis=0), 0.0, atol=1e-3 * len(targets))
    # The last epoch's head, before the refit, is another layer.
    _, latest, _ = load_run(toy_run.path, weights="latest")
    assert np.abs(_catalog_outputs(latest) - logits).max() > 1e-3


def test_the_l2_is_chosen_on_held_out_items_small_for_a_signal_large_for_noise() -> None:
    rng = np.random.default_rng(0)
    inputs = rng.normal(size=(300, 10))
    signal = inputs @ rng.normal(size=10) + 0.1 * rng.normal(size=300)
    grid = (1.0, 100.0, 10_000.0)
    assert fit_output(inputs, signal, grid=grid)[1].l2 == 1.0
    many = rng.normal(size=(300, 100))  # 100 features, 240 items to fit: unregularised, noise is fitted
    assert fit_output(many, rng.normal(size=300), grid=grid)[1].l2 == 10_000.0
    # Unknown values are left out of the fit: NaN rows change nothing but the count.
    with_missing = np.r_[signal, np.full(50, np.nan)]
    weights, refit = fit_output(np.r_[inputs, rng.normal(size=(50, 10))], with_missing, grid=grid)
    np.testing.assert_allclose(weights, fit_output(inputs, signal, grid=grid)[0])
    assert (refit.items, refit.catalog_items) == (300, 350)
    assert fit_output(inputs, signal, grid=grid, max_items=100)[1].items == 100


def test_a_numeric_refit_solves_the_ridge_normal_equations() -> None:
    rng = np.random.default_rng(1)
    inputs, values = rng.normal(size=(80, 6)), rng.normal(size=80)
    weights, refit = fit_output(inputs, values, grid=(3.0,))
    w, b = weights[:-1, 0], weights[-1, 0]
    residual = inputs @ w + b - values
    # d/dw [Σ (z·w + b - y)² + l2 ||w||²] = 0 and d/db = 0.
    np.testing.assert_allclose(inputs.T @ residual + refit.l2 * w, 0.0, atol=1e-8)
    assert abs(residual.sum()) < 1e-8


def test_refit_must_be_true_or_false() -> None:
    with pytest.raises(ValueError, match="refit"):
        TaskConfig(type="content", refit="yes")  # type: ignore[arg-type]
