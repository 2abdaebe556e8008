"""Domain-adaptive pretraining on a catalog's own texts: does masked-LM adaptation lower held-out masked-LM loss?

Protocol: the distinct item texts of the dataset (for ``ml-1m-overviews``: "Title (Year). Overview" where TMDB has an
overview, the title elsewhere); 10% of them are held out (a fixed shuffle per seed). Two runs with the same budget
(epochs, batch, steps, masks, head initialisation) and the same held-out masks:

* **unadapted**: the pretrained encoder frozen, BERT's masked-LM head trained alone on it (the sentence encoder
  ships without that head, so this is the fair "before": its best head for the budget);
* **adapted**: the head and the encoder trained together (``tfmtl pretrain``).

Reported per seed: held-out masked-LM loss (mean cross-entropy per masked token) after each epoch, and the change.
The effect on new-item recall is measured by the cold-start benchmark that reads the adapted preset.

Run: .venv/bin/python benchmarks/pretrain.py [--dataset ml-1m-overviews] [--seeds 0 1 2] [--epochs 3]
Writes benchmarks/results/pretrain.json and .md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

# isort: off
import tfmtl  # noqa: F401  (Keras 2 for TFRS, before TensorFlow loads)
from tfmtl.config import TextEncoderConfig
from tfmtl.data import load_dataset
from tfmtl.encoders.pretrain import PretrainConfig, pretrain

sys.path.insert(0, str(Path(__file__).resolve().parent))
import figures  # noqa: E402

# isort: on

RESULTS = Path(__file__).resolve().parent / "results"


def protocol(seeds: list[int]) -> dict[str, object]:
    return figures.protocol(
        "the distinct item texts of the dataset; 10% held out (a fixed shuffle per seed), scored with the same "
        "masks for both runs", seeds=seeds,
        given={"unadapted": "the pretrained encoder frozen, BERT's masked-LM head trained alone on it",
               "adapted": "the head and the encoder trained together (tfmtl pretrain)"},
        budget="the same epochs, batch, steps, masks and head initialisation for both runs")


def run_seed(texts: list[str], args: argparse.Namespace, seed: int, folder: Path) -> dict[str, Any]:
    config = PretrainConfig(encoder=TextEncoderConfig(preset=args.encoder, sequence_length=args.sequence_length,
                                                      trainable_layers=args.trainable_layers),
                            epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.learning_rate,
                            seed=seed)
    report = pretrain(texts, config, folder / f"seed-{seed}", progress=False)
    return {"seed": seed, "texts": report["texts"], "steps": report["adapted"]["steps"],
            "unadapted": report["unadapted"]["held_out_loss"], "adapted": report["adapted"]["held_out_loss"],
            "seconds": {"unadapted": sum(h["seconds"] for h in report["unadapted"]["history"]),
                        "adapted": sum(h["seconds"] for h in report["adapted"]["history"])}}


def markdown(results: dict[str, Any]) -> str:
    runs = results["runs"]
    change = [r["adapted"][-1] - r["unadapted"][-1] for r in runs]
    lines = [f"# Domain-adaptive pretraining: {results['encoder']} on {results['dataset']} item texts", "",
             f"{runs[0]['texts']['train']:,} training texts, {runs[0]['texts']['held_out']:,} held out; "
             f"sequence length {results['settings']['sequence_length']}, {results['settings']['epochs']} "
             f"epoch{'' if results['settings']['epochs'] == 1 else 's'} of batch {results['settings']['batch_size']} "
             f"({runs[0]['steps']} steps), encoder learning rate "
             f"{results['settings']['learning_rate']:g}. Held-out masked-LM loss (cross-entropy per masked token, "
             "the same masks for both runs); the unadapted row trains the head alone on the frozen encoder for the "
             "same steps. Minutes are wall time on the shared 2-core machine.", "",
             "| seed | unadapted (head only) | adapted | change | epochs: adapted held-out loss | minutes (head only, "
             "adapted) |", "|---|---|---|---|---|---|"]
    for r, c in zip(runs, change, strict=True):
        lines.append(f"| {r['seed']} | {r['unadapted'][-1]:.4f} | {r['adapted'][-1]:.4f} | {c:+.4f} | "
                     + ", ".join(f"{v:.4f}" for v in r["adapted"])
                     + f" | {r['seconds']['unadapted'] / 60:.1f}, {r['seconds']['adapted'] / 60:.1f} |")
    sd = statistics.stdev(change) if len(change) > 1 else 0.0
    lines += ["", f"Change, mean over {len(change)} seed(s): {statistics.mean(change):+.4f} ± {sd:.4f}; lower in "
              f"every seed: {'yes' if all(c < 0 for c in change) else 'NO'}."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="ml-1m-overviews")
    parser.add_argument("--encoder", default="minilm-l6")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=5e-5)
    parser.add_argument("--sequence-length", type=int, default=128)
    parser.add_argument("--trainable-layers", type=int, default=-1)
    parser.add_argument("--keep", type=Path, help="keep the run folders (and the adapted presets) here")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()

    data = load_dataset(args.dataset)
    texts = [str(t) for column in data.item_features.text for t in data.items[column].dropna()]
    results: dict[str, Any] = {"protocol": protocol(args.seeds), "dataset": args.dataset,
                               "encoder": args.encoder, "seeds": args.seeds, "runs": [],
                               "settings": {k: getattr(args, k) for k in ("epochs", "batch_size", "learning_rate",
                                                                          "sequence_length", "trainable_layers")}}
    with tempfile.TemporaryDirectory(prefix="tfmtl-pretrain-") as scratch:
        folder = args.keep or Path(scratch)
        for seed in args.seeds:
            results["runs"].append(run_seed(texts, args, seed, folder))
            print(f"[pretrain] seed {seed}: {results['runs'][-1]}", file=sys.stderr, flush=True)
            args.output.mkdir(parents=True, exist_ok=True)
            (args.output / "pretrain.json").write_text(json.dumps(results, indent=2) + "\n")
            (args.output / "pretrain.md").write_text(markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
