"""Speed: the text encoder once per unique item, one-pass catalog evaluation, retrieve latency, and how cost grows.

Peers run side by side in the same process, on the same split, from the same weights:

(a) training examples/s, ML-100K, batch 1024: tfmtl against the straightforward TFRS implementation of the same
    model, which tokenises and encodes every row (``per_example_text=True``), in the fine-tuning setting (top
    transformer layer trainable) and with a frozen encoder. In-batch negatives (TFRS's default; with catalog
    negatives the per-example peer would also encode the whole catalog every step). Dropout is off so both see
    identical computations and their loss curves can be compared step for step.
(b) full-catalog evaluation, ML-1M test rows at batch 4096: tfmtl's one pass (catalog embeddings once, one matmul
    plus top-k per user batch) against ``tfrs.metrics.FactorizedTopK`` over the catalog mapped through the same
    MiniLM item tower, encoding every row as the TFRS tutorial does. The peer re-encodes the catalog for every
    batch, so by default it runs on the first ``--eval-batches`` batches only (both sides on those rows); tfmtl
    is also timed on every test row.
(c) in-process retrieve latency (the exported ``retrieve`` signature), batch 1, k=10: the MiniLM model against
    an id-only model.
(d) epoch time on ML-100K and ML-1M (default model), and retrieve latency for synthetic catalogs of 1k..1M
    items (id-only: the catalog matrix is precomputed, so the item tower does not matter), each in its own
    process with its peak RSS.

Run: .venv/bin/python benchmarks/speed.py [--repeats 3] [--eval-batches 6] [--only a,b,c,d]
Writes benchmarks/results/speed.json, speed.md and speed_retrieve_latency.png.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

# isort: off
import tfmtl  # noqa: F401  (Keras 2 for TFRS, before TensorFlow loads)
import tensorflow as tf
import tensorflow_recommenders as tfrs
from tfmtl.config import Config
from tfmtl.data import load_dataset
from tfmtl.data.splits import split_interactions
from tfmtl.data.interactions import InteractionData, finish
from tfmtl.data.pipeline import epoch_batches, make_dataset
from tfmtl.data.schema import FeatureColumns
from tfmtl.evaluate import _predict_rows, catalog_embeddings, evaluate_model
from tfmtl.exporting import snapshot_of_users
from tfmtl.exporting.module import build_serving_module
from tfmtl.features import FeatureSpace
from tfmtl.run import build_encoder, build_model
from tfmtl.training import set_seed

# isort: on

RESULTS = Path(__file__).resolve().parent / "results"
BATCH = 1024
EVAL_BATCH = 4096
KS = (1, 5, 10, 50, 100)


def _log(message: str) -> None:
    print(f"[speed] {message}", file=sys.stderr, flush=True)


def _median(values: list[float]) -> float:
    return float(statistics.median(values))


def _peak_rss_mib() -> float:
    """This process's peak resident memory. Not ``getrusage``: its ru_maxrss keeps the parent's peak across
    fork + exec, so every child would report at least the parent's."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # no /proc: an upper bound


def _config(**model: Any) -> Config:
    config = Config()
    return dataclasses.replace(config, model=dataclasses.replace(config.model, **model))


# === Models from the same weights ===

def _model_pair(config: Config, space: FeatureSpace) -> tuple[Any, Any]:
    """(tfmtl's model, the per-example peer) with identical weights."""
    set_seed(config.train.seed)
    fast = build_model(config.model, space, build_encoder(config.model, space, seed=config.train.seed))
    slow = build_model(config.model, space, build_encoder(config.model, space, seed=config.train.seed),
                       per_example_text=True)
    with tempfile.TemporaryDirectory() as folder:
        path = tf.train.Checkpoint(model=fast).write(f"{folder}/weights")
        tf.train.Checkpoint(model=slow).read(path).assert_existing_objects_matched()
    return fast, slow


# === (a) training examples/s ===

def _train_steps(model: Any, arrays: dict[str, np.ndarray], *, steps: int, repeats: int,
                 seed: int) -> tuple[list[float], list[float]]:
    """(examples/s per repetition, loss per step): one untimed warm-up step, then ``repeats`` × ``steps``."""
    model.compile(optimizer=tf.keras.optimizers.Adam(1e-3))
    step = model.make_train_function()
    batches = iter(epoch_batches(arrays, batch_size=BATCH, seed=seed, first_epoch=0, epochs=50))
    losses = [float(step(batches)["loss"])]
    rates = []
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(steps):
            losses.append(float(step(batches)["loss"]))
        rates.append(steps * BATCH / (time.perf_counter() - started))
    return rates, losses


def training_speed(data: InteractionData, split: Any, *, repeats: int, fast_steps: int,
                   slow_steps: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for setting, layers in (("fine_tuning", 1), ("frozen", 0)):
        config = _config(retrieval=dataclasses.replace(Config().model.retrieval, negatives="in_batch"),
                         encoder=dataclasses.replace(Config().model.encoder, trainable_layers=layers, dropout=0.0),
                         user_tower=dataclasses.replace(Config().model.user_tower, dropout=0.0),
                         item_tower=dataclasses.replace(Config().model.item_tower, dropout=0.0),
                         ranking=dataclasses.replace(Config().model.ranking, dropout=0.0))
        space = FeatureSpace.build(config.model, data, split.train)
        arrays = space.interaction_arrays(data, split.train, split.train, is_training=True)
        fast, slow = _model_pair(config, space)
        _log(f"(a) {setting}: tfmtl, {repeats} x {fast_steps} steps")
        fast_rates, fast_losses = _train_steps(fast, arrays, steps=fast_steps, repeats=repeats, seed=1)
        _log(f"(a) {setting}: per-example peer, {repeats} x {slow_steps} steps")
        slow_rates, slow_losses = _train_steps(slow, arrays, steps=slow_steps, repeats=repeats, seed=1)
        shared = min(len(fast_losses), len(slow_losses))
        difference = np.abs(np.array(fast_losses[:shared]) - np.array(slow_losses[:shared]))
        out[setting] = {
            "trainable_layers": layers,
            "tfmtl_examples_per_s": _median(fast_rates), "peer_examples_per_s": _median(slow_rates),
            "ratio": _median(fast_rates) / _median(slow_rates),
            "tfmtl_runs": fast_rates, "peer_runs": slow_rates,
            "loss_curve_steps": shared, "loss_curve_max_abs_diff": float(difference.max()),
            "loss_curve_max_rel_diff": float((difference / np.abs(np.array(slow_losses[:shared]))).max()),
            "tfmtl_losses": fast_losses[:shared], "peer_losses": slow_losses[:shared],
        }
        del fast, slow
    return out


# === (b) full-catalog evaluation ===

def _factorized_top_k(model: Any, arrays: dict[str, np.ndarray]) -> dict[str, float]:
    """TFRS's evaluation: FactorizedTopK over the catalog mapped through the item tower, every batch."""
    catalog = tf.data.Dataset.from_tensor_slices(
        {c: model.space.catalog[c] for c in model.item_tower.feature_keys}).batch(128)
    metric = tfrs.metrics.FactorizedTopK(candidates=catalog.map(lambda items: model.embed_item(items)), ks=KS)

    @tf.function
    def update(batch: dict[str, tf.Tensor]) -> None:
        metric.update_state(model.embed_user(batch), model.embed_item(batch))

    for batch in make_dataset(arrays, batch_size=EVAL_BATCH):
        update(batch)
    return _top_k_results(metric)


def _factorized_top_k_same_embeddings(model: Any, data: InteractionData, train_rows: np.ndarray,
                                      rows: np.ndarray) -> dict[str, float]:
    """FactorizedTopK over tfmtl's own embeddings (catalog matrix, user embeddings): isolates the metric."""
    items = catalog_embeddings(model, EVAL_BATCH)
    arrays = model.space.interaction_arrays(data, train_rows, rows, is_training=False)
    users, _ = _predict_rows(model, arrays, EVAL_BATCH)
    column = {str(item): i for i, item in enumerate(model.space.catalog["item_id"])}
    positives = np.array([column[str(item)] for item in arrays["item_id"]])
    index = tfrs.layers.factorized_top_k.BruteForce(k=max(KS))
    index.index(tf.constant(items))
    metric = tfrs.metrics.FactorizedTopK(candidates=index, ks=KS)
    for start in range(0, len(users), EVAL_BATCH):
        metric.update_state(tf.constant(users[start:start + EVAL_BATCH]),
                            tf.constant(items[positives[start:start + EVAL_BATCH]]))
    return _top_k_results(metric)


def _top_k_results(metric: Any) -> dict[str, float]:
    return {f"retrieval/top_{k}_accuracy": float(v.result()) for k, v in zip(KS, metric._top_k_metrics,
                                                                              strict=True)}


def evaluation_speed(*, repeats: int, batches: int) -> dict[str, Any]:
    data = load_dataset("ml-1m")
    split = split_interactions(data, "tfrs")
    config = Config()
    space = FeatureSpace.build(config.model, data, split.train)
    fast, slow = _model_pair(config, space)
    rows = split.test[: batches * EVAL_BATCH] if batches else split.test
    arrays = space.interaction_arrays(data, split.train, rows, is_training=False)

    def ours(rows: np.ndarray) -> dict[str, float]:
        return evaluate_model(fast, data, split.train, rows, ks=KS, batch_size=EVAL_BATCH, tasks=("retrieval",))

    ours(rows[:EVAL_BATCH])  # traces
    timings: dict[str, list[float]] = {"tfmtl": [], "tfmtl_all_rows": [], "peer": []}
    for repeat in range(repeats):
        _log(f"(b) repetition {repeat + 1}/{repeats}: {len(rows):,} rows, FactorizedTopK peer")
        started = time.perf_counter()
        theirs = _factorized_top_k(slow, arrays)
        timings["peer"].append(time.perf_counter() - started)
        started = time.perf_counter()
        mine = ours(rows)
        timings["tfmtl"].append(time.perf_counter() - started)
        started = time.perf_counter()
        ours(split.test)
        timings["tfmtl_all_rows"].append(time.perf_counter() - started)
    same = _factorized_top_k_same_embeddings(fast, data, split.train, rows)
    differences = {k: abs(mine[k] - theirs[k]) for k in theirs}
    per_batch = _median(timings["peer"]) / int(np.ceil(len(rows) / EVAL_BATCH))
    all_batches = int(np.ceil(len(split.test) / EVAL_BATCH))
    return {
        "dataset": "ml-1m", "test_rows": int(len(split.test)), "timed_rows": int(len(rows)),
        "catalog_items": int(len(space.catalog["item_id"])), "batch_size": EVAL_BATCH,
        "tfmtl_seconds": _median(timings["tfmtl"]), "peer_seconds": _median(timings["peer"]),
        "ratio": _median(timings["peer"]) / _median(timings["tfmtl"]),
        "tfmtl_all_rows_seconds": _median(timings["tfmtl_all_rows"]),
        "peer_all_rows_seconds_extrapolated": per_batch * all_batches,
        "ratio_all_rows_extrapolated": per_batch * all_batches / _median(timings["tfmtl_all_rows"]),
        "runs": timings, "tfmtl_metrics": mine, "peer_metrics": theirs,
        "max_abs_metric_diff": max(differences.values()),
        "same_embeddings_peer_metrics": same,
        "same_embeddings_max_abs_metric_diff": max(abs(mine[k] - same[k]) for k in same),
    }


# === (c) retrieve latency ===

def _serving_module(model: Any, data: InteractionData, known: np.ndarray) -> Any:
    user_ids, user_columns = snapshot_of_users(model, data, known)
    return build_serving_module(model, user_ids=user_ids, user_columns=user_columns, user_defaults={},
                                item_defaults={}, max_k=100)


def _retrieve_latency(module: Any, user_id: str, *, calls: int, repeats: int) -> list[float]:
    """Median latency (ms) of ``calls`` batch-1 k=10 retrieve calls, per repetition."""
    retrieve = module.signatures()["retrieve"]
    inputs = {}
    for name, spec in retrieve.structured_input_signature[1].items():
        inputs[name] = (tf.constant([10], tf.int32) if name == "k" else
                        tf.constant([user_id]) if name == "user_id" else
                        tf.zeros([1], spec.dtype) if spec.dtype != tf.string else
                        tf.fill([1] * len(spec.shape), ""))  # lists (history_item_ids) [1, 1]: padding only
    for _ in range(20):
        retrieve(**inputs)
    medians = []
    for _ in range(repeats):
        samples = []
        for _ in range(calls):
            started = time.perf_counter()
            retrieve(**inputs)["item_ids"].numpy()
            samples.append((time.perf_counter() - started) * 1e3)
        medians.append(_median(samples))
    return medians


def retrieve_speed(data: InteractionData, split: Any, *, repeats: int) -> dict[str, Any]:
    modules = {}
    for name, config in (("minilm", Config()), ("id_only", _config(text_features=()))):
        space = FeatureSpace.build(config.model, data, split.train)
        model = build_model(config.model, space, build_encoder(config.model, space, seed=42))
        modules[name] = _serving_module(model, data, split.train)
    user = str(data.interactions["user_id"].iloc[0])
    out: dict[str, list[float]] = {name: [] for name in modules}
    for _ in range(repeats):  # interleaved, so drift on a shared machine hits both alike
        for name, module in modules.items():
            out[name] += _retrieve_latency(module, user, calls=300, repeats=1)
    _log(f"(c) p50 ms: {out}")
    return {"minilm_ms": _median(out["minilm"]), "id_only_ms": _median(out["id_only"]),
            "ratio": _median(out["minilm"]) / _median(out["id_only"]), "runs": out}


# === (d) growth, each measurement in its own process ===

def timed_epochs(model: Any, arrays: dict[str, np.ndarray], *, batch_size: int, repeats: int) -> list[float]:
    """Seconds per epoch of a compiled model, ``repeats`` times, after one untimed epoch (tracing, warm-up)."""
    steps = int(np.ceil(len(next(iter(arrays.values()))) / batch_size))
    step = model.make_train_function()
    batches = iter(epoch_batches(arrays, batch_size=batch_size, seed=1, first_epoch=0, epochs=repeats + 1))
    for _ in range(steps):
        step(batches)
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(steps):
            step(batches)
        seconds.append(time.perf_counter() - started)
    return seconds


def epoch_child(dataset: str, repeats: int) -> dict[str, Any]:
    data = load_dataset(dataset)
    split = split_interactions(data, "tfrs")
    config = Config()
    space = FeatureSpace.build(config.model, data, split.train)
    model = build_model(config.model, space, build_encoder(config.model, space, seed=42))
    model.compile(optimizer=tf.keras.optimizers.Adam(1e-3))
    arrays = space.interaction_arrays(data, split.train, split.train, is_training=True)
    seconds = timed_epochs(model, arrays, batch_size=BATCH, repeats=repeats)
    return {"dataset": dataset, "train_rows": int(len(split.train)), "items": int(len(space.catalog["item_id"])),
            "epoch_seconds": _median(seconds), "runs": seconds, "peak_rss_mib": _peak_rss_mib()}


def synthetic_catalog(num_items: int, *, num_users: int = 1000, rows: int = 20000, seed: int = 0) -> InteractionData:
    rng = np.random.default_rng(seed)
    items = pd.DataFrame({"item_id": [f"i{i}" for i in range(num_items)]})
    users = pd.DataFrame({"user_id": [f"u{u}" for u in range(num_users)]})
    interactions = pd.DataFrame({"user_id": [f"u{u}" for u in rng.integers(0, num_users, rows)],
                                 "item_id": [f"i{i}" for i in rng.integers(0, num_items, rows)]})
    return finish(InteractionData(name=f"synthetic-{num_items}", interactions=interactions, items=items, users=users,
                                  labels=(), item_features=FeatureColumns(), user_features=FeatureColumns()))


def catalog_child(num_items: int, repeats: int) -> dict[str, Any]:
    data = synthetic_catalog(num_items)
    config = _config(tasks={"retrieval": 1.0}, history_length=0)
    rows = np.arange(len(data.interactions))
    space = FeatureSpace.build(config.model, data, rows)
    model = build_model(config.model, space, None)
    module = _serving_module(model, data, rows)
    latency = _retrieve_latency(module, "u0", calls=100, repeats=repeats)
    return {"items": num_items, "retrieve_ms": _median(latency), "runs": latency, "peak_rss_mib": _peak_rss_mib()}


def _child(kind: str, value: str, repeats: int) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", kind, value, "--repeats", str(repeats)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def growth(*, repeats: int, catalogs: list[int]) -> dict[str, Any]:
    epochs = {}
    for dataset in ("ml-100k", "ml-1m"):
        _log(f"(d) epoch time on {dataset}")
        epochs[dataset] = _child("epoch", dataset, repeats)
    sizes = []
    for size in catalogs:
        _log(f"(d) retrieve latency, {size:,} synthetic items")
        sizes.append(_child("catalog", str(size), repeats))
    small, large = epochs["ml-100k"], epochs["ml-1m"]
    return {"epochs": epochs, "epoch_time_ratio": large["epoch_seconds"] / small["epoch_seconds"],
            "train_rows_ratio": large["train_rows"] / small["train_rows"], "catalogs": sizes}


# === Report ===

def _plot(catalogs: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (latency, memory) = plt.subplots(1, 2, figsize=(9, 3.6))
    items = [c["items"] for c in catalogs]
    latency.loglog(items, [c["retrieve_ms"] for c in catalogs], "o-")
    latency.set_title("retrieve p50, batch 1, k=10")
    latency.set_ylabel("ms")
    memory.semilogx(items, [c["peak_rss_mib"] for c in catalogs], "s-", color="tab:orange")
    memory.set_title("peak RSS (build the module, then retrieve)")
    memory.set_ylabel("MiB")
    for axis in (latency, memory):
        axis.set_xlabel("catalog items")
        axis.grid(True, which="both", alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def _table(results: dict[str, Any]) -> str:
    lines = ["# Speed (2-core CPU, medians of repeated runs)", "", f"Run: `{results['command']}`", "",
             "| measurement | tfmtl | peer | ratio | target |", "|---|---|---|---|---|"]
    for setting, row in results.get("training", {}).items():
        lines.append(f"| (a) training examples/s, {setting.replace('_', ' ')} | {row['tfmtl_examples_per_s']:.0f} | "
                     f"{row['peer_examples_per_s']:.0f} (per-example TFRS) | {row['ratio']:.1f}× | "
                     f"{'≥ 5×' if setting == 'fine_tuning' else '-'} |")
    if "evaluation" in results:
        row = results["evaluation"]
        lines.append(f"| (b) evaluation s, {row['timed_rows']:,} ML-1M test rows | {row['tfmtl_seconds']:.1f} | "
                     f"{row['peer_seconds']:.1f} (FactorizedTopK) | {row['ratio']:.1f}× | ≥ 20× |")
        lines.append(f"| (b) all {row['test_rows']:,} test rows (peer extrapolated per batch) | "
                     f"{row['tfmtl_all_rows_seconds']:.1f} | {row['peer_all_rows_seconds_extrapolated']:.0f} | "
                     f"{row['ratio_all_rows_extrapolated']:.0f}× | |")
    if "retrieve" in results:
        row = results["retrieve"]
        lines.append(f"| (c) retrieve ms, batch 1, k=10 | {row['minilm_ms']:.3f} (MiniLM) | "
                     f"{row['id_only_ms']:.3f} (id-only) | {row['ratio']:.2f} | ≤ 1.2 |")
    lines.append("")
    if "training" in results:
        lines.append("Loss curves, tfmtl against the per-example peer from the same weights and batches: " + ", ".join(
            f"{s.replace('_', ' ')} max |Δloss| {r['loss_curve_max_abs_diff']:.2e} over {r['loss_curve_steps']} steps"
            for s, r in results["training"].items()) + ".")
    if "evaluation" in results:
        row = results["evaluation"]
        lines.append(f"Evaluation metrics over top-1..100 accuracy: tfmtl against FactorizedTopK fed tfmtl's own "
                     f"embeddings max |Δ| {row['same_embeddings_max_abs_metric_diff']:.2e} (target ≤ 1e-6); "
                     f"against FactorizedTopK running the per-example tower max |Δ| "
                     f"{row['max_abs_metric_diff']:.2e}. That tower's item embeddings differ from the "
                     "once-per-catalog ones in the last bits (batch shapes change CPU rounding), and FactorizedTopK "
                     "ranks a positive behind its own catalog copy when that copy rounds an ulp higher, so a few "
                     "rows flip.")
    if "notes" in results:
        lines += ["", results["notes"]]
    if "growth" in results:
        growth = results["growth"]
        if "growth_command" in results:
            lines += ["", f"Growth run: `{results['growth_command']}`"]
        lines += ["", "| growth | value | peak RSS (MiB) |", "|---|---|---|"]
        for dataset, row in growth["epochs"].items():
            lines.append(f"| epoch, {dataset} ({row['train_rows']:,} rows, {row['items']:,} items) | "
                         f"{row['epoch_seconds']:.1f} s | {row['peak_rss_mib']:.0f} |")
        lines.append(f"| epoch time ratio ML-1M / ML-100K | {growth['epoch_time_ratio']:.1f}× "
                     f"(rows {growth['train_rows_ratio']:.1f}×) | |")
        for row in growth["catalogs"]:
            lines.append(f"| retrieve, {row['items']:,} items | {row['retrieve_ms']:.2f} ms | "
                         f"{row['peak_rss_mib']:.0f} |")
        lines += ["", "![retrieve latency by catalog size](speed_retrieve_latency.png)"]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--fast-steps", type=int, default=10)
    parser.add_argument("--slow-steps", type=int, default=3)
    parser.add_argument("--eval-batches", type=int, default=6, help="peer batches of 4096 rows (0 = every row)")
    parser.add_argument("--catalogs", default="1000,10000,100000,1000000")
    parser.add_argument("--only", default="a,c,d,b", help="sections, run in this order")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, value = args.child
        result = epoch_child(value, args.repeats) if kind == "epoch" else catalog_child(int(value), args.repeats)
        print(json.dumps(result))
        return
    started = time.perf_counter()
    args.output.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"command": "python benchmarks/speed.py " + " ".join(sys.argv[1:]),
                               "repeats": args.repeats, "machine": f"{len(tf.config.list_physical_devices('CPU'))} "
                               f"CPU device(s), {len(tf.config.list_physical_devices('GPU'))} GPU(s)"}

    def save() -> None:  # after every section, so a long run that is cut short keeps what it measured
        results["seconds"] = round(time.perf_counter() - started, 1)
        (args.output / "speed.json").write_text(json.dumps(results, indent=2) + "\n")
        (args.output / "speed.md").write_text(_table(results))

    loaded: dict[str, Any] = {}

    def ml_100k() -> tuple[InteractionData, Any]:
        if not loaded:
            loaded["data"] = load_dataset("ml-100k")
            loaded["split"] = split_interactions(loaded["data"], "tfrs")
        return loaded["data"], loaded["split"]

    for section in args.only.split(","):  # in the order given
        if section == "a":
            results["training"] = training_speed(*ml_100k(), repeats=args.repeats, fast_steps=args.fast_steps,
                                                 slow_steps=args.slow_steps)
        elif section == "c":
            results["retrieve"] = retrieve_speed(*ml_100k(), repeats=args.repeats)
        elif section == "b":
            results["evaluation"] = evaluation_speed(repeats=args.repeats, batches=args.eval_batches)
        elif section == "d":
            results["growth"] = growth(repeats=args.repeats, catalogs=[int(c) for c in args.catalogs.split(",")])
            _plot(results["growth"]["catalogs"], args.output / "speed_retrieve_latency.png")
        else:
            parser.error(f"--only: unknown section '{section}' (choose from a, b, c, d)")
        save()
    print(_table(results))


if __name__ == "__main__":
    main()
