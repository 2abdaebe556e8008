"""The MovieLens preset, written in the task language, against the previous default: the same metrics within
noise?

The previous default's figures are the ``tfmtl`` entry of ``results/quality.json`` as committed at ``PREVIOUS`` (seeds
42, 1, 2, recorded by ``quality.py`` before the tasks became configurable; later reruns of ``quality.py`` record the
preset itself, so the file is read from git at that commit). This reruns exactly that row (tfmtl's defaults, the TFRS
split, the same seeds, judged by ``quality.tfmtl_run``) and compares each metric's mean: a difference within two
standard errors of the difference (from both sides' seed sd) is noise. ``genres/macro_auc`` is meant to move: the
content head now reads the item's content before the tower's MLP (``content_task.py``).

Run: .venv/bin/python benchmarks/preset_parity.py [--seeds 42 1 2]
Writes benchmarks/results/preset_parity.json and .md.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
from pathlib import Path

# isort: off
import tfmtl  # noqa: F401  (Keras 2 for TFRS, before TensorFlow loads)
from tfmtl.config import Config
from tfmtl.data import load_dataset, tfrs_tutorial_split

sys.path.insert(0, str(Path(__file__).resolve().parent))
import figures  # noqa: E402
from quality import RESULTS, summarize, tfmtl_run  # noqa: E402

# isort: on

PREVIOUS = "ab55808"  # the last commit whose quality.json holds the pre-preset default's run
COMPARED = ("retrieval/top_100_accuracy", "retrieval/recall_at_10", "retrieval/recall_at_100",
            "retrieval/ndcg_at_10", "rating/rmse", "rating/mae", "like/auc", "like/f1", "genres/macro_auc")


def compare(previous: dict, current: dict, seeds: int) -> dict[str, dict[str, float | bool]]:
    """Per metric: both means, the difference, its standard error from the seed sds, and whether it is within
    two of them."""
    out = {}
    for name in COMPARED:
        if name not in previous or name not in current:
            continue
        old, new = previous[name], current[name]
        error = math.sqrt((old["sd"] ** 2 + new["sd"] ** 2) / seeds)
        difference = new["mean"] - old["mean"]
        out[name] = {"previous": old["mean"], "preset": new["mean"], "difference": difference,
                     "standard_error": error, "within_noise": abs(difference) <= 2 * error}
    return out


def previous_default() -> dict:
    try:
        text = subprocess.run(["git", "show", f"{PREVIOUS}:benchmarks/results/quality.json"], capture_output=True,
                              text=True, check=True, cwd=RESULTS).stdout
    except (OSError, subprocess.CalledProcessError) as error:
        raise SystemExit(f"preset_parity: the previous default's figures are read from git at commit {PREVIOUS} "
                         f"(a full clone of the repository is needed): {error}") from error
    return json.loads(text)


def protocol(seeds: list[int]) -> dict[str, object]:
    return figures.protocol(
        "ML-100K, the TFRS tutorial split (seed-42 shuffle, 80% train, 20% test), judged by quality.tfmtl_run",
        seeds=seeds, noise="a difference within two standard errors of the difference (both sides' seed sd)",
        given={"previous_default": f"quality.json's tfmtl entry as committed at {PREVIOUS} (hard-wired tasks)",
               "preset": "tfmtl's defaults written in the task language, the same seeds"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 1, 2])
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    recorded = previous_default()
    data = load_dataset("ml-100k")
    split = tfrs_tutorial_split(len(data.interactions))
    with tempfile.TemporaryDirectory(prefix="tfmtl-preset-") as folder:
        runs = [tfmtl_run(Config(), data, split, split.test, seed, Path(folder), "preset") for seed in args.seeds]
    current = summarize(runs)
    rows = compare(recorded["tfmtl"], current, len(args.seeds))
    results = {"protocol": protocol(args.seeds),
               "seeds": args.seeds, "previous_seeds": recorded["seeds"], "metrics": rows,
               "runs": [{name: float(r[name]) for name in COMPARED if name in r} for r in runs]}
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "preset_parity.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.output / "preset_parity.md").write_text(markdown(results))
    print(markdown(results))


def markdown(results: dict) -> str:
    lines = ["# The MovieLens preset against the previous default (ML-100K, TFRS split)", "",
             f"Seeds {results['seeds']} (the previous default's: {results['previous_seeds']}). Noise: a difference "
             "within two standard errors of the difference of the means.", "",
             "| metric | previous default | preset | difference | 2 × s.e. | within noise | preset per seed |",
             "|---|---|---|---|---|---|---|"]
    for name, row in results["metrics"].items():
        seeds = ", ".join(f"{r[name]:.4f}" for r in results["runs"])
        lines.append(f"| {name} | {row['previous']:.4f} | {row['preset']:.4f} | {row['difference']:+.4f} | "
                     f"{2 * row['standard_error']:.4f} | {'yes' if row['within_noise'] else 'no'} | {seeds} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
