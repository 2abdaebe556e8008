"""Click -> purchase with a known generating process: does the ESMM chain (``given: click``) rank purchases over
every exposure at least as well as a purchase head trained on its own, and how close does each head come to the
true probabilities?

The generating process (seeded, stated so anyone can check it):
- 2,000 users, each in one of 8 segments (uniform); 400 items, each in one of 10 categories (uniform) with a price
  (log-normal, standardised to z).
- Two affinity tables drawn once: A[segment, category] ~ N(0, 1) for clicks and B[segment, category] ~ N(0, 1)
  for purchases.
- Each user is shown 100 distinct items at random (200,000 exposures).
- p(click) = σ(-1 + A[s, c] - 0.3 z);  p(buy | click) = σ(-1 + B[s, c] - 1.0 z);
  p(purchase) = p(click) · p(buy | click).
- click ~ Bernoulli(p(click)); a purchase is drawn only after a click, and the log records it only then (NaN
  otherwise, as real logs do).

Three models, trained alike (the TFRS split: 80% train, seeded; validation 5% of it; early stopping on the
validation purchase AUC), each with retrieval on the clicks, a click head and a purchase head:
- ``esmm``: purchase ``given: click`` — p(click) · p(buy | click), trained over every exposure (no click = no buy);
- ``separate``: purchase as its own binary head over every exposure (the label filled with 0 where not clicked);
- ``cvr_on_clicks``: the conventional conversion head, trained on the clicked rows only (the sample-selection
  bias ESMM was built against), its score used over every exposure.
Every AUC is over every test exposure: purchase against click-and-buy, click against click. The reference is the
AUC of the true probabilities on the same rows: no model can beat it but by chance.

Run: .venv/bin/python benchmarks/esmm_synthetic.py [--seeds 0 1 2] [--epochs N]
Writes benchmarks/results/esmm_synthetic.json and .md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

# isort: off
import tfmtl  # noqa: F401  (Keras 2 for TFRS, before TensorFlow loads)
from tfmtl.config import Config
from tfmtl.data import load_dataset
from tfmtl.evaluate import predict_rows
from tfmtl.metrics import binary_metrics
from tfmtl.training import train

sys.path.insert(0, str(Path(__file__).resolve().parent))
import figures  # noqa: E402

# isort: on

RESULTS = Path(__file__).resolve().parent / "results"
USERS, ITEMS, SEGMENTS, CATEGORIES, SHOWN_PER_USER = 2000, 400, 8, 10, 100
TOLERANCE = 0.02  # each head's AUC within this of the true probabilities' AUC
PURCHASE_TASKS = {
    "esmm": {"type": "binary", "label": "purchased", "given": "click"},
    "separate": {"type": "binary", "label": "purchased_or_0"},
    "cvr_on_clicks": {"type": "binary", "label": "purchased"},
}


def _log(message: str) -> None:
    print(f"[esmm] {message}", file=sys.stderr, flush=True)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


# === Data ===

def generate(folder: Path, seed: int = 0) -> tuple[Path, pd.DataFrame]:
    """Writes the tables and a schema; returns the schema and the true probabilities per interaction row."""
    rng = np.random.default_rng(seed)
    segment = rng.integers(SEGMENTS, size=USERS)
    category = rng.integers(CATEGORIES, size=ITEMS)
    price = rng.lognormal(3.0, 0.7, size=ITEMS)
    z = (np.log(price) - np.log(price).mean()) / np.log(price).std()
    click_affinity = rng.normal(0.0, 1.0, (SEGMENTS, CATEGORIES))
    buy_affinity = rng.normal(0.0, 1.0, (SEGMENTS, CATEGORIES))

    users = np.repeat(np.arange(USERS), SHOWN_PER_USER)
    items = np.concatenate([rng.choice(ITEMS, SHOWN_PER_USER, replace=False) for _ in range(USERS)])
    s, c = segment[users], category[items]
    p_click = _sigmoid(-1.0 + click_affinity[s, c] - 0.3 * z[items])
    p_buy = _sigmoid(-1.0 + buy_affinity[s, c] - 1.0 * z[items])
    clicked = (rng.random(len(users)) < p_click).astype(float)
    bought = (rng.random(len(users)) < p_buy).astype(float)
    truth = pd.DataFrame({"p_click": p_click, "p_purchase": p_click * p_buy, "clicked": clicked,
                          "purchase": clicked * bought})

    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"user_id": [f"u{u}" for u in users], "item_id": [f"i{i}" for i in items], "clicked": clicked,
                  "purchased": np.where(clicked == 1, bought, np.nan),
                  "purchased_or_0": clicked * bought}).to_parquet(folder / "exposures.parquet", index=False)
    pd.DataFrame({"item_id": [f"i{i}" for i in range(ITEMS)], "category": [f"c{k}" for k in category],
                  "price": price}).to_parquet(folder / "items.parquet", index=False)
    pd.DataFrame({"user_id": [f"u{u}" for u in range(USERS)],
                  "segment": [f"s{k}" for k in segment]}).to_parquet(folder / "users.parquet", index=False)
    schema = folder / "schema.yaml"
    schema.write_text(
        "name: synthetic-click-purchase\n"
        "interactions: {path: exposures.parquet, user_id: user_id, item_id: item_id,\n"
        "               labels: {clicked: clicked, purchased: purchased, purchased_or_0: purchased_or_0}}\n"
        "items: {path: items.parquet, item_id: item_id, categorical: [category], numeric: [price]}\n"
        "users: {path: users.parquet, user_id: user_id, categorical: [segment]}\n")
    return schema, truth


def config_for(variant: str, schema: Path, seed: int, epochs: int | None) -> Config:
    base = Config()
    tasks = {"retrieval": {"type": "retrieval", "positive": "clicked == 1"},
             "click": {"type": "binary", "label": "clicked"}, "purchase": PURCHASE_TASKS[variant]}
    model = dataclasses.replace(base.model, tasks=tasks, history_length=0,
                                user_tower=dataclasses.replace(base.model.user_tower, prefixes={}))
    train_config = dataclasses.replace(base.train, dataset=str(schema), seed=seed, monitor="purchase/auc",
                                       **({"epochs": epochs} if epochs else {}))
    return dataclasses.replace(base, model=model, train=train_config)


# === Runs ===

def run(variant: str, schema: Path, truth: pd.DataFrame, seed: int, epochs: int | None, folder: Path) -> dict:
    config = config_for(variant, schema, seed, epochs)
    trained = train(config, output=folder / f"{variant}-{seed}", progress=False, evaluate_test=False)
    test = trained.split.test
    served = predict_rows(trained.model, trained.data, trained.split.train, test)
    rows = truth.iloc[test]
    return {"seed": seed, "epochs": len(trained.history),
            "click_auc": _auc(served["click_probability"], rows["clicked"]),
            "purchase_auc": _auc(served["purchase_probability"], rows["purchase"]),
            "true_click_auc": _auc(rows["p_click"], rows["clicked"]),
            "true_purchase_auc": _auc(rows["p_purchase"], rows["purchase"])}


def _auc(score: Any, label: Any) -> float:
    return binary_metrics(np.asarray(score, np.float64), np.asarray(label, np.float64), prefix="x")["x/auc"]


def summary(values: list[float]) -> dict[str, float]:
    return {"mean": float(np.mean(values)), "sd": float(statistics.stdev(values)) if len(values) > 1 else 0.0}


def verdicts(rows: dict[str, list[dict]]) -> dict[str, bool]:
    """The issue's targets, per seed: ESMM >= the separate head on purchase AUC; every ESMM head within
    TOLERANCE of the truth."""
    esmm, separate = rows.get("esmm", []), rows.get("separate", [])
    return {
        "esmm_purchase_auc_at_least_separate": all(e["purchase_auc"] >= s["purchase_auc"]
                                                   for e, s in zip(esmm, separate, strict=True)),
        "esmm_heads_within_tolerance_of_truth": all(
            r["true_click_auc"] - r["click_auc"] <= TOLERANCE
            and r["true_purchase_auc"] - r["purchase_auc"] <= TOLERANCE for r in esmm),
    }


def protocol(seeds: list[int]) -> dict[str, object]:
    return figures.protocol(
        "the generating process above (its own seed, fixed), then the TFRS split: 80% of the exposures train "
        "(seeded), 5% of those validate (early stopping on the validation purchase AUC); AUC over every test "
        "exposure", seeds=seeds,
        given={"truth": "the true p(click) and p(purchase) of each exposure (the ceiling; no training)",
               "esmm": "retrieval on clicks, a click head, purchase given: click, over every exposure",
               "separate": "the same, the purchase head on its own over every exposure (0 where not clicked)",
               "cvr_on_clicks": "the same, the purchase head trained on clicked rows only, scored over every "
                                "exposure"})


def markdown(results: dict) -> str:
    lines = ["# ESMM on a known click -> purchase process", "",
             f"{results['exposures']:,} exposures ({USERS:,} users × {SHOWN_PER_USER} items of {ITEMS}); click rate "
             f"{results['click_rate']:.3f}, purchase rate per exposure {results['purchase_rate']:.4f}. AUC over "
             f"every test exposure; seeds {results['seeds']} (mean ± sd, then every seed). The generating process "
             "is in `benchmarks/esmm_synthetic.py`.", "",
             "| model | purchase AUC | click AUC | purchase AUC per seed | epochs |", "|---|---|---|---|---|"]
    truth = next(iter(results["rows"].values()))
    for name, key in (("true probabilities", "true_"), ):
        p, c = summary([r[f"{key}purchase_auc"] for r in truth]), summary([r[f"{key}click_auc"] for r in truth])
        lines.append(f"| {name} | {p['mean']:.4f} ± {p['sd']:.4f} | {c['mean']:.4f} ± {c['sd']:.4f} | "
                     + ", ".join(f"{r['true_purchase_auc']:.4f}" for r in truth) + " | |")
    for variant, rows in results["rows"].items():
        p, c = summary([r["purchase_auc"] for r in rows]), summary([r["click_auc"] for r in rows])
        lines.append(f"| `{variant}` | {p['mean']:.4f} ± {p['sd']:.4f} | {c['mean']:.4f} ± {c['sd']:.4f} | "
                     + ", ".join(f"{r['purchase_auc']:.4f}" for r in rows) + " | "
                     + ", ".join(str(r["epochs"]) for r in rows) + " |")
    lines += ["", "| target | holds |", "|---|---|"]
    lines += [f"| {name.replace('_', ' ')} | {'yes' if ok else 'NO'} |" for name, ok in results["verdicts"].items()]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, help="cap the epochs (smoke runs)")
    parser.add_argument("--variants", nargs="+", choices=list(PURCHASE_TASKS), default=list(PURCHASE_TASKS))
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tfmtl-esmm-") as tmp:
        folder = Path(tmp)
        schema, truth = generate(folder / "data")
        load_dataset(schema)  # fail early on a bad schema
        rows: dict[str, list[dict]] = {variant: [] for variant in args.variants}
        for seed in args.seeds:
            for variant in args.variants:
                rows[variant].append(run(variant, schema, truth, seed, args.epochs, folder))
                _log(f"{variant} seed {seed}: {rows[variant][-1]}")
    results = {"protocol": protocol(args.seeds),
               "seeds": args.seeds, "exposures": len(truth), "click_rate": float(truth["clicked"].mean()),
               "purchase_rate": float(truth["purchase"].mean()), "tolerance": TOLERANCE, "rows": rows,
               "verdicts": verdicts(rows)}
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "esmm_synthetic.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.output / "esmm_synthetic.md").write_text(markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
