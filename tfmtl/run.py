"""The run folder: everything a training run leaves behind, and how a model is rebuilt from it.

```
RUN/
  config.json        the resolved config (every default written out)
  features.json      vocabularies, bucket boundaries, item catalog (FeatureSpace)
  encoder.json       the text encoder's config (a ``tiny`` encoder's learned vocabulary included)
  split.npz          row positions of train / validation / test
  history.json       per epoch: loss/<task>, weight/<task>, validation/<metric>, seconds
  metrics.json       test metrics of the best epoch;  metrics.md  the same as a table
  plots/             losses.png, weights.png, validation.png, test_metrics.png
  checkpoints/       latest epoch (model + optimizer + epoch), for --resume
  best/              the best epoch's weights (by train.monitor), named by best/best.json
  tensorboard/       scalars per epoch
```
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from tfmtl.config import Config, ModelConfig
from tfmtl.data.history import HISTORY, HISTORY_LABELS
from tfmtl.data.interactions import ITEM_ID, TIMESTAMP, USER_ID, InteractionData
from tfmtl.data.splits import Split
from tfmtl.encoders.text import TextEncoder
from tfmtl.features import FeatureSpace
from tfmtl.files import fsync_files, write_atomic, write_text_atomic
from tfmtl.model import MultiTaskRecommender
from tfmtl.targets import target_key, weight_key

BEST_POINTER = "best.json"


@dataclass(frozen=True)
class RunFolder:
    path: Path

    @property
    def config(self) -> Path:
        return self.path / "config.json"

    @property
    def features(self) -> Path:
        return self.path / "features.json"

    @property
    def encoder(self) -> Path:
        return self.path / "encoder.json"

    @property
    def split(self) -> Path:
        return self.path / "split.npz"

    @property
    def data(self) -> Path:
        return self.path / "data.json"

    @property
    def history(self) -> Path:
        return self.path / "history.json"

    @property
    def metrics(self) -> Path:
        return self.path / "metrics.json"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def best(self) -> Path:
        return self.path / "best" / "weights"

    @property
    def plots(self) -> Path:
        return self.path / "plots"

    @property
    def tensorboard(self) -> Path:
        return self.path / "tensorboard"

    def require(self) -> None:
        missing = [p.name for p in (self.config, self.features, self.split) if not p.exists()]
        if missing:
            raise ValueError(f"{self.path} is not a tfmtl run folder (missing {', '.join(missing)}); "
                             "train one with `tfmtl train --output DIR`")

    def read_history(self) -> list[dict[str, Any]]:
        return json.loads(self.history.read_text()) if self.history.exists() else []

    def write_json(self, path: Path, value: Any) -> None:
        write_text_atomic(path, json.dumps(value, indent=2, default=_plain) + "\n")  # never half-written

    def save_split(self, split: Split) -> None:
        write_atomic(self.split, lambda file: np.savez(file, train=split.train, validation=split.validation,
                                                       test=split.test, strategy=np.array(split.strategy)))

    def save_best(self, checkpoint: Any, epoch: int, *, refit: dict[str, Any] | None = None) -> None:
        """The best epoch's weights: written whole under their own prefix, then named by ``best/best.json``
        (atomically), then the older ones removed. So ``best/`` always names one complete checkpoint, of an epoch
        ``history.json`` already holds (call this after writing the history). ``refit``: those weights with the
        content head refitted after training (:mod:`tfmtl.content_refit`), and how."""
        folder = self.path / "best"
        folder.mkdir(parents=True, exist_ok=True)
        prefix = f"epoch-{epoch}" + ("-refit" if refit else "")
        written = Path(checkpoint.write(str(folder / prefix)))
        fsync_files([p for p in folder.iterdir() if p.name.startswith(written.name + ".")])
        self.write_json(folder / BEST_POINTER, {"epoch": epoch, "prefix": prefix,
                                                **({"content_refit": refit} if refit else {})})
        for stale in folder.iterdir():
            if stale.name != BEST_POINTER and not stale.name.startswith(prefix + "."):
                stale.unlink()

    def best_weights(self) -> Path | None:
        """The prefix of the best epoch's checkpoint (``best/best.json``; runs before it: ``best/weights``)."""
        pointer = self.path / "best" / BEST_POINTER
        if pointer.exists():
            return self.path / "best" / json.loads(pointer.read_text())["prefix"]
        return self.best if self.best.with_suffix(".index").exists() else None

    def content_refit(self) -> dict[str, Any] | None:
        """How the best weights' content head was refitted after training (``best/best.json``), if it was."""
        pointer = self.path / "best" / BEST_POINTER
        return json.loads(pointer.read_text()).get("content_refit") if pointer.exists() else None

    def load_split(self) -> Split:
        with np.load(self.split) as parts:
            return Split(str(parts["strategy"]), train=parts["train"], test=parts["test"],
                         validation=parts["validation"])


def data_fingerprint(data: InteractionData) -> dict[str, object]:
    """Name, size and checksums of the data a run's split rows and features refer to: the interactions (ids and
    labels), their timestamps (the splits and histories follow time), and the item and user tables."""
    frame = data.interactions
    interactions = _digest(frame[c] for c in (USER_ID, ITEM_ID, *data.labels))
    out: dict[str, object] = {"name": data.name, "interactions": len(frame), "sha256": interactions}
    if data.has_timestamps:
        out["timestamps_sha256"] = _digest([frame[TIMESTAMP]])
    out["items_sha256"] = _table_digest(data.items, ITEM_ID)
    out["users_sha256"] = _table_digest(data.users, USER_ID)
    return out


def _digest(columns: Any) -> str:
    digest = hashlib.sha256()
    for column in columns:
        # pandas 3 keeps a missing value missing through astype(str): a missing label is spelt out
        digest.update("\x1f".join(column.astype(str).fillna("<missing>")).encode("utf-8", "surrogateescape"))
        digest.update(b"\x1e")
    return digest.hexdigest()


def _table_digest(table: Any, id_column: str) -> str:
    """Order-free: the rows sorted by id, every column in name order."""
    if table is None or id_column not in table:
        return _digest([])
    ordered = table.sort_values(id_column, kind="stable")
    return _digest([_vector_digests(ordered[c]) for c in sorted(ordered.columns)] + [ordered.columns.to_series()])


def _vector_digests(column: Any) -> Any:
    """A column of vectors (float arrays, None where missing) as one digest per row: the text of a long array is
    abbreviated by numpy ('...'), so it would not tell two tables apart."""
    if column.dtype != object or not any(isinstance(v, np.ndarray) for v in column):
        return column
    return column.map(lambda v: hashlib.sha256(v.tobytes()).hexdigest() if isinstance(v, np.ndarray) else v)


def check_data(run: RunFolder, data: InteractionData) -> None:
    """Raises when ``data`` is not the data the run was trained on (runs written before a checksum existed are
    checked on the ones they hold)."""
    if not run.data.exists():
        return
    expected, actual = json.loads(run.data.read_text()), data_fingerprint(data)
    differs = sorted(key for key in expected if expected[key] != actual.get(key))
    if differs:
        raise ValueError(f"{run.path} was trained on dataset '{expected['name']}' ({expected['interactions']:,} "
                         f"interactions), not on '{actual['name']}' ({actual['interactions']:,}): "
                         f"{', '.join(_FINGERPRINT_PARTS.get(k, k) for k in differs)} differ; pass that data")


_FINGERPRINT_PARTS = {"sha256": "the interactions' ids or labels", "timestamps_sha256": "the timestamps",
                      "items_sha256": "the item table", "users_sha256": "the user table",
                      "interactions": "the number of interactions", "name": "the dataset name"}


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def build_encoder(config: ModelConfig, space: FeatureSpace, *, seed: int | None = None,
                  mixed_precision: bool = False) -> TextEncoder | None:
    """The text encoder both towers share (None when neither has a text column in use); ``mixed_precision``
    computes it in bfloat16 (float32 variables)."""
    if not space.item_text and not space.user_text:
        return None
    texts = ([str(t) for column in space.item_text for t in space.catalog[column]]
             + [t for column in space.user_text for t in space.user_texts[column]])
    return TextEncoder.from_encoder_config(config.encoder, texts=texts, seed=seed,
                                           dtype="mixed_bfloat16" if mixed_precision else None)


def build_model(config: ModelConfig, space: FeatureSpace, encoder: TextEncoder | None, *,
                fill_text_cache: bool = True, per_example_text: bool = False) -> MultiTaskRecommender:
    """A model with every variable created (so checkpoints restore eagerly and completely).

    ``fill_text_cache`` encodes the catalog's texts once and precomputes the training caches (skip it only for
    inference when a checkpoint will restore the cache). ``per_example_text`` runs the text encoder on every row
    with no caches: the straightforward reference the fast path is tested and benchmarked against.
    """
    model = MultiTaskRecommender(config, space, encoder, per_example_text=per_example_text)
    model.task_losses(example_batch(space), training=False)
    if fill_text_cache:
        for feature in (*model.item_tower.features.values(), *model.user_tower.features.values()):
            if hasattr(feature, "fill_cache"):
                feature.fill_cache()
    return model


def example_batch(space: FeatureSpace) -> dict[str, tf.Tensor]:
    """One row of every input the model reads: the first catalog item and an unknown user."""
    batch: dict[str, Any] = {k: v[:1] for k, v in space.catalog.items()}
    for column in (*space.user_categorical, *space.user_text, "user_id"):
        batch[column] = np.array([""], dtype=object)
    for column in space.user_numeric:
        batch[column] = np.zeros(1, np.float32)
    for column in space.user_multi_valued:
        batch[column] = np.full((1, space.widths.get(column, 1)), "", dtype=object)
    for column, dim in space.user_vector.items():
        batch[column] = np.zeros((1, dim), np.float32)
    if space.history_length:
        batch[HISTORY] = np.full((1, space.history_length), "", dtype=object)
        if space.rated_history:
            batch[HISTORY_LABELS] = np.zeros((1, space.history_length), np.float32)
    for name, target in space.targets.items():
        if target.ranking or target.label:  # a ranking target, or a retrieval `positive` condition's
            batch[target_key(name)] = np.ones(1, np.float32)
        if target.sample_weight:
            batch[weight_key(name)] = np.ones(1, np.float32)
    return {k: tf.constant(v) for k, v in batch.items()}


def load_run(path: str | Path, *, weights: str = "best") -> tuple[Config, MultiTaskRecommender, Split]:
    """(config, model with the ``best`` or ``latest`` weights, split) of a run folder."""
    run = RunFolder(Path(path))
    run.require()
    config = Config.from_config(json.loads(run.config.read_text()))
    space = FeatureSpace.load(run.features)
    encoder = (TextEncoder.from_config(json.loads(run.encoder.read_text()))
               if run.encoder.exists() and (space.item_text or space.user_text) else None)
    model = build_model(config.model, space, encoder, fill_text_cache=False)
    best = run.best_weights()
    if weights == "best" and best is not None:
        # expect_partial: the optimizer's slots are in the file too, and an inference model has no optimizer.
        tf.train.Checkpoint(model=model).read(str(best)).assert_existing_objects_matched().expect_partial()
    else:
        latest = tf.train.latest_checkpoint(str(run.checkpoints))
        if latest is None:
            raise ValueError(f"{run.path} has no checkpoint yet")
        tf.train.Checkpoint(model=model).read(latest).expect_partial()  # the optimizer is not needed
    return config, model, run.load_split()
