"""TF Serving configuration files written next to the versions (TF Serving ignores non-numeric entries there).

``models.config`` (``--model_config_file``): the model with a version-label rollout: ``stable`` is the previous
version, ``canary`` the new one (both loaded with the ``specific`` policy). ``batching.config``
(``--enable_batching --batching_parameters_file``) and ``monitoring.config`` (``--monitoring_config_file``, a
Prometheus endpoint). Paths inside are the container's: ``/models/<name>``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tfmtl.exporting.publish import write_text_atomic

CONTAINER_ROOT = "/models"
MODELS_CONFIG = "models.config"
BATCHING_CONFIG = "batching.config"
MONITORING_CONFIG = "monitoring.config"
PROMETHEUS_PATH = "/monitoring/prometheus/metrics"


@dataclass(frozen=True)
class Batching:
    """TF Serving's BatchingParameters. Variable-width inputs (candidates, exclusions) need padding to batch."""

    max_batch_size: int = 64
    batch_timeout_micros: int = 2000
    num_batch_threads: int = 4
    max_enqueued_batches: int = 100


def models_config(name: str, versions: list[int]) -> str:
    """A model_config_list: the newest version as ``canary`` and the one before as ``stable``."""
    latest = versions[-1]
    stable = versions[-2] if len(versions) > 1 else latest
    served = sorted({stable, latest})
    lines = ["model_config_list {", "  config {", f'    name: "{name}"',
             f'    base_path: "{CONTAINER_ROOT}/{name}"', '    model_platform: "tensorflow"',
             "    model_version_policy {", "      specific {"]
    lines += [f"        versions: {v}" for v in served]
    lines += ["      }", "    }",
              f'    version_labels {{ key: "stable" value: {stable} }}',
              f'    version_labels {{ key: "canary" value: {latest} }}', "  }", "}"]
    return "\n".join(lines) + "\n"


def batching_config(batching: Batching) -> str:
    return (f"max_batch_size {{ value: {batching.max_batch_size} }}\n"
            f"batch_timeout_micros {{ value: {batching.batch_timeout_micros} }}\n"
            f"num_batch_threads {{ value: {batching.num_batch_threads} }}\n"
            f"max_enqueued_batches {{ value: {batching.max_enqueued_batches} }}\n"
            # rank's [B, C] candidates and the exclusions [B, M] differ in width between requests.
            "pad_variable_length_inputs: true\n")


def monitoring_config() -> str:
    return f'prometheus_config {{\n  enable: true\n  path: "{PROMETHEUS_PATH}"\n}}\n'


def write_tf_serving_configs(model_dir: Path, name: str, versions: list[int], batching: Batching) -> dict[str, str]:
    """Writes the three files (atomically); returns file name -> path."""
    files = {MODELS_CONFIG: models_config(name, versions), BATCHING_CONFIG: batching_config(batching),
             MONITORING_CONFIG: monitoring_config()}
    for file_name, text in files.items():
        write_text_atomic(model_dir / file_name, text)
    return {file_name: str(model_dir / file_name) for file_name in files}


def docker_command(base: Path, name: str) -> str:
    """The stock TF Serving image serving ``base/name`` with these configs (gRPC 8500, REST 8501)."""
    folder = Path(base).resolve() / name
    return (f"docker run --rm -p 8500:8500 -p 8501:8501 -v {folder}:{CONTAINER_ROOT}/{name} "
            f"tensorflow/serving:2.20.0 --model_config_file={CONTAINER_ROOT}/{name}/{MODELS_CONFIG} "
            f"--enable_batching --batching_parameters_file={CONTAINER_ROOT}/{name}/{BATCHING_CONFIG} "
            f"--monitoring_config_file={CONTAINER_ROOT}/{name}/{MONITORING_CONFIG}")
