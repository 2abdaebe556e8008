"""What is 3× worth? New items known from half their readers, beside the cold-start models.

The language model's target is 3× the new-item recall@100 of the model without text. This benchmark asks how much
knowing a new item from its first readers is worth on the same split: each new item's test rows are cut in two at
random (``half_of_each_item``); the first half joins the training rows of a model that then knows those items by id
(``warm``), and every model is judged on the second half only, with the same history known for each user.

- The cold-start variants are ``cold_start_encoders``' runs, each with the setting and epochs its report chose on the
  validation items, trained again per seed on the same training rows (training is deterministic here, so each
  overall figure must equal its report's: the run checks that and records it).
- ``warm`` is the strongest no-text peer's item tower (the variant ``--warm-from``) given the first halves; its item
  id dropout and epochs are chosen on validation items cut in two the same way.

The ratio ``warm`` / ``no_text`` on the second halves says what the new items' own readers are worth; a language
model that reached 3× would have to say more about a new item, from its text, than that. A reference, not a bound:
text can in principle say more than a few readers.

Run: .venv/bin/python benchmarks/cold_start_reference.py --catalog book-crossing
        --report cold_start_encoders_authors --variants no_text no_text_ids minilm_vector_ids --warm-from no_text_ids
Writes benchmarks/results/cold_start_reference.json and .md (``--name`` names another report); a run of one catalog
keeps the other catalogs already in the report.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

# isort: off
import tfmtl  # noqa: F401  (Keras 2 for TFRS, before TensorFlow loads)
from tfmtl.config import Config
from tfmtl.data import InteractionData
from tfmtl.data.splits import Split
from tfmtl.training import train

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cold_start_books import TARGET_RATIO, ratio_to  # noqa: E402
from cold_start_encoders import (CATALOGS, KEY, encoder_views, is_vector, item_subsets, load_catalog,  # noqa: E402
                                 text_columns, variant_data, variant_settings)
import figures  # noqa: E402
from journal import Journal, fingerprint  # noqa: E402
from quality import (COLD_REPORTED, RESULTS, hold_out_items, retrieval_whole_and_among,  # noqa: E402
                     select_on_validation_items, summarize, validation_items)

# isort: on

WARM_DROPOUTS = (0.1, 0.5, 0.9)


def _log(message: str) -> None:
    print(f"[reference] {message}", file=sys.stderr, flush=True)


# === The split ===

def half_of_each_item(data: InteractionData, rows: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``rows`` cut per item at random: the first part holds ``n // 2`` of each item's ``n`` rows, the second the
    rest (an item rated once stays wholly in the second). Both sorted; together exactly ``rows``."""
    rng = np.random.default_rng(seed)
    items = data.interactions["item_id"].astype(str).to_numpy()[rows]
    first = []
    for item in sorted(set(items)):
        own = rows[items == item]
        first.append(rng.choice(own, len(own) // 2, replace=False))
    first_rows = np.sort(np.concatenate(first)) if first else np.zeros(0, dtype=np.int64)
    return first_rows, np.setdiff1d(rows, first_rows)


def warm_split(data: InteractionData, split: Split, seed: int) -> Split:
    """``split`` with the first half of each test item's rows moved into training; the test is the second half."""
    first, second = half_of_each_item(data, split.test, seed)
    return Split("warm_half", train=np.sort(np.concatenate([split.train, first])), test=second,
                 notes={**split.notes, "warm_half_seed": seed})


def warm_validation(data: InteractionData, inner: Split, seed: int) -> Split:
    """The selection split (:func:`quality.validation_items`) with the first half of each validation item's rows
    moved into training; the second half is what the selection runs are judged on."""
    first, second = half_of_each_item(data, inner.validation, seed)
    return Split("warm_half_validation", train=np.sort(np.concatenate([inner.train, first])),
                 test=np.zeros(0, dtype=np.int64), validation=second, notes={**inner.notes, "warm_half_seed": seed})


# === Runs ===

def chosen_config(report: dict[str, Any], variant: str, config: Config) -> tuple[str, Config]:
    """The setting and epochs ``report`` (a ``cold_start_encoders`` catalog) chose for ``variant`` on validation."""
    row = report["variants"][variant]
    search = report["search"]
    settings = variant_settings(variant, config, None, tuple(search["item_id_dropout"]), tuple(search["text_width"]))
    chosen = settings[row["chosen"]]
    return row["chosen"], dataclasses.replace(chosen, train=dataclasses.replace(
        chosen.train, epochs=row["epochs"], validation_fraction=0.0))


def run_seed(config: Config, data: InteractionData, trained_on: Split, judged_on: dict[str, tuple[Split, np.ndarray]],
             candidates: list[str], seed: int, workdir: Path) -> dict[str, float]:
    """Trains on ``trained_on.train`` with ``seed``; judges each ``name -> (split whose known rows are the users'
    history, rows)`` as ``<name>/...``."""
    config = dataclasses.replace(config, train=dataclasses.replace(config.train, seed=seed))
    result = train(config, output=workdir / f"seed-{seed}", data=data, split=trained_on, evaluate_test=False,
                   progress=False)
    out: dict[str, float] = {}
    for name, (split, rows) in judged_on.items():
        metrics = retrieval_whole_and_among(result.model, data, split.known, rows, candidates,
                                            config.train.eval_batch_size)
        out.update({f"{name}/{k}": v for k, v in metrics.items()})
    return out


def summarized(runs: list[dict[str, float]], name: str) -> dict[str, Any]:
    """The ``name/...`` metrics of the runs: mean, sd and every seed's value, whole catalog and among new items."""
    return {**summarize([{k: r[f"{name}/{k}"] for k in COLD_REPORTED} for r in runs]),
            "among_new_items": summarize([{k: r[f"{name}/new_items/{k}"] for k in COLD_REPORTED} for r in runs])}


def run_catalog(args: argparse.Namespace, journal: Journal, workdir: Path) -> dict[str, Any]:
    earlier = json.loads((args.reports / f"{args.report}.json").read_text())
    report = {**earlier["catalogs"][args.catalog], "search": earlier["search"]}
    missing = [v for v in args.variants if v not in report["variants"]]
    if missing:
        raise SystemExit(f"{args.report} has no {', '.join(missing)} on {args.catalog}: nothing chosen to reuse")
    if earlier["seeds"] != args.seeds:
        raise SystemExit(f"--seeds {args.seeds} differ from {args.report}'s {earlier['seeds']}: nothing to check")
    users_fraction = report["data"]["users_fraction"]
    data, config, counts = load_catalog(args.catalog, users_fraction, None)
    if counts != {k: v for k, v in report["data"].items() if k != "item_draw"}:
        raise SystemExit(f"{args.catalog}: the data differ from {args.report}'s: {counts} against {report['data']}")
    columns = text_columns(data, config)
    views = encoder_views(data, config, columns, args.variants)
    described = item_subsets(args.catalog, data).get("described")
    split, held_out = hold_out_items(data, draw=report["data"].get("item_draw", 0))  # the report's new items
    warm = warm_split(data, split, args.half_seed)
    candidates = sorted(held_out)
    data_key = fingerprint(data.interactions, data.items)
    _log(f"{args.catalog}: {len(held_out):,} new items; {len(split.test) - len(warm.test):,} of their rows "
         f"known to the warm model, {len(warm.test):,} judged")
    out: dict[str, Any] = {"data": counts, "report": args.report, "new_items": len(held_out),
                           "test_rows": int(len(split.test)), "warm_rows": int(len(split.test) - len(warm.test)),
                           "judged_rows": int(len(warm.test)), "half_seed": args.half_seed, "variants": {}}
    for variant in args.variants:
        chosen, chosen_setting = chosen_config(report, variant, config)
        prepared = variant_data(variant, data, columns, views, described)

        def cold(seed: int, config: Config = chosen_setting, prepared: InteractionData = prepared,
                 variant: str = variant) -> dict[str, float]:
            return run_seed(config, prepared, split, {"all": (split, split.test), "second_half": (warm, warm.test)},
                            candidates, seed, workdir / variant)

        depends_on = fingerprint(chosen_setting.get_config(), data_key, warm.summary())
        runs = [journal.run(f"cold {args.catalog} {variant} {seed}", depends_on, lambda seed=seed: cold(seed))
                for seed in args.seeds]
        reported = report["variants"][variant][KEY]["values"]
        again = [r[f"all/{KEY}"] for r in runs]
        out["variants"][variant] = {"chosen": chosen, "epochs": chosen_setting.train.epochs,
                                    "second_half": summarized(runs, "second_half"),
                                    "all_test_rows": summarized(runs, "all"),
                                    "reproduces_report": {"reported": reported, "again": again,
                                                          "max_difference": max(abs(a - b) for a, b in
                                                                                zip(again, reported, strict=True))}}
        _log(f"{variant}: second halves {[round(r[f'second_half/{KEY}'], 4) for r in runs]}; "
             f"all test rows {[round(v, 4) for v in again]} against the report's {[round(v, 4) for v in reported]}")
    prepared = variant_data(args.warm_from, data, columns, views, described)
    out["variants"]["warm"] = run_warm(args, prepared, config, split, warm, candidates, journal, workdir, data_key)
    out["ratios_to_no_text"] = {variant: ratio_to(row["second_half"][KEY]["values"],
                                                  out["variants"]["no_text"]["second_half"][KEY]["values"])
                                for variant, row in out["variants"].items() if variant != "no_text"}
    return out


def run_warm(args: argparse.Namespace, prepared: InteractionData, config: Config, split: Split, warm: Split,
             candidates: list[str], journal: Journal, workdir: Path, data_key: str) -> dict[str, Any]:
    """The ``--warm-from`` variant's tower (``prepared``: the data as it reads them) given the first halves: item id
    dropout and epochs chosen on the second halves of the validation items, then trained per seed and judged on the
    test items' second halves."""
    settings = variant_settings(args.warm_from, config, None, WARM_DROPOUTS, ())
    inner = warm_validation(prepared, validation_items(prepared, split, 0.2), args.half_seed)
    selection = select_on_validation_items(prepared, inner, settings, args.seeds[0], workdir / "warm-select",
                                           journal=journal, data_key=data_key)
    chosen = max(selection, key=lambda label: selection[label]["validation"])
    setting = settings[chosen]
    setting = dataclasses.replace(setting, train=dataclasses.replace(
        setting.train, epochs=selection[chosen]["epoch"], validation_fraction=0.0))

    def seed_run(seed: int) -> dict[str, float]:
        return run_seed(setting, prepared, warm, {"second_half": (warm, warm.test)}, candidates, seed,
                        workdir / "warm")

    depends_on = fingerprint(setting.get_config(), data_key, warm.summary())
    runs = [journal.run(f"warm {args.catalog} {seed}", depends_on, lambda seed=seed: seed_run(seed))
            for seed in args.seeds]
    _log(f"warm ({args.warm_from}, {chosen}): second halves {[round(r[f'second_half/{KEY}'], 4) for r in runs]}")
    return {"from": args.warm_from, "selection": selection, "chosen": chosen, "epochs": selection[chosen]["epoch"],
            "validation_rows": int(len(inner.validation)), "second_half": summarized(runs, "second_half")}


# === Report ===

def markdown(results: dict[str, Any]) -> str:
    lines = ["# New items known from half their readers, beside the cold-start models", "",
             "Recall@100 of each new item's second half of test rows, against the whole catalog; the warm model also "
             f"trained on the first halves. Seeds {results['seeds']}; the language model's target is "
             f"≥ {TARGET_RATIO:g}× no_text.", ""]
    for catalog, out in results["catalogs"].items():
        lines += [f"## {catalog}", "",
                  f"{out['new_items']:,} new items, {out['test_rows']:,} test rows: {out['warm_rows']:,} known to the "
                  f"warm model, {out['judged_rows']:,} judged. Cold settings as chosen in `{out['report']}`.", "",
                  "| variant | setting (epochs) | recall@100, second halves | per seed | × no_text per seed | "
                  "× no_text of the means | new items only |", "|---|---|---|---|---|---|---|"]
        for variant, row in out["variants"].items():
            value = row["second_half"][KEY]
            ratio = out["ratios_to_no_text"].get(variant)
            per_seed = ", ".join(f"{v:.2f}×" for v in ratio["per_seed"]) if ratio else ""
            of_means = f"{ratio['of_means']:.2f}×" if ratio else ""
            among = row["second_half"]["among_new_items"][KEY]
            name = f"warm ({row['from']})" if variant == "warm" else variant
            lines.append(f"| {name} | {row['chosen']} ({row['epochs']}) | {value['mean']:.4f} ± {value['sd']:.4f} | "
                         f"{', '.join(f'{v:.4f}' for v in value['values'])} | {per_seed} | {of_means} | "
                         f"{among['mean']:.4f} ± {among['sd']:.4f} |")
        checks = [f"{variant} {row['reproduces_report']['max_difference']:.1e}"
                  for variant, row in out["variants"].items() if "reproduces_report" in row]
        lines += ["", "Trained again, each cold variant's recall@100 on all the test rows against its report's, "
                      f"largest difference per seed: {'; '.join(checks)}.", ""]
    return "\n".join(lines)


def protocol(args: argparse.Namespace) -> dict[str, object]:
    return figures.protocol(
        "20% of the rated items held out entirely (the report's item draw), the rest the TFRS tutorial split; each "
        f"new item's test rows cut in two at random (seed {args.half_seed}): the warm model trains on the first "
        "halves, every model is judged on the second halves with the same known history",
        seeds=list(args.seeds),
        validation="cold variants: the settings and epochs their catalog's report (its `report`) chose on validation "
                   "items; warm: item id dropout and epochs chosen on the second halves of validation items cut the "
                   "same way",
        search={"warm_item_id_dropout": list(WARM_DROPOUTS)},
        given={"warm": "the features of the catalog's strongest no-text peer (its warm.from) and the new items' "
                       "first halves of ratings"},
        sizes="each catalog's report's users fraction")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--catalog", choices=CATALOGS, required=True)
    parser.add_argument("--report", required=True, help="the cold_start_encoders report whose choices to reuse")
    parser.add_argument("--variants", nargs="+", required=True, help="cold variants from the report (no_text first)")
    parser.add_argument("--warm-from", required=True, help="the variant whose features the warm model reads")
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 1, 2, 3, 4])
    parser.add_argument("--half-seed", type=int, default=0)
    parser.add_argument("--reports", type=Path, default=RESULTS)
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--name", default="cold_start_reference")
    args = parser.parse_args()
    if "no_text" not in args.variants:
        parser.error("--variants must include no_text: every ratio is to it")
    needs_encoder = [v for v in args.variants if not (v.startswith("no_text") or is_vector(v))
                     or "_adapted" in v]
    if needs_encoder:  # their setting names an encoder folder (or adapted embeddings) this script does not rebuild
        parser.error(f"--variants {' '.join(needs_encoder)}: only the no-text and frozen-encoder vector variants run")
    if not args.warm_from.startswith("no_text"):
        parser.error(f"--warm-from {args.warm_from}: the warm model reads no text (a no_text variant)")

    args.output.mkdir(parents=True, exist_ok=True)
    path = args.output / f"{args.name}.json"
    results: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {"catalogs": {}}
    results.update({"protocol": protocol(args), "seeds": args.seeds})
    journal = Journal(args.output / f"{args.name}.journal.jsonl")
    with tempfile.TemporaryDirectory(prefix="tfmtl-reference-") as folder:
        results["catalogs"][args.catalog] = run_catalog(args, journal, Path(folder))
    path.write_text(json.dumps(results, indent=2) + "\n")
    (args.output / f"{args.name}.md").write_text(markdown(results))
    journal.close()
    print(markdown(results))


if __name__ == "__main__":
    main()
