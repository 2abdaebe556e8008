"""The content task on MovieLens-100K: how well does tfmtl predict an item's genres from its content (title read by
the pretrained MiniLM, year; the genres and the id hidden), against a logistic-regression probe on the same frozen
MiniLM title embeddings plus the year?

Protocol: 20% of the rated movies are held out entirely (the cold-start split of ``quality.py``: none of their
ratings, hence none of their genres, is seen in training). tfmtl trains with its defaults on the rest (the genres
task among its four); the probe is fitted on the same training movies. Each side chooses its regularisation on the
same validation fifth of the training movies, held out of that choice's training entirely: the probe its L2
strength, tfmtl the genres task's dropout (``model.tasks.genres.dropout``, at the first seed; the default 0 keeps
training deterministic). After training tfmtl refits its head's output layer exactly (``tfmtl.content_refit``, on
by default), its L2 chosen on a fifth of its own training catalog, inside ``train``. Both are then refitted on
every training movie and judged by the macro AUC over the genres on the held-out movies; tfmtl's warm figure
(movies it trained on) is shown for reference. The committed JSON keeps the previous head's run (jointly trained
only, before the refit) under ``previous_head``; a rerun carries it over.

Run: .venv/bin/python benchmarks/content_task.py [--seeds 42 1 2] [--dropouts 0.3 0.5 0.7] [--epochs N]
Writes benchmarks/results/content_task.json and .md.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

# isort: off
import tfmtl  # noqa: F401  (Keras 2 for TFRS, before TensorFlow loads)
from tfmtl.baselines import LogisticRegression
from tfmtl.config import Config
from tfmtl.data import load_dataset
from tfmtl.evaluate import evaluate_model
from tfmtl.metrics import multilabel_metrics
from tfmtl.run import RunFolder
from tfmtl.training import train

sys.path.insert(0, str(Path(__file__).resolve().parent))
import figures  # noqa: E402
from quality import RESULTS, hold_out_items, text_view, year_buckets  # noqa: E402

# isort: on

L2_GRID = (0.01, 0.1, 1.0, 10.0, 100.0)


def _log(message: str) -> None:
    print(f"[content] {message}", file=sys.stderr, flush=True)


def validation_items(train_items: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(validation, fit): a fifth of ``train_items`` (item table rows) and the rest."""
    shuffled = np.random.default_rng(seed).permutation(train_items)
    return shuffled[: len(shuffled) // 5], shuffled[len(shuffled) // 5:]


def probe(features: np.ndarray, genres: np.ndarray, train_items: np.ndarray,
          test_items: np.ndarray) -> dict[str, object]:
    """The logistic-regression probe: L2 chosen on the validation fifth of ``train_items``, refitted on all of
    them, judged on ``test_items``."""
    validation, fit = validation_items(train_items)
    scores = {}
    for l2 in L2_GRID:
        model = LogisticRegression(l2=l2).fit(features[fit], genres[fit])
        scores[l2] = multilabel_metrics(model.predict(features[validation]), genres[validation],
                                        prefix="g")["g/macro_auc"]
    best = max(scores, key=scores.__getitem__)
    model = LogisticRegression(l2=best).fit(features[train_items], genres[train_items])
    test = multilabel_metrics(model.predict(features[test_items]), genres[test_items], prefix="g")["g/macro_auc"]
    return {"l2": best, "validation_macro_auc": scores, "macro_auc": test}


def protocol(seeds: list[int]) -> dict[str, object]:
    return figures.protocol(
        "ML-100K: 20% of the rated movies held out of training entirely (quality.hold_out_items, seed 0), judged by "
        "the macro AUC over the genres on them; both sides learn from the other movies",
        seeds=seeds, validation="a fifth of the training movies (seed 0), held out of the runs that choose the "
        "probe's L2 and tfmtl's genres-task dropout and items per step (at the first seed); then refitted on every "
        "training movie",
        given={"probe": "a logistic regression on the frozen MiniLM title embedding plus one-hot 5-year buckets, "
                        "unseeded (a convex fit)",
               "tfmtl": "its defaults (four tasks), the genres task reading the item's content with the genres and "
                        "the id hidden: the MiniLM title embedding and the year embedding; after training its head's "
                        "output layer refitted exactly, the L2 chosen on a fifth of its own training catalog"})


def content_config(seed: int, epochs: int | None, dropout: float, items_per_step: int) -> Config:
    """tfmtl's defaults, the genres task with ``dropout`` on its input and ``items_per_step``."""
    base = Config()
    tasks = {**base.model.tasks, "genres": dataclasses.replace(base.model.tasks["genres"], dropout=dropout,
                                                                 items_per_step=items_per_step)}
    return dataclasses.replace(base, model=dataclasses.replace(base.model, tasks=tasks), train=dataclasses.replace(
        base.train, seed=seed, **({"epochs": epochs} if epochs else {})))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 1, 2])
    parser.add_argument("--epochs", type=int, help="cap the epochs (smoke runs)")
    parser.add_argument("--dropouts", type=float, nargs="+", default=[0.3, 0.5, 0.7],
                        help="the genres task's dropouts to choose from on the validation movies")
    parser.add_argument("--items-per-step", type=int, nargs="+", default=[128],
                        help="the genres task's items per step to choose from (with each dropout)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()

    data = load_dataset("ml-100k")
    split, held_out = hold_out_items(data)
    cold_rows = split.test
    items = data.items
    is_cold = items["item_id"].astype(str).isin(held_out).to_numpy()
    trained_items = np.flatnonzero(~is_cold & items["item_id"].astype(str).isin(
        data.interactions["item_id"].astype(str).iloc[split.train]).to_numpy())
    genre_names = sorted({g for values in items["genres"] for g in values})
    genres = np.array([[g in set(values) for g in genre_names] for values in items["genres"]], dtype=np.float64)
    _log(f"{len(held_out)} movies held out, the probe and tfmtl train on {len(trained_items)}")
    features = np.hstack([text_view(items["title"]), year_buckets(items["year"])])
    reference = probe(features, genres, trained_items, np.flatnonzero(is_cold))
    _log(f"probe: {reference}")

    runs, chosen = [], {}
    with tempfile.TemporaryDirectory(prefix="tfmtl-content-") as folder:
        # tfmtl's dropout, chosen as the probe's L2 is: trained without the validation movies, judged on them.
        validation = set(items["item_id"].astype(str).iloc[validation_items(trained_items)[0]])
        in_validation = data.interactions["item_id"].astype(str).isin(validation).to_numpy()
        fit_rows, validation_rows = split.train[~in_validation[split.train]], split.train[in_validation[split.train]]
        fit_split = dataclasses.replace(split, train=fit_rows, test=validation_rows)
        for dropout, items in itertools.product(args.dropouts, args.items_per_step):
            trained = train(content_config(args.seeds[0], args.epochs, dropout, items), data=data, split=fit_split,
                            output=Path(folder) / f"validation-{dropout}-{items}", progress=False,
                            evaluate_test=False)
            chosen[(dropout, items)] = evaluate_model(trained.model, data, fit_rows, validation_rows,
                                                      tasks=["genres"])["genres/macro_auc"]
            _log(f"dropout {dropout}, {items} items per step: validation macro AUC {chosen[(dropout, items)]:.4f}")
        dropout, items = max(chosen, key=chosen.__getitem__)
        for seed in args.seeds:
            config = content_config(seed, args.epochs, dropout, items)
            trained = train(config, output=Path(folder) / f"seed-{seed}", data=data, split=split, progress=False,
                            evaluate_test=False)
            cold = evaluate_model(trained.model, data, split.train, cold_rows, tasks=["genres"])
            warm = evaluate_model(trained.model, data, trained.split.train, trained.split.validation, tasks=["genres"])
            refit = RunFolder(trained.path).content_refit() or {}
            runs.append({"seed": seed, "cold_macro_auc": cold["genres/macro_auc"],
                         "warm_macro_auc": warm["genres/macro_auc"], "epochs": len(trained.history),
                         "refit_l2": refit.get("l2")})
            _log(f"tfmtl seed {seed}: {runs[-1]}")
    cold_aucs = [r["cold_macro_auc"] for r in runs]
    results = {"protocol": protocol(args.seeds),
               "held_out_movies": len(held_out), "training_movies": len(trained_items), "genres": genre_names,
               "probe": reference, "tfmtl": runs, "seeds": args.seeds, "dropout": dropout, "items_per_step": items,
               "validation_macro_auc": [{"dropout": d, "items_per_step": n, "macro_auc": v}
                                        for (d, n), v in chosen.items()],
               "tfmtl_cold_macro_auc": {"mean": float(np.mean(cold_aucs)),
                                        "sd": float(statistics.stdev(cold_aucs)) if len(runs) > 1 else 0.0},
               "target_holds": bool(np.mean(cold_aucs) >= reference["macro_auc"])}
    committed = args.output / "content_task.json"
    if committed.exists():  # the record of the head before the refit travels with every rerun
        before = json.loads(committed.read_text())
        results["previous_head"] = before.get("previous_head") or {
            k: before[k] for k in ("tfmtl", "dropout", "items_per_step", "validation_macro_auc", "tfmtl_cold_macro_auc",
                                   "record", "repeat_of_the_grid_partial", "tried_l2_penalty") if k in before}
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "content_task.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.output / "content_task.md").write_text(markdown(results))
    print(markdown(results))


def markdown(results: dict) -> str:
    runs = results["tfmtl"]
    mean = results["tfmtl_cold_macro_auc"]
    lines = ["# Genres from content, MovieLens-100K (macro AUC over the genres)", "",
             f"{results['held_out_movies']} movies held out of training entirely; the probe and tfmtl learn from "
             f"{results['training_movies']}. Seeds {results['seeds']}.", "",
             "| model | held-out movies | per seed | movies it trained on |", "|---|---|---|---|",
             f"| logistic-regression probe (frozen MiniLM title + year, L2 {results['probe']['l2']:g} chosen on "
             f"validation) | {results['probe']['macro_auc']:.4f} | | |",
             f"| tfmtl genres task (dropout {results['dropout']:g}, {results.get('items_per_step', 128)} items per "
             f"step, chosen on validation; head refitted, L2 "
             + "/".join(f"{r['refit_l2']:g}" for r in runs) + " chosen on its own held-out items) | "
             + _row(runs, mean)]
    before = results.get("previous_head")
    if before:
        lines += [f"| tfmtl before the refit: the jointly trained head only (dropout {before['dropout']:g}, chosen "
                  "the same way; an earlier run) | " + _row(before["tfmtl"], before["tfmtl_cold_macro_auc"])]
    lines += ["", "tfmtl's settings (dropout, items per step) by macro AUC on the validation movies, held out of those "
              "runs (the probe's L2 by the same movies: "
              + ", ".join(f"{k}: {v:.4f}" for k, v in results["probe"]["validation_macro_auc"].items()) + "): "
              + ", ".join(f"{c['dropout']:g}, {c['items_per_step']}: {c['macro_auc']:.4f}"
                          for c in results.get("validation_macro_auc", [])),
              "", f"tfmtl ≥ the probe on held-out movies: {'yes' if results['target_holds'] else 'NO'}"]
    if results.get("record"):
        lines += ["", f"Record: {results['record']}."]
    if before:
        lines += ["", "## Before the refit (the jointly trained head only)", "",
                  "Its settings by macro AUC on the same validation movies: "
                  + ", ".join(f"{c['dropout']:g}, {c['items_per_step']}: {c['macro_auc']:.4f}"
                              for c in before.get("validation_macro_auc", [])) + "."]
        lines += _earlier_attempts(before)
    return "\n".join(lines) + "\n"


def _row(runs: list[dict], mean: dict) -> str:
    """Mean ± sd on the held-out movies, then each seed's, then the movies it trained on."""
    return (f"{mean['mean']:.4f} ± {mean['sd']:.4f} | " + ", ".join(f"{r['cold_macro_auc']:.4f}" for r in runs)
            + " | " + ", ".join(f"{r['warm_macro_auc']:.4f}" for r in runs) + " |")


def _earlier_attempts(results: dict) -> list[str]:
    lines = []
    repeat = results.get("repeat_of_the_grid_partial")
    if repeat:
        lines += ["", f"A repeat of the search: {repeat['note']}: "
                  + ", ".join(f"{c['dropout']:g}, {c['items_per_step']}: {c['macro_auc']:.4f}"
                              for c in repeat["validation_macro_auc"]) + "."]
    tried = results.get("tried_l2_penalty")
    if tried:
        lines += ["", f"Tried (2026-12-03): {tried['note']}. Validation: "
                  + ", ".join(f"L2 {c['l2']:g} + dropout {c['dropout']:g}: {c['macro_auc']:.4f}"
                              for c in tried["validation_macro_auc"])
                  + f"; the chosen L2 {tried['chosen']['l2']:g} + dropout {tried['chosen']['dropout']:g} on the test "
                  "movies: " + ", ".join(f"{v:.4f}" for v in tried["test_macro_auc"])
                  + f" (seeds {tried['seeds']})."]
    if results.get("record"):
        lines += ["", f"Record: {results['record']}."]
    return lines


if __name__ == "__main__":
    main()
