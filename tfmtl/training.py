"""Training: data -> split -> features -> model -> fit with per-epoch validation, checkpoints and early stopping.

``train(config, output=RUN_DIR)`` is what ``tfmtl train`` and the notebooks call. Every epoch it validates on a
held-out part of the training rows, logs per-task losses and effective weights (history.json, TensorBoard,
PNG plots), checkpoints model + optimizer (``resume=True`` continues from there), and keeps the best weights
by ``train.monitor``. At the end it restores the best weights, refits the content head exactly on them
(:mod:`tfmtl.content_refit`; kept as the best weights) and evaluates the test rows.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from tfmtl.config import Config
from tfmtl.content_refit import refit_content_head
from tfmtl.data import load_dataset
from tfmtl.data.interactions import TIMESTAMP, USER_ID, InteractionData
from tfmtl.data.splits import Split, hold_out_last, hold_out_validation, split_interactions
from tfmtl.distribute import distributed_batches, is_chief, make_strategy
from tfmtl.evaluate import evaluate_model, metric_names, metrics_table
from tfmtl.features import FeatureSpace
from tfmtl.log import log as _log
from tfmtl.model import MultiTaskRecommender
from tfmtl.optimizers import make_optimizer
from tfmtl.plots import plot_history, plot_metrics
from tfmtl.run import RunFolder, build_encoder, build_model, check_data, data_fingerprint
from tfmtl.targets import target_key


class WorkerFailure(RuntimeError):
    """Multi-worker training lost a peer (collectives failed or timed out)."""


@dataclass
class TrainedRun:
    """What :func:`train` returns: the model with its best weights, and what it was trained and judged on."""

    path: Path
    config: Config
    model: MultiTaskRecommender
    data: InteractionData
    split: Split
    history: list[dict[str, Any]]
    metrics: dict[str, float]


def set_seed(seed: int, *, deterministic: bool = False) -> None:
    tf.keras.utils.set_random_seed(seed)  # Python, NumPy and TensorFlow
    if deterministic:
        tf.config.experimental.enable_op_determinism()


def make_split(data: InteractionData, config: Config, base: Split | None = None) -> Split:
    """The configured split (or ``base``), with the validation part carved out of its training rows."""
    split = base if base is not None else split_interactions(data, config.train.split)
    if config.train.validation_fraction > 0 and config.train.validation == "leave_last":
        if not data.has_timestamps:
            raise ValueError(f"config field 'train.validation' = 'leave_last' needs timestamps, and dataset "
                             f"'{data.name}' has none; use 'random'")
        split = hold_out_last(split, data.interactions[USER_ID].to_numpy(), data.interactions[TIMESTAMP].to_numpy())
    elif config.train.validation_fraction > 0:
        split = hold_out_validation(split, config.train.validation_fraction, seed=config.train.seed)
    return split


def train(config: Config | None = None, *, output: str | Path, resume: bool = False,
          data: InteractionData | None = None, split: Split | None = None, progress: bool = True,
          evaluate_test: bool = True) -> TrainedRun:
    """Trains ``config`` (defaults if None) into the run folder ``output``; see the module docstring.

    ``data`` and ``split`` replace the configured dataset and split (benchmarks, notebooks with their own frames);
    the validation part is still carved out of ``split.train``. With ``train.strategy`` ``multi_worker`` every
    worker runs this with the same config and ``output`` (a shared file system, e.g. NFS or a bucket mount);
    only the chief writes there (see ``tfmtl.distribute``).
    """
    config = config or Config()
    strategy = make_strategy(config.train.strategy)  # first: multi-worker collectives are set up at start-up
    chief = is_chief(strategy)
    run = RunFolder(Path(output))
    if resume:
        run.require()
        saved = Config.from_config(json.loads(run.config.read_text()))
        if saved.model != config.model:
            raise ValueError(f"--resume: the model config differs from the one in {run.config}; "
                             "resume with the saved config (omit --config) or train into a new folder")
        config = Config(model=saved.model, train=config.train)
    elif run.config.exists():
        raise ValueError(f"{run.path} already holds a run; pass resume=True (--resume) or choose a new folder")
    known = metric_names(config.model)
    if config.train.validation_fraction > 0 and config.train.monitor not in known:
        raise ValueError(f"config field 'train.monitor' = {config.train.monitor!r} is not a metric of this model "
                         f"(have: {', '.join(known)})")
    set_seed(config.train.seed, deterministic=config.train.deterministic)
    _log(f"loading {config.train.dataset}")
    data = data if data is not None else load_dataset(config.train.dataset)
    if resume:
        check_data(run, data)
    split = run.load_split() if resume else make_split(data, config, split)
    space = FeatureSpace.load(run.features) if resume else FeatureSpace.build(config.model, data, split.train)

    if chief:
        run.path.mkdir(parents=True, exist_ok=True)
    if chief and not resume:
        config.to_file(run.config)
        run.write_json(run.data, data_fingerprint(data))
        space.save(run.features)
        run.save_split(split)
    with strategy.scope():
        encoder = build_encoder(config.model, space, seed=config.train.seed,
                                mixed_precision=config.train.mixed_precision)
        if encoder is not None and chief:
            run.write_json(run.encoder, encoder.get_config())
        if encoder is not None:
            users = sum(len(space.user_texts[c]) for c in space.user_text)
            _log(f"encoding {len(space.catalog['item_id']):,} item texts"
                 + (f" and {users:,} user texts" if users else "") + " once")
        model = build_model(config.model, space, encoder)
        if encoder is not None:
            encoder.jit_compile = config.train.jit_compile
        optimizer = make_optimizer(config, encoder.pretrained_trainable_weights if encoder is not None else None)
        model.compile(optimizer=optimizer)
        optimizer.build(model.trainable_variables)  # slots now: a tf.function that creates variables traces twice
        epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
    if strategy.num_replicas_in_sync > 1:
        _log(f"{config.train.strategy}: {strategy.num_replicas_in_sync} replicas, global batch "
             f"{config.train.batch_size} ({config.train.batch_size // strategy.num_replicas_in_sync} per replica)"
             + ("" if chief else "; this worker is not the chief and writes nothing into the run folder"))
    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, epoch=epoch)
    # Every worker saves (a save may need all of them); the others write to a scratch folder.
    writes = run if chief else RunFolder(Path(tempfile.mkdtemp(prefix="tfmtl-worker-")))
    manager = tf.train.CheckpointManager(checkpoint, str(writes.checkpoints), max_to_keep=1)
    restore_from = tf.train.latest_checkpoint(str(run.checkpoints)) if resume else None
    history = run.read_history() if resume else []
    if resume and restore_from is None:  # stopped inside its first epoch: nothing to restore but the run itself
        _log("no checkpoint yet (the run stopped in its first epoch): starting from epoch 0 with its saved config "
             "and split")
    elif resume:
        checkpoint.restore(restore_from).assert_existing_objects_matched()
        _log(f"resuming after epoch {int(epoch.numpy())}")
    history = [row for row in history if row["epoch"] <= int(epoch.numpy())]

    train_arrays = _training_arrays(config, space, data, split)
    steps = steps_per_epoch(len(next(iter(train_arrays.values()))), config.train.batch_size,
                            strategy.num_replicas_in_sync)
    tracker = _EpochEnd(run, writes, config, model, data, split, manager, epoch, history, chief=chief)
    start = int(epoch.numpy())
    if start < config.train.epochs and not tracker.should_stop():
        dataset = distributed_batches(strategy, train_arrays, batch_size=config.train.batch_size,
                                      seed=config.train.seed, first_epoch=start, epochs=config.train.epochs)
        try:
            model.fit(dataset, epochs=config.train.epochs, initial_epoch=start, steps_per_epoch=steps, verbose=0,
                      callbacks=[_Progress(steps, config.train.epochs, enabled=progress), tracker])
        except (tf.errors.UnavailableError, tf.errors.DeadlineExceededError, tf.errors.CancelledError,
                tf.errors.AbortedError) as error:
            if config.train.strategy != "multi_worker":
                raise
            first = str(error.message).strip().splitlines()[0][:300]
            raise WorkerFailure(f"a worker of the cluster failed or stopped responding ({type(error).__name__}: "
                                f"{first}). Restart every worker with --resume (the same --output) to continue from "
                                f"the last checkpoint, epoch {int(epoch.numpy())}") from None
    best_weights = writes.best_weights()
    if best_weights is not None:
        tf.train.Checkpoint(model=model).read(str(best_weights)).assert_existing_objects_matched().expect_partial()
    if model.content_head is not None and config.model.tasks[model.content_name].refit:
        refit = refit_content_head(model, seed=config.train.seed)
        chosen = (f"chosen on a held-out fifth ({refit.metric} {refit.validation[refit.l2]:.4f})" if refit.validation
                  else "the grid's middle (too few items to choose on)")
        _log(f"{model.content_name}: head refitted on {refit.items:,} training items, L2 {refit.l2:g} {chosen}")
        # Every worker saves, as after each epoch (a save may need all of them); the others into their scratch folder.
        writes.save_best(tf.train.Checkpoint(model=model), tracker.best_epoch() or int(epoch.numpy()),
                         refit=dataclasses.asdict(refit))
    if not chief:
        shutil.rmtree(writes.path, ignore_errors=True)

    metrics: dict[str, float] = {}
    if evaluate_test and len(split.test) and chief:
        _log(f"evaluating {len(split.test):,} test rows against {len(space.catalog['item_id']):,} items")
        metrics = evaluate_model(model, data, split.known, split.test, batch_size=config.train.eval_batch_size)
        best = tracker.best_epoch()
        run.write_json(run.metrics, {**metrics, "epoch": best} if best else metrics)
        (run.path / "metrics.md").write_text(metrics_table(metrics, f"test metric (best epoch {best})"))
        plot_metrics(metrics, run.plots / "test_metrics.png")
    return TrainedRun(run.path, config, model, data, split, tracker.history, metrics)


def _training_arrays(config: Config, space: FeatureSpace, data: InteractionData, split: Split) -> dict[str, np.ndarray]:
    """Training rows: interactions, or for the all-positions objective one row per user sequence."""
    if not config.model.trains_all_positions:
        arrays = space.interaction_arrays(data, split.train, split.train, is_training=True)
        for name, target in space.targets.items():
            if target_key(name) in arrays and target.ranking:
                missing = int(np.sum(~np.isfinite(arrays[target_key(name)])))
                if missing:
                    _log(f"task {name}: {missing:,} of {len(split.train):,} training rows have no "
                         f"{target.label!r} label and are left out of its loss")
        return arrays
    arrays, skipped = space.next_item_arrays(data, split.train, windows=config.model.sequence.windows)
    sequences = len(arrays[USER_ID])
    _log(f"{sequences:,} training sequences of up to {space.history_length + 1} events"
         + (f"; {skipped:,} users with a single training event predict nothing and are skipped" if skipped else ""))
    if not sequences:
        raise ValueError("the all-positions objective needs users with at least two training events; this split has "
                         "none")
    return arrays


def steps_per_epoch(rows: int, batch_size: int, replicas: int = 1) -> int:
    """Global steps per epoch; with several replicas a last batch smaller than the replica count is skipped."""
    full, rest = divmod(rows, batch_size)
    return full + (1 if rest >= replicas else 0)


class _AveragedWeights:
    """``with _AveragedWeights(model):`` the model holds the optimizer's moving averages, then its raw weights again.

    Nothing happens when the optimizer keeps no averages, or while the initial weights still hold more than
    ``INITIAL_SHARE`` of them (momentum^steps): early in training, and in short runs, the raw weights are better.
    """

    INITIAL_SHARE = 0.05

    def __init__(self, model: tf.keras.Model) -> None:
        self.model = model
        self.raw: list[np.ndarray] = []

    def __enter__(self) -> None:
        optimizer = self.model.optimizer
        if (getattr(optimizer, "use_ema", False) and getattr(optimizer, "_built", False)
                and optimizer.ema_momentum ** int(optimizer.iterations.numpy()) <= self.INITIAL_SHARE):
            self.raw = [v.numpy() for v in self.model.trainable_variables]
            optimizer.finalize_variable_values(self.model.trainable_variables)

    def __exit__(self, *exc: object) -> None:
        if not self.raw:  # the raw weights were never swapped out
            return
        for variable, value in zip(self.model.trainable_variables, self.raw, strict=True):
            variable.assign(value)
        self.raw = []


class _Progress(tf.keras.callbacks.Callback):
    """A tqdm bar per epoch on stderr, with the running total loss."""

    def __init__(self, steps: int, epochs: int, *, enabled: bool) -> None:
        super().__init__()
        self.steps, self.epochs, self.enabled = steps, epochs, enabled
        self.bar: Any = None

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(total=self.steps, desc=f"epoch {epoch + 1}/{self.epochs}", file=sys.stderr,
                        disable=not self.enabled, leave=False)

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self.bar.update(1)
        if logs and batch % 10 == 0:
            self.bar.set_postfix(loss=f"{float(logs.get('loss', 0.0)):.4f}")

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.bar.close()


class _EpochEnd(tf.keras.callbacks.Callback):
    """Validation, history, TensorBoard, plots, checkpoints, best weights and early stopping, once per epoch."""

    # Drawing the plots takes about 2 s: short epochs would spend more time drawing than training.
    PLOT_INTERVAL_SECONDS = 30.0

    def __init__(self, run: RunFolder, writes: RunFolder, config: Config, model: MultiTaskRecommender,
                 data: InteractionData, split: Split, manager: tf.train.CheckpointManager, epoch: tf.Variable,
                 history: list[dict[str, Any]], *, chief: bool) -> None:
        super().__init__()
        self.run, self.writes, self.config, self.recommender, self.data = run, writes, config, model, data
        self.split, self.manager, self.epoch, self.history, self.chief = split, manager, epoch, history, chief
        self.writer = tf.summary.create_file_writer(str(run.tensorboard)) if chief else None
        self.started = self.plotted = time.perf_counter()

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        row: dict[str, Any] = {"epoch": epoch + 1, "seconds": round(time.perf_counter() - self.started, 2)}
        # Read from the trackers, not from Keras's logs: under multi_worker the logs sum the workers' means.
        tracked = {m.name: float(m.result()) for m in self.recommender.metrics
                   if m.name.startswith(("loss_", "weight_"))}
        for task in self.config.model.tasks:
            row[f"loss/{task}"] = tracked.get(f"loss_{task}", np.nan)
            row[f"weight/{task}"] = tracked.get(f"weight_{task}", np.nan)
        row["loss/total"] = tracked.get("loss_total", np.nan)
        with _AveragedWeights(self.recommender):  # validated and kept as best: the averages, when there are any
            if len(self.split.validation):
                validation = evaluate_model(self.recommender, self.data, self.split.train, self.split.validation,
                                            batch_size=self.config.train.eval_batch_size)
                row.update({f"validation/{name}": value for name, value in validation.items()})
            self.history.append(row)
            if self.chief:
                self._record(row)
            if self.best_epoch() == epoch + 1:  # before the latest checkpoint, so a resume never lacks its best
                self.writes.save_best(tf.train.Checkpoint(model=self.recommender), epoch + 1)
        self.epoch.assign(epoch + 1)
        self.manager.save(checkpoint_number=epoch + 1)
        monitor = self.config.train.monitor
        shown = {k: round(v, 4) for k, v in row.items() if k in ("loss/total", f"validation/{monitor}")}
        _log(f"epoch {epoch + 1}: {shown} ({row['seconds']} s)")
        if self.should_stop():
            _log(f"early stop: validation {monitor} has not improved for {self.config.train.patience} epochs")
            self.model.stop_training = True

    def _record(self, row: dict[str, Any]) -> None:
        assert self.writer is not None
        self.run.write_json(self.run.history, self.history)
        with self.writer.as_default(step=row["epoch"]):
            for name, value in row.items():
                if name != "epoch" and isinstance(value, float) and np.isfinite(value):
                    tf.summary.scalar(name, value)
        self.writer.flush()
        if time.perf_counter() - self.plotted >= self.PLOT_INTERVAL_SECONDS:
            self._plot()

    def on_train_end(self, logs: dict | None = None) -> None:
        if self.chief and self.history:
            self._plot()

    def _plot(self) -> None:
        plot_history(self.history, self.run.plots)
        self.plotted = time.perf_counter()

    def _scores(self) -> list[tuple[int, float]]:
        key = f"validation/{self.config.train.monitor}"
        sign = 1.0 if self.config.train.monitor_higher_is_better else -1.0
        return [(row["epoch"], sign * row[key]) for row in self.history if np.isfinite(row.get(key, np.nan))]

    def best_epoch(self) -> int | None:
        scores = self._scores()
        if not scores:
            if self.history and len(self.split.validation):
                known = sorted(k for k in self.history[-1] if k.startswith("validation/"))
                raise ValueError(f"config field 'train.monitor' = {self.config.train.monitor!r} is not a validation "
                                 f"metric of this model (have: {', '.join(k.split('/', 1)[1] for k in known)})")
            return self.history[-1]["epoch"] if self.history else None
        return max(scores, key=lambda pair: (pair[1], -pair[0]))[0]

    def should_stop(self) -> bool:
        best = self.best_epoch()
        patience = self.config.train.patience
        return bool(patience and self.history and best is not None and self.history[-1]["epoch"] - best >= patience)
