"""One epoch of MiniLM fine-tuning (top transformer layer trainable) on ML-100K, in float32 and in mixed precision
(bfloat16 encoder, float32 variables), same process, same batches. Meant for a GPU with bfloat16 (A100, H100,
L4); it refuses to run without a GPU unless --allow-cpu.

Run: .venv/bin/python benchmarks/gpu_precision.py [--repeats 3] [--xla]
Writes benchmarks/results/gpu_precision.json and gpu_precision.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
from pathlib import Path

# isort: off
import tfmtl  # noqa: F401  (Keras 2 for TFRS, before TensorFlow loads)
import tensorflow as tf
from tfmtl.config import Config
from tfmtl.data import load_dataset
from tfmtl.data.splits import split_interactions
from tfmtl.features import FeatureSpace
from tfmtl.run import build_encoder, build_model
from tfmtl.training import set_seed

sys.path.insert(0, str(Path(__file__).resolve().parent))
from speed import timed_epochs  # noqa: E402

# isort: on

RESULTS = Path(__file__).resolve().parent / "results"


def epoch_seconds(config: Config, data, split, *, mixed: bool, xla: bool, repeats: int) -> list[float]:  # type: ignore[no-untyped-def]
    set_seed(config.train.seed)
    space = FeatureSpace.build(config.model, data, split.train)
    encoder = build_encoder(config.model, space, seed=config.train.seed, mixed_precision=mixed)
    model = build_model(config.model, space, encoder)
    encoder.jit_compile = xla
    model.compile(optimizer=tf.keras.optimizers.Adam(config.train.learning_rate))
    arrays = space.interaction_arrays(data, split.train, split.train, is_training=True)
    return timed_epochs(model, arrays, batch_size=config.train.batch_size, repeats=repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--xla", action="store_true", help="also compile the trainable stage with XLA")
    parser.add_argument("--allow-cpu", action="store_true")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus and not args.allow_cpu:
        sys.exit("no GPU found: this benchmark times GPU precision modes (pass --allow-cpu to run it anyway)")
    config = Config()
    config = dataclasses.replace(config, model=dataclasses.replace(
        config.model, encoder=dataclasses.replace(config.model.encoder, trainable_layers=1)))
    data = load_dataset("ml-100k")
    split = split_interactions(data, "tfrs")
    results = {"device": tf.config.experimental.get_device_details(gpus[0]) if gpus else "cpu", "xla": args.xla}
    for name, mixed in (("float32", False), ("mixed_bfloat16", True)):
        runs = epoch_seconds(config, data, split, mixed=mixed, xla=args.xla, repeats=args.repeats)
        results[name] = {"epoch_seconds": statistics.median(runs), "runs": runs}
        print(f"[gpu_precision] {name}: {statistics.median(runs):.2f} s per epoch", file=sys.stderr)
    results["speedup"] = results["float32"]["epoch_seconds"] / results["mixed_bfloat16"]["epoch_seconds"]
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "gpu_precision.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    table = ("| precision | epoch s (median) |\n|---|---|\n"
             f"| float32 | {results['float32']['epoch_seconds']:.2f} |\n"
             f"| mixed bfloat16 | {results['mixed_bfloat16']['epoch_seconds']:.2f} |\n"
             f"\nspeed-up {results['speedup']:.2f}× on {results['device']}\n")
    (args.output / "gpu_precision.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
