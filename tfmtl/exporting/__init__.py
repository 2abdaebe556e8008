"""Export a trained run as a SavedModel that stock TF Serving loads: ``tfmtl.export(run, name=...)``.

```
<base>/<name>/
  <version>/                       saved_model.pb, variables/, assets.extra/
    assets.extra/tf_serving_warmup_requests   PredictionLog records for every signature (real rows)
    assets.extra/tfmtl_export.json            the manifest: signatures, dtypes, shapes, max k, libraries, ...
  models.config  batching.config  monitoring.config      TF Serving configuration, written once (see tf_serving_config)
```

Steps: build the serving module (never the training model) -> save into a hidden partial folder -> write warmup
requests -> verify (fresh process, TF2 and TF1 loaders, every signature against the in-memory module, ops against
the target TF Serving, size) -> write the manifest -> rename into the next integer version.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from tfmtl.config import USER_SNAPSHOTS, ExportConfig, RequestLimits
from tfmtl.data.history import HISTORY, user_histories
from tfmtl.data.interactions import USER_ID, InteractionData
from tfmtl.data.pipeline import PAD, feature_arrays, numeric_fill
from tfmtl.exporting.module import ServingModule, build_serving_module
from tfmtl.exporting.publish import (
    check_model_name,
    next_version,
    partial_version,
    publish,
    version_lock,
)
from tfmtl.exporting.text_embedder import save_text_embedder
from tfmtl.exporting.tf_serving_config import Batching, docker_command, write_tf_serving_configs
from tfmtl.exporting.verify import Verification, verify_export, weight_bytes
from tfmtl.exporting.warmup import WARMUP_FILE, sample_requests, write_warmup
from tfmtl.log import log as _log
from tfmtl.model import MultiTaskRecommender
from tfmtl.serving import signatures as wire

__all__ = ["ExportResult", "MANIFEST_FILE", "Prepared", "export", "prepare", "save_text_embedder"]

MANIFEST_FILE = "tfmtl_export.json"
ASSETS_EXTRA = "assets.extra"
LIBRARIES = ("tensorflow", "tf-keras", "keras", "tensorflow-recommenders", "tensorflow-text", "keras-hub",
             "tensorflow-serving-api", "numpy", "tfmtl")


@dataclass
class ExportResult:
    """Where a version went, and what verification measured."""

    name: str
    version: int
    path: Path
    manifest: dict[str, Any]
    tf_serving_configs: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"path": str(self.path), "version": self.version, "name": self.name,
                "signatures": sorted(self.manifest["signatures"]), "max_k": self.manifest["max_k"],
                "minimum_tf_serving": self.manifest["minimum_tf_serving"],
                "verification": self.manifest["verification"], "tf_serving_configs": self.tf_serving_configs,
                "docker": self.manifest["docker"]}


@dataclass
class _Source:
    model: MultiTaskRecommender
    data: InteractionData
    known_rows: np.ndarray
    metrics: dict[str, Any]
    run: str


def export(run: Any, *, name: str, base: str | Path = "saved_models", config: ExportConfig | None = None,
           data: InteractionData | None = None) -> ExportResult:
    """Exports ``run`` (a run folder path, or what :func:`tfmtl.train` returned) as the next version of ``name``.

    ``data`` replaces the run's configured dataset (it must be the data the run was trained on).
    Raises ValueError (bad input) or RuntimeError (verification failed); nothing is published then.
    """
    config = config or ExportConfig()
    check_model_name(name)
    started = time.perf_counter()
    prepared = prepare(run, data=data, max_k=config.max_k, user_snapshot=config.user_snapshot, limits=config.limits)
    module, source, user_ids, user_columns = (prepared.module, prepared.source, prepared.user_ids,
                                              prepared.user_columns)
    space = source.model.space
    functions = module.signatures()
    inputs = wire.signature_inputs(space)
    outputs = wire.signature_outputs(space, source.model.config.embedding_dim)
    if not len(user_ids):  # no snapshot: warm up with real users' features all the same
        user_ids, user_columns = snapshot_of_users(source.model, source.data, source.known_rows,
                                                   limit=config.warmup_users)
    requests = sample_requests(space, user_ids=user_ids, user_columns=user_columns,
                               k=min(10, module.max_k), users=config.warmup_users,
                               histories=_warmup_histories(source, 2))
    model_dir = Path(base) / name
    with partial_version(model_dir) as partial:
        _log(f"saving into {partial}")
        tf.saved_model.save(module, str(partial), signatures=functions)
        warmup = write_warmup(partial / ASSETS_EXTRA / WARMUP_FILE, name, requests, inputs)
        verification = None
        if config.verify:
            _log("verifying: fresh process, TF2 and TF1 loaders, every signature, ops, size")
            verification = verify_export(partial, functions, requests, warmup, inputs=inputs, outputs=outputs,
                                         target=config.tf_serving_version, weight_bytes=weight_bytes(functions))
        with version_lock(model_dir):
            version = next_version(model_dir)
            manifest = build_manifest(module, source, name=name, version=version, config=config, inputs=inputs,
                                      outputs=outputs, verification=verification, base=Path(base))
            (partial / ASSETS_EXTRA / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
            path = publish(partial, model_dir, version)
            configs = write_tf_serving_configs(model_dir, name, _batching(config))
    _log(f"exported {name} version {version} to {path} in {time.perf_counter() - started:.1f} s")
    return ExportResult(name=name, version=version, path=path, manifest=manifest, tf_serving_configs=configs)


@dataclass
class Prepared:
    """A run's serving module with what it was built from."""

    module: ServingModule
    source: _Source
    user_ids: np.ndarray
    user_columns: dict[str, np.ndarray]


def prepare(run: Any, *, data: InteractionData | None = None, max_k: int = 1000,
            user_snapshot: str = "all", limits: RequestLimits | None = None) -> Prepared:
    """The serving module of ``run`` (a run folder or :func:`tfmtl.train`'s result), as :func:`export` saves it.

    ``user_snapshot``: ``all`` (every known user's features and history) or ``none`` (no per-user state).
    """
    if user_snapshot not in USER_SNAPSHOTS:
        raise ValueError(f"user_snapshot must be one of {', '.join(USER_SNAPSHOTS)}, got {user_snapshot!r}")
    source = _load_source(run, data)
    space = source.model.space
    user_ids, user_columns = (snapshot_of_users(source.model, source.data, source.known_rows)
                              if user_snapshot == "all" else (np.zeros(0, dtype=object), {}))
    _log(f"building the serving module ({len(space.catalog[wire.ITEM_ID]):,} items, {len(user_ids):,} users)")
    module = build_serving_module(
        source.model, user_ids=user_ids, user_columns=user_columns,
        user_defaults={c: numeric_fill(source.data.users, c) for c in space.user_numeric},
        item_defaults={c: numeric_fill(source.data.items, c) for c in space.item_numeric}, max_k=max_k,
        limits=limits)
    return Prepared(module, source, user_ids, user_columns)


def snapshot_of_users(model: MultiTaskRecommender, data: InteractionData, known_rows: np.ndarray, *,
                      limit: int | None = None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(user ids [U], user tower columns incl. ``history`` [U, H] newest last) of every user in the user table
    (or of its first ``limit``)."""
    space = model.space
    users = data.users if limit is None else data.users.iloc[:limit]
    arrays = feature_arrays(users, data, include_labels=False)
    ids = users[USER_ID].astype(str).to_numpy(dtype=object)
    columns = {c: arrays[c] for c in space.user_features}
    if space.history_length:
        length = space.history_length
        histories = user_histories(data, known_rows, length=length)
        padded = np.full((len(ids), length), PAD, dtype=object)
        for row, user in enumerate(ids):
            items = histories.get(user, [])
            if items:
                padded[row, length - len(items):] = items
        columns[HISTORY] = padded
    return ids, columns


def build_manifest(module: ServingModule, source: _Source, *, name: str, version: int, config: ExportConfig,
                   inputs: dict[str, list[wire.Field]], outputs: dict[str, list[wire.Field]],
                   verification: Verification | None, base: Path) -> dict[str, Any]:
    model, space = source.model, source.model.space
    encoder = next((f.encoder for tower in (model.item_tower, model.user_tower) for f in tower.features.values()
                    if hasattr(f, "encoder")), None)
    return {
        "format": "tfmtl-export/1",
        "name": name,
        "version": version,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "default_signature": wire.RETRIEVE if wire.RETRIEVE in inputs else wire.USER_EMBEDDING,
        "signatures": {sig: {"inputs": [f.to_json() for f in inputs[sig]],
                             "outputs": [f.to_json() for f in outputs[sig]]} for sig in inputs},
        "missing_values": "send '' (strings), NaN (numbers) or a row of '' (lists) for an unknown value: known "
                          "users and items are filled from the export's snapshot, others get the unknown bucket "
                          "or the training table's mean",
        "max_k": module.max_k,
        "limits": module.limits.get_config(),
        "embedding_dim": model.config.embedding_dim,
        "catalog_size": len(space.catalog[wire.ITEM_ID]),
        "known_users": module.users.size,
        "user_snapshot": config.user_snapshot,
        "history_length": space.history_length,
        "history": ({"input": wire.HISTORY_ITEM_IDS, "order": "oldest first, newest last; '' pads",
                     "length": space.history_length,
                     "longer": f"the newest {space.history_length} are read; output '{wire.HISTORY_DROPPED}' "
                               "counts the older ones dropped",
                     "unknown_items": "the unknown-item bucket",
                     "when_not_sent": module.history_fallback,
                     "exclude_with": f"{wire.RETRIEVE_EXCLUDING}: {wire.EXCLUDE_HISTORY}=true"}
                    if space.history_length else None),
        "vectors": ({"users": dict(space.user_vector), "items": dict(space.item_vector),
                     "dtype": "float32", "shape": "[B, dim]; rank candidates [B, C, dim]",
                     "missing": "a row of NaN: a known user or item gets the snapshot's vector, a new one zeros",
                     "normalisation": "none: send the vectors as they were written for training"}
                    if space.user_vector or space.item_vector else None),
        "vocabulary_sizes": {k: len(v) for k, v in space.vocabularies.items()},
        "title_column": module.title_column,
        "encoder": encoder.config.get_config() if encoder is not None else None,
        "tasks": {name: {"type": t.type, "weight": t.weight, "output": t.output if t.ranking else None,
                         "reads": t.feature if t.type == "content" else
                         (f"{t.label} {t.op} {t.value:g}" if t.op else t.label)}
                  for name, t in model.space.targets.items()},
        "training_metrics": source.metrics,
        "run": source.run,
        "libraries": {lib: _version(lib) for lib in LIBRARIES},
        "minimum_tf_serving": verification.minimum_tf_serving if verification else None,
        "target_tf_serving": config.tf_serving_version,
        "verification": verification.to_json() if verification else None,
        "warmup_requests": WARMUP_FILE,
        "docker": docker_command(base, name),
    }


def _warmup_histories(source: _Source, users: int) -> list[list[str]]:
    """Histories the warmup requests send: some users' real newest items (the request-time path)."""
    length = source.model.space.history_length
    if not length:
        return []
    histories = user_histories(source.data, source.known_rows, length=length)
    return [items for _, items in sorted(histories.items())[:users]]


def _load_source(run: Any, data: InteractionData | None) -> _Source:
    from tfmtl.training import TrainedRun

    if isinstance(run, TrainedRun):
        return _Source(run.model, data if data is not None else run.data, run.split.known, dict(run.metrics),
                       str(run.path))
    from tfmtl.data import load_dataset
    from tfmtl.run import RunFolder, check_data, load_run

    folder = RunFolder(Path(run))
    config, model, split = load_run(folder.path)
    data = data if data is not None else load_dataset(config.train.dataset)
    check_data(folder, data)
    metrics = json.loads(folder.metrics.read_text()) if folder.metrics.exists() else {}
    return _Source(model, data, split.known, metrics, str(folder.path))


def _batching(config: ExportConfig) -> Batching:
    return Batching(max_batch_size=config.max_batch_size, batch_timeout_micros=config.batch_timeout_micros,
                    num_batch_threads=config.num_batch_threads, max_enqueued_batches=config.max_enqueued_batches)


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None
