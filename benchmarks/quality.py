"""Quality on MovieLens-100K, TFRS tutorial split (seed-42 shuffle, 80k / 20k), every model in one process.

Models: popularity; EASE (Steck 2019, λ tuned on a validation part of the training rows); a user/item biases
rating model; TFRS's multitask tutorial joint model as published (keyed by item id, see tfrs_tutorial.py);
tfmtl's default model. Neural models run over several seeds and report mean ± sd.

Metrics: ``retrieval/top_100_accuracy`` (the TFRS protocol: all items, nothing excluded), ``retrieval/recall_at_K``
and ``retrieval/ndcg_at_10`` (the user's training items excluded; micro-averaged over test rows), ``rating/rmse``.

Cold start: 20% of the rated items are held out entirely (all their ratings go to test); tfmtl with and without
its text features, and popularity, are judged on the interactions with those unseen items, ranked against the
whole catalog with the user's training items excluded, and ranked among the new items only (which of the new
items will this user like). A content reference ranks the new items by the items' content alone (genres, year,
the pretrained MiniLM's title embeddings): how much the titles say beyond genres and year, whatever the model.

Run: .venv/bin/python benchmarks/quality.py [--seeds 42 1 2] [--epochs N] [--skip-cold-start]
Writes benchmarks/results/quality.json and quality.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

# isort: off
import tfmtl  # noqa: F401  (Keras 2 for TFRS, before TensorFlow loads)
from tfmtl.baselines import EASE, BiasesModel, popularity_scores, tune_ease_l2
from tfmtl.config import Config
from tfmtl.data import InteractionData, load_dataset, tfrs_tutorial_split
from tfmtl.data.splits import Split, hold_out_validation
from tfmtl.encoders.text import MINILM_PRESET, TextEncoder
from tfmtl.evaluate import evaluate_model
from tfmtl.metrics import chunked_retrieval_metrics, rating_metrics
from tfmtl.training import train

sys.path.insert(0, str(Path(__file__).resolve().parent))
import figures  # noqa: E402
from journal import Journal, fingerprint  # noqa: E402
from tfrs_tutorial import PUBLISHED, Budget, run_tfrs_tutorial, seen_excluded_metrics  # noqa: E402

# isort: on

RESULTS = Path(__file__).resolve().parent / "results"
REPORTED = ("retrieval/top_100_accuracy", "retrieval/recall_at_10", "retrieval/recall_at_100",
            "retrieval/ndcg_at_10", "rating/rmse")
COLD_REPORTED = ("retrieval/recall_at_10", "retrieval/recall_at_100", "retrieval/ndcg_at_10")
SCORE_CHUNK = 4096


def _log(message: str) -> None:
    print(f"[quality] {message}", file=sys.stderr, flush=True)


# === Baselines ===

def _indices(data: InteractionData) -> tuple[np.ndarray, np.ndarray, int, int]:
    """User and item indices of every interaction; items in ``data.items`` order (the evaluation catalog)."""
    users = {u: i for i, u in enumerate(data.users["user_id"].astype(str))}
    items = {m: i for i, m in enumerate(data.items["item_id"].astype(str))}
    frame = data.interactions
    return (frame["user_id"].astype(str).map(users).to_numpy(np.int64),
            frame["item_id"].astype(str).map(items).to_numpy(np.int64), len(users), len(items))


def _ranked_metrics(score_rows, user_index: np.ndarray, item_index: np.ndarray, seen: np.ndarray,
                    rows: np.ndarray) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """Retrieval metrics of a scorer ``score_rows(user_indices) -> [n, I]`` over test ``rows``."""
    users = user_index[rows]
    return chunked_retrieval_metrics(lambda start, stop: score_rows(users[start:stop]), item_index[rows],
                                     lambda start, stop: seen[users[start:stop]], chunk_size=SCORE_CHUNK)


def baselines(data: InteractionData, split: Split, test: np.ndarray, seed: int) -> dict[str, dict[str, float]]:
    user_index, item_index, num_users, num_items = _indices(data)
    train_rows = split.train
    seen = np.zeros((num_users, num_items), dtype=bool)
    seen[user_index[train_rows], item_index[train_rows]] = True
    popularity = popularity_scores(item_index[train_rows], num_items)
    results = {"popularity": _ranked_metrics(lambda users: np.tile(popularity, (len(users), 1)),
                                             user_index, item_index, seen, test)}
    tuning = hold_out_validation(split, 0.1, seed=seed)
    l2 = tune_ease_l2(user_index[tuning.train], item_index[tuning.train], user_index[tuning.validation],
                      item_index[tuning.validation], num_users, num_items)
    ease = EASE().fit(user_index[train_rows], item_index[train_rows], num_users, num_items, l2=l2)
    results["ease"] = {**_ranked_metrics(ease.scores, user_index, item_index, seen, test), "l2": l2}
    ratings = data.interactions["rating"].to_numpy(np.float32)
    biases = BiasesModel().fit(user_index[train_rows], item_index[train_rows], ratings[train_rows], num_users,
                               num_items)
    results["biases"] = rating_metrics(biases.predict(user_index[test], item_index[test]), ratings[test])
    return results


# === Neural models ===

def tfrs_runs(data: InteractionData, split: Split, seeds: list[int], budget: Budget = PUBLISHED,
              label: str = "tfrs") -> list[dict[str, float]]:
    runs = []
    for seed in seeds:
        started = time.perf_counter()
        metrics, scorer = run_tfrs_tutorial(data, split, seed=seed, budget=budget)
        excluded = seen_excluded_metrics(data, split, scorer)
        runs.append({"retrieval/top_100_accuracy": metrics["retrieval/top_100_accuracy"],
                     **{k: v for k, v in excluded.items() if not k.startswith("retrieval/top_")},
                     "rating/rmse": metrics["rating/rmse"], "seconds": time.perf_counter() - started,
                     **{k: metrics[k] for k in ("epochs", "best_epoch") if k in metrics}})
        _log(f"{label} seed {seed}: { {k: round(v, 4) for k, v in runs[-1].items()} }")
    return runs


# The tuned TFRS peer's choices, each judged on the validation rows at the first seed.
TFRS_OPTIMIZERS = (("adagrad", 0.1), ("adam", 1e-3), ("adam", 3e-3), ("adam", 1e-2))


def tfrs_tuned(data: InteractionData, split: Split, seeds: list[int], config: Config) -> dict[str, object]:
    """The tutorial's architecture with tfmtl's training budget: at most ``train.epochs`` epochs at tfmtl's batch
    size, early stopping with tfmtl's patience on the same share of training rows held out (seeded as tfmtl's), and
    the optimiser and learning rate chosen on those rows."""
    validation = hold_out_validation(split, config.train.validation_fraction, seed=config.train.seed).validation
    budgets = {f"{name} {rate:g}": Budget(epochs=config.train.epochs, batch_size=config.train.batch_size,
                                         optimizer=name, learning_rate=rate, patience=config.train.patience,
                                         validation=tuple(int(v) for v in validation))
               for name, rate in TFRS_OPTIMIZERS}
    scores = {}
    for label, budget in budgets.items():
        metrics, _ = run_tfrs_tutorial(data, split, seed=seeds[0], budget=budget)
        scores[label] = metrics["validation/top_100_accuracy"]
        _log(f"tfrs_tuned {label}: validation top-100 {scores[label]:.4f} (best epoch {metrics['best_epoch']:.0f})")
    chosen = max(scores, key=scores.__getitem__)
    runs = tfrs_runs(data, split, seeds, budgets[chosen], label="tfrs_tuned")
    return {**summarize(runs), "optimizer": chosen, "validation_top_100_accuracy": scores,
            "validation_rows": int(len(validation)), "max_epochs": config.train.epochs,
            "batch_size": config.train.batch_size, "patience": config.train.patience}


def tfmtl_run(config: Config, data: InteractionData, split: Split, test: np.ndarray, seed: int,
              workdir: Path, label: str, *, candidates: list[str] | None = None,
              subsets: dict[str, set[str]] | None = None) -> dict[str, float]:
    """Trains on ``split.train`` (its own validation part carved out inside), judges ``test``; with
    ``candidates``, also ranked among those items only (``new_items/...``); with ``subsets`` (name -> item ids),
    also judged on the test rows of each subset's items alone (``<name>/...`` and ``<name>/new_items/...``)."""
    config = dataclasses.replace(config, train=dataclasses.replace(config.train, seed=seed))
    started = time.perf_counter()
    result = train(config, output=workdir / f"{label}-{seed}", data=data, split=split, evaluate_test=False,
                   progress=False)
    # Everything observed before test (training and validation rows) is the user's known history, as for
    # the baselines.
    metrics = evaluate_model(result.model, data, result.split.known, test,
                             batch_size=config.train.eval_batch_size)
    metrics["seconds"] = time.perf_counter() - started
    if candidates is not None:
        among = evaluate_model(result.model, data, result.split.known, test, tasks=("retrieval",),
                               batch_size=config.train.eval_batch_size, candidates=candidates)
        metrics.update({f"new_items/{k}": v for k, v in among.items()})
        metrics.update(_on_subsets(result.model, data, result.split.known, test, candidates, subsets or {},
                                   config.train.eval_batch_size))
    else:
        # The baselines read each user's whole training history; tfmtl's default reads the part before the test
        # row's time (what a served model has at that moment). Both are reported.
        whole = evaluate_model(result.model, data, result.split.known, test,
                               batch_size=config.train.eval_batch_size, until_row_time=False)
        metrics.update({f"whole_history/{k}": v for k, v in whole.items()})
    metrics["epochs"] = len(result.history)
    _log(f"{label} seed {seed}: { {k: round(metrics[k], 4) for k in (*REPORTED, 'seconds') if k in metrics} }")
    return metrics


def _on_subsets(model: Any, data: InteractionData, known: np.ndarray, test: np.ndarray, candidates: list[str],
                subsets: dict[str, set[str]], batch_size: int) -> dict[str, float]:
    """The retrieval metrics on the test rows of each subset's items: against the whole catalog and among the
    ``candidates`` only."""
    items = data.interactions["item_id"].astype(str).to_numpy()[test]
    metrics = {}
    for name, chosen in subsets.items():
        rows = test[np.isin(items, sorted(chosen))]
        if len(rows) == 0:
            continue
        judged = retrieval_whole_and_among(model, data, known, rows, candidates, batch_size)
        metrics.update({f"{name}/{k}": v for k, v in judged.items()})
        metrics[f"{name}/test_rows"] = float(len(rows))
    return metrics


def retrieval_whole_and_among(model: Any, data: InteractionData, known: np.ndarray, rows: np.ndarray,
                              candidates: list[str], batch_size: int) -> dict[str, float]:
    """The retrieval metrics of ``rows`` against the whole catalog, and among the ``candidates`` only
    (``new_items/...``)."""
    whole = evaluate_model(model, data, known, rows, tasks=("retrieval",), batch_size=batch_size)
    among = evaluate_model(model, data, known, rows, tasks=("retrieval",), batch_size=batch_size,
                           candidates=candidates)
    return {**whole, **{f"new_items/{k}": v for k, v in among.items()}}


def summarize(runs: list[dict[str, float]]) -> dict[str, object]:
    """Metric -> mean, sd and every seed's value (in the order of the seeds)."""
    names = [k for k in runs[0] if all(k in r for r in runs)]
    return {name: {"mean": float(np.mean([r[name] for r in runs])),
                   "sd": float(np.std([r[name] for r in runs], ddof=1)) if len(runs) > 1 else 0.0,
                   "values": [float(r[name]) for r in runs]} for name in names}


# === Cold start ===

def hold_out_items(data: InteractionData, fraction: float = 0.2, draw: int = 0) -> tuple[Split, set[str]]:
    """``fraction`` of the rated items (drawn with seed ``draw``) held out entirely: the split trains on the TFRS
    tutorial split's training rows of the other items and tests on every row of the held-out ones. Training seeds
    do not move which items are new; another ``draw`` does (its number is in the split's notes)."""
    rng = np.random.default_rng(draw)
    rated = np.array(sorted(data.interactions["item_id"].astype(str).unique()))
    held_out = set(rng.choice(rated, int(round(len(rated) * fraction)), replace=False))
    is_cold = data.interactions["item_id"].astype(str).isin(held_out).to_numpy()
    base = tfrs_tutorial_split(len(data.interactions))
    notes = {"item_draw": draw} if draw else {}  # the first draw's journals predate the note
    return Split("cold_start", train=np.sort(base.train[~is_cold[base.train]]), test=np.flatnonzero(is_cold),
                 notes=notes), held_out


def cold_start(data: InteractionData, config: Config, seeds: list[int], workdir: Path, *,
               views: dict[str, np.ndarray], combinations: tuple[tuple[str, ...], ...],
               fraction: float = 0.2) -> dict[str, object]:
    """Holds out ``fraction`` of the rated items entirely; tfmtl with and without text, popularity, and a content
    k-NN over each combination of the item content ``views`` (name -> [items, dims], ``data.items`` order)."""
    split, held_out = hold_out_items(data, fraction)
    train_rows, cold_rows = split.train, split.test
    _log(f"cold start: {len(held_out)} items held out, {len(train_rows):,} training rows, "
         f"{len(cold_rows):,} cold test rows")
    user_index, item_index, num_users, num_items = _indices(data)
    seen = np.zeros((num_users, num_items), dtype=bool)
    seen[user_index[train_rows], item_index[train_rows]] = True
    popularity = popularity_scores(item_index[train_rows], num_items)
    results: dict[str, object] = {
        "held_out_items": len(held_out), "cold_test_rows": int(len(cold_rows)),
        "popularity": _ranked_metrics(lambda users: np.tile(popularity, (len(users), 1)), user_index, item_index,
                                      seen, cold_rows)}
    # Among the new items only: chance, and what the items' content alone says.
    is_new = np.isin(data.items["item_id"].astype(str).to_numpy(), sorted(held_out))
    among: dict[str, object] = {"candidates": int(is_new.sum()),
                                "random": {f"retrieval/recall_at_{k}": min(k, int(is_new.sum())) / is_new.sum()
                                           for k in (10, 100)}}
    among["content_views"] = ["+".join(names) for names in combinations]
    among.update(content_reference(views, combinations, seen, is_new, user_index, item_index, cold_rows))
    no_text = dataclasses.replace(config, model=dataclasses.replace(config.model, text_features=(), history_text=False))
    for label, variant in (("tfmtl", config), ("tfmtl_without_text", no_text)):
        runs = [tfmtl_run(variant, data, split, cold_rows, seed, workdir, f"cold-{label}", candidates=sorted(held_out))
                for seed in seeds]
        results[label] = summarize([{k: r[k] for k in (*COLD_REPORTED, "seconds")} for r in runs])
        among[label] = summarize([{k: r[f"new_items/{k}"] for k in COLD_REPORTED} for r in runs])
    results["among_new_items"] = among
    for entry in (results, among):
        with_text = entry["tfmtl"]["retrieval/recall_at_100"]["mean"]  # type: ignore[index]
        without = entry["tfmtl_without_text"]["retrieval/recall_at_100"]["mean"]  # type: ignore[index]
        entry["recall_at_100_ratio_text_vs_no_text"] = with_text / without if without else None  # no ratio to 0
    return results


def validation_items(data: InteractionData, split: Split, fraction: float, seed: int = 1) -> Split:
    """A second cold-start split inside ``split.train``: ``fraction`` of its items held out of training, their
    training rows the validation part (cold to the model, disjoint from the test items). It keeps ``split``'s notes
    (an item draw's number): another draw, another journal key for the selection runs."""
    items = data.interactions["item_id"].astype(str).to_numpy()
    rated = np.array(sorted(set(items[split.train])))
    held = set(np.random.default_rng(seed).choice(rated, int(round(len(rated) * fraction)), replace=False))
    cold = np.isin(items[split.train], sorted(held))
    return Split("cold_validation", train=split.train[~cold], test=np.zeros(0, dtype=np.int64),
                 validation=split.train[cold], notes={**split.notes, "validation_items": len(held)})


def select_on_validation_items(data: InteractionData, split: Split, candidates: dict[str, Config], seed: int,
                               workdir: Path, *, journal: Journal | None = None,
                               data_key: str = "") -> dict[str, dict[str, float]]:
    """Each candidate setting trained without the validation items and early-stopped on their (cold) rows: its best
    validation ``train.monitor`` and that epoch. With a ``journal``, finished candidates are not trained again."""
    journal = journal or Journal(None)
    out = {}
    for label, config in candidates.items():
        config = dataclasses.replace(config, train=dataclasses.replace(config.train, seed=seed,
                                                                       validation_fraction=0.0))

        def select(config: Config = config, label: str = label) -> dict[str, float]:
            result = train(config, output=workdir / f"select-{label}", data=data, split=split, evaluate_test=False,
                           progress=False)
            key = f"validation/{config.train.monitor}"
            scores = [row.get(key, float("-inf")) for row in result.history]
            return {"validation": float(max(scores)), "epoch": int(np.argmax(scores)) + 1}

        out[label] = journal.run(f"select {workdir.name} {label}",
                                 fingerprint(config.get_config(), data_key, split.summary()), select)
        _log(f"select {label}: {out[label]}")
    return out


def cold_start_selected(data: InteractionData, variants: dict[str, dict[str, Config]], seeds: list[int],
                        workdir: Path, *, fraction: float = 0.2, journal: Journal | None = None,
                        subsets: dict[str, set[str]] | None = None, draw: int = 0) -> dict[str, object]:
    """The cold-start protocol with every variant's settings chosen on validation items: for each variant (e.g.
    with and without text), each candidate setting is judged on a validation hold-out of the training items
    (:func:`validation_items`, disjoint from the test items), the best setting and its best epoch are then trained
    on every training row once per seed and judged on the test items, against the whole catalog. A ``journal``
    keeps each finished training, so that the same call after a stop resumes where it stopped. ``subsets`` (name ->
    item ids) are also judged alone (:func:`tfmtl_run`); ``draw`` picks which items are new (:func:`hold_out_items`)."""
    journal = journal or Journal(None)
    data_key = fingerprint(data.interactions, data.items) if journal.path is not None else ""
    split, held_out = hold_out_items(data, fraction, draw)
    inner = validation_items(data, split, fraction)
    _log(f"cold start with selection: {len(held_out)} test items, {inner.notes['validation_items']} validation items")
    out: dict[str, object] = {"held_out_items": len(held_out), "cold_test_rows": int(len(split.test)),
                              "validation_items": inner.notes["validation_items"],
                              "validation_rows": int(len(inner.validation)), "seeds": seeds}
    for variant, candidates in variants.items():
        selection = select_on_validation_items(data, inner, candidates, seeds[0], workdir / variant,
                                               journal=journal, data_key=data_key)
        chosen = max(selection, key=lambda label: selection[label]["validation"])
        config = candidates[chosen]
        config = dataclasses.replace(config, train=dataclasses.replace(
            config.train, epochs=selection[chosen]["epoch"], validation_fraction=0.0))

        def final(seed: int, config: Config = config, label: str = f"cold-{variant}") -> dict[str, float]:
            return tfmtl_run(config, data, split, split.test, seed, workdir, label, candidates=sorted(held_out),
                             subsets=subsets)

        depends_on = fingerprint(config.get_config(), data_key, split.summary(),
                                 *([sorted(subsets)] if subsets else []))  # earlier journals stay valid
        runs = [journal.run(f"seed {variant} {seed}", depends_on, lambda seed=seed: final(seed)) for seed in seeds]
        out[variant] = {"selection": selection, "chosen": chosen, "epochs": selection[chosen]["epoch"],
                        **summarize([{k: r[k] for k in (*COLD_REPORTED, "seconds")} for r in runs]),
                        "among_new_items": summarize([{k: r[f"new_items/{k}"] for k in COLD_REPORTED} for r in runs])}
        if subsets:
            out[variant]["subsets"] = {name: {
                "test_rows": int(runs[0].get(f"{name}/test_rows", 0)),
                **summarize([{k: r[f"{name}/{k}"] for k in COLD_REPORTED if f"{name}/{k}" in r} for r in runs]),
                "among_new_items": summarize([{k: r[f"{name}/new_items/{k}"] for k in COLD_REPORTED
                                               if f"{name}/new_items/{k}" in r} for r in runs])}
                for name in subsets}
    return out


CONTENT_VIEWS = (("genres",), ("year",), ("title",), ("genres", "year"), ("genres", "year", "title"))


def movielens_views(data: InteractionData, config: Config) -> dict[str, np.ndarray]:
    """Genres (multi-hot), year (5-year buckets), title (the frozen pretrained MiniLM's embedding, the text the
    model reads)."""
    items = data.items
    genres = sorted({g for values in items["genres"] for g in values})
    multi_hot = np.array([[g in set(values) for g in genres] for values in items["genres"]], dtype=np.float64)
    column = (config.model.text_features or ("title",))[0]
    return {"genres": multi_hot, "year": year_buckets(items["year"]), "title": text_view(items[column])}


def year_buckets(years: pd.Series) -> np.ndarray:
    """One-hot 5-year buckets, unknown years together."""
    values = pd.to_numeric(years, errors="coerce").fillna(-1).to_numpy()
    buckets = np.where(values > 0, (values // 5).astype(int), -1)
    return (buckets[:, None] == np.unique(buckets)[None, :]).astype(np.float64)


def text_view(texts: pd.Series, sequence_length: int | None = None, preset: str = MINILM_PRESET,
              pooling: str = "mean") -> np.ndarray:
    """The frozen MiniLM-L6 (or ``preset``'s, pooled its way) embedding of each text, read up to ``sequence_length``
    tokens (the encoder's default otherwise): pass the model's own length, so that the view holds what the model
    reads."""
    options = {"sequence_length": sequence_length} if sequence_length else {}
    encoder = TextEncoder.from_preset(preset, pooling=pooling, **options)
    return encoder.embed(texts.astype(str).tolist(), batch_size=128).astype(np.float64)


def content_reference(views: dict[str, np.ndarray], combinations: tuple[tuple[str, ...], ...], seen: np.ndarray,
                      candidates: np.ndarray, user_index: np.ndarray, item_index: np.ndarray,
                      rows: np.ndarray) -> dict[str, object]:
    """Content-based k-NN over the candidates, no training: a user's profile is the sum of their training items'
    content vectors (each view centred and unit length), candidates are ranked by profile · item."""
    def unit(matrix: np.ndarray) -> np.ndarray:
        centred = matrix - matrix.mean(axis=0)
        return centred / np.maximum(np.linalg.norm(centred, axis=1, keepdims=True), 1e-12)

    excluded = seen | ~candidates[np.newaxis, :]
    out: dict[str, object] = {}
    for names in combinations:
        content = np.hstack([unit(views[name]) for name in names])
        profiles = seen.astype(np.float64) @ content
        scores = lambda users, profiles=profiles, content=content: profiles[users] @ content.T  # noqa: E731
        out[f"content_knn_{'+'.join(names)}"] = _ranked_metrics(scores, user_index, item_index, excluded, rows)
    return out


# === Report ===

def _value(entry: object, name: str) -> str:
    if not isinstance(entry, dict) or name not in entry:
        return "–"
    value = entry[name]
    if isinstance(value, dict):
        return f"{value['mean']:.4f} ± {value['sd']:.4f}"
    return f"{value:.4f}"


# Each row says in the table what its model is given; the headline table puts every model under one protocol.
QUALITY_ROWS = {
    "popularity": "popularity (training counts)",
    "ease": "EASE (λ chosen on validation)",
    "biases": "user + item biases (ratings only)",
    "tfrs": "TFRS tutorial as published: 3 epochs at batch 8192",
    "tfrs_tuned": "TFRS tutorial architecture with tfmtl's budget: early stopping, optimiser chosen on validation",
    "tfmtl_whole_history": "tfmtl, its user tower reading every training item of the user",
}
TIME_ORDERED_ROWS = {"tfmtl": "tfmtl, its user tower reading the user's items before each test event"}
PER_SEED = ("retrieval/recall_at_100", "retrieval/ndcg_at_10", "rating/rmse")


def protocol(seeds: list[int]) -> dict[str, object]:
    """What every row of the headline tables is measured on and given (the JSON's record of the protocol)."""
    return figures.protocol(
        "the TFRS tutorial split: the ratings shuffled with seed 42, the first 80% train, the rest test",
        {**QUALITY_ROWS, **TIME_ORDERED_ROWS}, seeds=seeds,
        ranking="recall@K and NDCG@K rank every item with the user's training items excluded, micro-averaged over "
                "test rows; top-100 accuracy excludes nothing (the TFRS tutorial's metric)",
        validation="carved out of the training rows, never the test rows: EASE's λ on 10% of them; tfmtl and the "
                   "tuned TFRS peer early-stop on train.validation_fraction of them, where the tuned peer's "
                   "optimiser is also chosen",
        seeded=[m for m in (*QUALITY_ROWS, *TIME_ORDERED_ROWS) if m not in ("popularity", "ease", "biases")])


def markdown(results: dict[str, object]) -> str:
    header = ["| " + " | ".join(n.split("/")[1] for n in REPORTED) + " |", "|---|" + "---|" * len(REPORTED)]

    def rows(labels: dict[str, str]) -> list[str]:
        return [f"| {label} | " + " | ".join(_value(results[model], n) for n in REPORTED) + " |"
                for model, label in labels.items() if model in results]

    lines = ["# Quality: MovieLens-100K, TFRS tutorial split (80,000 / 20,000)", "",
             f"Seeds {results['seeds']} for the neural models (mean ± sd). top-100: the TFRS protocol, nothing "
             "excluded. recall / NDCG: the user's training items excluded, micro-averaged over test rows.", "",
             "## One protocol: every model knows each user's training items, in no particular order", "",
             "| model (all of the user's training items) " + header[0], header[1], *rows(QUALITY_ROWS), "",
             "## With time order: the history a served model has at the moment of each test event", "",
             "No other row gets the order; this is what tfmtl's sequence tower adds when it is served the user's "
             "latest history.", "",
             "| model (the user's items before the test event) " + header[0], header[1], *rows(TIME_ORDERED_ROWS),
             *per_seed_markdown(results)]
    for key in sorted(k for k in results if k.startswith("cold_start")):
        cold = results[key]
        if isinstance(cold, dict):
            lines += cold_start_markdown(cold)
    return "\n".join(lines) + "\n"


def per_seed_markdown(results: dict[str, object]) -> list[str]:
    """Every seed's value of the seeded rows (runs older than the per-seed record have none)."""
    seeded = {m: label for m, label in {**QUALITY_ROWS, **TIME_ORDERED_ROWS}.items()
              if isinstance(results.get(m), dict) and any("values" in v for v in results[m].values()
                                                          if isinstance(v, dict))}
    if not seeded:
        return []
    lines = ["", f"## Every seed ({', '.join(str(s) for s in results['seeds'])})", "",
             "| model | " + " | ".join(n.split("/")[1] for n in PER_SEED) + " |", "|---|" + "---|" * len(PER_SEED)]
    for model in seeded:
        entry = results[model]
        cells = [", ".join(f"{v:.4f}" for v in entry[n]["values"]) if "values" in entry.get(n, {}) else "–"
                 for n in PER_SEED]
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    return lines


def _ratio(value: float | None) -> str:
    return "none (recall@100 without text is 0)" if value is None else f"{value:.2f}×"


def cold_start_markdown(cold: dict) -> list[str]:
    """The cold-start tables: against the whole catalog, then among the new items only."""
    table = ["| model | " + " | ".join(n.split("/")[1] for n in COLD_REPORTED) + " |",
             "|---|" + "---|" * len(COLD_REPORTED)]
    dropout = cold.get("item_id_dropout", 0.0)
    where = f" on {cold['dataset']}" if "dataset" in cold else ""
    lines = ["", f"## Cold start{where}: {cold['held_out_items']} items never seen in training "
                 f"({cold['cold_test_rows']:,} test rows), ranked against the whole catalog", "",
             f"Both tfmtl variants train with item id dropout {dropout} (the unknown-item bucket learns what an "
             "item looks like from its other features)." if dropout else "No item id dropout.", "", *table]
    for model in ("popularity", "tfmtl_without_text", "tfmtl"):
        lines.append(f"| {model} | " + " | ".join(_value(cold[model], n) for n in COLD_REPORTED) + " |")
    lines += ["", f"recall@100 with text / without text: {_ratio(cold['recall_at_100_ratio_text_vs_no_text'])}"]
    among = cold.get("among_new_items")
    if isinstance(among, dict):
        views = among.get("content_views", ["+".join(v) for v in CONTENT_VIEWS])
        lines += ["", f"Ranked among the {among['candidates']} new items only (which of the new items will this "
                      "user like). content_knn_*: no training, the user's training items' content vectors "
                      "summed and matched against each new item's; text views = the frozen MiniLM embedding.", "",
                  *table]
        for model in ("random", *(f"content_knn_{v}" for v in views), "tfmtl_without_text", "tfmtl"):
            lines.append(f"| {model} | " + " | ".join(_value(among[model], n) for n in COLD_REPORTED) + " |")
        lines += ["", f"recall@100 with text / without text: {_ratio(among['recall_at_100_ratio_text_vs_no_text'])}"]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 1, 2])
    parser.add_argument("--epochs", type=int, help="override the default model's maximum epochs")
    parser.add_argument("--config", help="a tfmtl config file instead of the defaults")
    parser.add_argument("--skip-tfrs", action="store_true")
    parser.add_argument("--skip-cold-start", action="store_true")
    parser.add_argument("--tfrs-tuned-only", action="store_true",
                        help="run only the tuned TFRS peer and store it in the existing results")
    parser.add_argument("--cold-start-only", action="store_true",
                        help="run only the cold-start part and merge it into the existing --output JSON")
    parser.add_argument("--item-id-dropout", type=float,
                        help="cold start: train the unknown-item bucket by dropping this share of item ids")
    parser.add_argument("--output", default=str(RESULTS / "quality.json"))
    args = parser.parse_args()

    config = Config.from_file(args.config) if args.config else Config()
    config = dataclasses.replace(config, train=dataclasses.replace(config.train, dataset=args.dataset,
                                                                   **({"epochs": args.epochs} if args.epochs else {})))
    data = load_dataset(args.dataset)
    output = Path(args.output)
    if args.tfrs_tuned_only:
        merge_entry(output, "tfrs_tuned", tfrs_tuned(data, tfrs_tutorial_split(len(data.interactions)), args.seeds,
                                                     config))
        return
    if args.cold_start_only:
        results = json.loads(output.read_text())
        cold_config = config
        if args.item_id_dropout is not None:
            tower = dataclasses.replace(config.model.item_tower, id_dropout=args.item_id_dropout)
            cold_config = dataclasses.replace(config, model=dataclasses.replace(config.model, item_tower=tower))
        with tempfile.TemporaryDirectory(prefix="tfmtl-cold-") as workdir:
            cold = cold_start(data, cold_config, args.seeds, Path(workdir),
                              views=movielens_views(data, cold_config), combinations=CONTENT_VIEWS)
        cold["item_id_dropout"] = cold_config.model.item_tower.id_dropout
        cold["weight_averaging"] = cold_config.train.weight_averaging
        previous = results.pop("cold_start", None)
        if previous and previous.get("item_id_dropout", 0.0) != cold["item_id_dropout"]:  # a rerun replaces it
            results[f"cold_start_item_id_dropout_{previous.get('item_id_dropout', 0.0)}"] = previous
        results["cold_start"] = cold
        _write(results, output)
        return
    split = tfrs_tutorial_split(len(data.interactions))
    results: dict[str, object] = {"dataset": args.dataset, "split": split.summary(), "seeds": args.seeds,
                                  "protocol": protocol(args.seeds), "config": config.get_config()}
    stored = json.loads(output.read_text()) if output.exists() else {}
    kept = {k: v for k, v in stored.items() if k.startswith("cold_start")  # the cold-start entries not redone here
            and (args.skip_cold_start or v.get("dataset", args.dataset) != args.dataset)}
    results.update(kept)
    _log("baselines")
    results.update(baselines(data, split, split.test, seed=args.seeds[0]))
    with tempfile.TemporaryDirectory(prefix="tfmtl-quality-") as workdir:
        if not args.skip_tfrs:
            results["tfrs"] = summarize(tfrs_runs(data, split, args.seeds))
            results["tfrs_tuned"] = tfrs_tuned(data, split, args.seeds, config)
        runs = [tfmtl_run(config, data, split, split.test, seed, Path(workdir), "tfmtl") for seed in args.seeds]
        results["tfmtl"] = summarize([{k: v for k, v in r.items() if not k.startswith("whole_history/")}
                                      for r in runs])
        results["tfmtl_whole_history"] = summarize([{k.split("/", 1)[1]: v for k, v in r.items()
                                                     if k.startswith("whole_history/")} for r in runs])
        if not args.skip_cold_start:
            results["cold_start"] = cold_start(data, config, args.seeds, Path(workdir),
                                               views=movielens_views(data, config), combinations=CONTENT_VIEWS)
    _write(results, output)


def merge_entry(output: Path, key: str, entry: dict) -> None:
    """Stores ``entry`` under ``key`` in an existing results JSON (another benchmark's part of it)."""
    results = json.loads(output.read_text())
    results[key] = entry
    _write(results, output)


def _write(results: dict[str, object], output: Path) -> None:
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=2) + "\n")
    output.with_suffix(".md").write_text(markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
