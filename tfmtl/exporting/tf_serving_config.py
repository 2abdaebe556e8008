"""TF Serving configuration next to the versions (TF Serving ignores non-numeric entries there), and rollouts.

The export writes each file only when it is missing: after that the files are the operator's, and no export edits
them. ``models.config`` (``--model_config_file``) starts with the ``latest`` policy: TF Serving serves the newest
version and loads each new export on its own (file system poll). ``batching.config`` (``--enable_batching
--batching_parameters_file``) and ``monitoring.config`` (``--monitoring_config_file``, a Prometheus endpoint).
Paths inside are the container's: ``/models/<name>``.

A canary rollout moves ``models.config`` to the ``specific`` policy with ``stable``/``canary`` version labels, by
:func:`promote` (``tfmtl promote``), in the order TF Serving accepts: a label may only point at a version that is
loaded (serving_config.md: without ``--allow_version_labels_for_unavailable_models`` a new label must, and a label
in use always must), so a version not yet served is first added to the policy, and labelled only once it is
AVAILABLE. TF Serving re-reads the file every ``--model_config_file_poll_wait_seconds`` (in the printed command).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tfmtl.files import write_text_atomic

CONTAINER_ROOT = "/models"
MODELS_CONFIG = "models.config"
BATCHING_CONFIG = "batching.config"
MONITORING_CONFIG = "monitoring.config"
PROMETHEUS_PATH = "/monitoring/prometheus/metrics"
CONFIG_POLL_SECONDS = 30  # TF Serving re-reads models.config this often (0, its default, never re-reads it)


@dataclass(frozen=True)
class Batching:
    """TF Serving's BatchingParameters. Variable-width inputs (candidates, exclusions) need padding to batch."""

    max_batch_size: int = 64
    batch_timeout_micros: int = 2000
    num_batch_threads: int = 4
    max_enqueued_batches: int = 100


def models_config(name: str) -> str:
    """The first model_config_list: the ``latest`` policy (each new export is served once it has loaded)."""
    return _text(_model_server_config(_entry(name, policy="latest")))


def _entry(name: str, *, policy: str, versions: Sequence[int] = (), labels: Mapping[str, int] | None = None) -> Any:
    from tensorflow_serving.config import model_server_config_pb2

    entry = model_server_config_pb2.ModelConfig(name=name, base_path=f"{CONTAINER_ROOT}/{name}",
                                                model_platform="tensorflow")
    if policy == "latest":
        entry.model_version_policy.latest.num_versions = 1
    else:
        entry.model_version_policy.specific.versions.extend(sorted(set(versions)))
    for label, version in (labels or {}).items():
        entry.version_labels[label] = version
    return entry


def _model_server_config(*entries: Any) -> Any:
    from tensorflow_serving.config import model_server_config_pb2

    config = model_server_config_pb2.ModelServerConfig()
    config.model_config_list.config.extend(entries)
    return config


def _text(config: Any) -> str:
    from google.protobuf import text_format

    return text_format.MessageToString(config)


def read_models_config(path: Path) -> Any:
    """``models.config`` as a ModelServerConfig; ValueError naming the file when it does not parse."""
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    try:
        return text_format.Parse(path.read_text(encoding="utf-8"), model_server_config_pb2.ModelServerConfig())
    except text_format.ParseError as error:
        raise ValueError(f"{path.name} is not a TF Serving model_config_list: {error}") from None


@dataclass(frozen=True)
class RolloutStep:
    """One ``models.config`` write: the versions the policy serves, the labels, and the versions that must be
    AVAILABLE before the next step's labels may point at them."""

    versions: tuple[int, ...]
    labels: dict[str, int]
    waits_for: tuple[int, ...] = ()

    def to_json(self) -> dict[str, object]:
        return {"versions": list(self.versions), "labels": dict(self.labels), "waits_for": list(self.waits_for)}


def plan_rollout(current: Any, name: str, available: Sequence[int], *, canary: int | None = None,
                 stable: int | None = None) -> list[RolloutStep]:
    """The ``models.config`` writes that move ``canary`` or ``stable`` to a version, each acceptable to TF Serving.

    ``current``: the model's entry in today's config; ``available``: its version folders. ``canary V`` serves the
    ``stable`` version and V (without a stable label yet, the newest version before V becomes stable); ``stable V``
    serves V alone, labelled stable (promoting the canary, or rolling back). Labels the operator added are kept
    while their versions stay served.
    """
    if (canary is None) == (stable is None):
        raise ValueError("promote: give exactly one of --canary and --stable")
    target = canary if canary is not None else stable
    assert target is not None
    if target not in available:
        raise ValueError(f"promote: model '{name}' has no version {target} (have: "
                         f"{', '.join(map(str, available)) or 'none'})")
    policy = current.model_version_policy
    served = (set(policy.specific.versions) if policy.WhichOneof("policy_choice") == "specific"
              else set(available) if policy.WhichOneof("policy_choice") == "all"
              else {max(available)})  # latest: the newest
    labels = dict(current.version_labels)
    if canary is not None:
        base = labels.get("stable", max((v for v in available if v < canary), default=None))
        if base is None or base == canary:
            raise ValueError(f"promote: no stable version to keep beside canary {canary}: make one stable first "
                             "(--stable V)")
        final = {"stable": base, "canary": canary}
    else:
        final = {"stable": target}
    versions = set(final.values())
    others = {k: v for k, v in labels.items() if k not in ("stable", "canary")}
    steps = []
    missing = versions - served
    if missing:  # load them first; labels may point only at versions served now
        steps.append(RolloutStep(tuple(sorted(served | versions)), {k: v for k, v in labels.items() if v in served},
                                 waits_for=tuple(sorted(missing))))
    steps.append(RolloutStep(tuple(sorted(versions)),
                             {**{k: v for k, v in others.items() if v in versions}, **final}))
    return steps


def promote(model_dir: Path, name: str, *, canary: int | None = None, stable: int | None = None,
            is_available: Callable[[int], bool] | None = None, wait_seconds: float = 0.0,
            poll_seconds: float = 1.0) -> list[RolloutStep]:
    """Writes ``model_dir/models.config`` for a canary or stable move (see :func:`plan_rollout`), step by step.

    A step that loads a new version is written, then the next one only once ``is_available(version)`` says TF
    Serving has it AVAILABLE (polled for up to ``wait_seconds``). Without ``is_available`` (or when the wait runs
    out) it stops after that step: run the same promotion again once the version is AVAILABLE. Other models'
    entries in the file are kept. Returns the steps written.
    """
    from tfmtl.exporting.publish import versions

    path = model_dir / MODELS_CONFIG
    config = read_models_config(path) if path.exists() else _model_server_config(_entry(name, policy="latest"))
    entries = list(config.model_config_list.config)
    current = next((e for e in entries if e.name == name), None)
    if current is None:
        raise ValueError(f"promote: {path} has no model named '{name}' (has: "
                         f"{', '.join(e.name for e in entries) or 'none'})")
    written = []
    for step in plan_rollout(current, name, versions(model_dir), canary=canary, stable=stable):
        entry = _entry(name, policy="specific", versions=step.versions, labels=step.labels)
        entry.base_path = current.base_path or entry.base_path
        current.CopyFrom(entry)
        write_text_atomic(path, _text(config))
        written.append(step)
        if step.waits_for and not all(_wait(is_available, v, wait_seconds, poll_seconds) for v in step.waits_for):
            break
    return written


def _wait(is_available: Callable[[int], bool] | None, version: int, seconds: float, poll: float) -> bool:
    if is_available is None:
        return False
    deadline = time.monotonic() + seconds
    while True:
        if is_available(version):
            return True
        if time.monotonic() + poll > deadline:
            return False
        time.sleep(poll)


def batching_config(batching: Batching) -> str:
    return (f"max_batch_size {{ value: {batching.max_batch_size} }}\n"
            f"batch_timeout_micros {{ value: {batching.batch_timeout_micros} }}\n"
            f"num_batch_threads {{ value: {batching.num_batch_threads} }}\n"
            f"max_enqueued_batches {{ value: {batching.max_enqueued_batches} }}\n"
            # rank's [B, C] candidates and the exclusions [B, M] differ in width between requests.
            "pad_variable_length_inputs: true\n")


def monitoring_config() -> str:
    return f'prometheus_config {{\n  enable: true\n  path: "{PROMETHEUS_PATH}"\n}}\n'


def write_tf_serving_configs(model_dir: Path, name: str, batching: Batching) -> dict[str, str]:
    """Writes each of the three files that is missing (atomically); the existing ones are the operator's and stay
    as they are. Returns file name -> path."""
    files = {MODELS_CONFIG: lambda: models_config(name), BATCHING_CONFIG: lambda: batching_config(batching),
             MONITORING_CONFIG: monitoring_config}
    for file_name, text in files.items():
        if not (model_dir / file_name).exists():
            write_text_atomic(model_dir / file_name, text())
    return {file_name: str(model_dir / file_name) for file_name in files}


def docker_command(base: Path, name: str) -> str:
    """The stock TF Serving image serving ``base/name`` with these configs (gRPC 8500, REST 8501)."""
    folder = Path(base).resolve() / name
    return (f"docker run --rm -p 8500:8500 -p 8501:8501 -v {folder}:{CONTAINER_ROOT}/{name} "
            f"tensorflow/serving:2.20.0 --model_config_file={CONTAINER_ROOT}/{name}/{MODELS_CONFIG} "
            f"--enable_batching --batching_parameters_file={CONTAINER_ROOT}/{name}/{BATCHING_CONFIG} "
            f"--monitoring_config_file={CONTAINER_ROOT}/{name}/{MONITORING_CONFIG} "
            f"--file_system_poll_wait_seconds=1 --model_config_file_poll_wait_seconds={CONFIG_POLL_SECONDS}")
