"""tf.distribute for training: the strategy, who is chief, and how global batches reach the replicas.

Global batch semantics: ``train.batch_size`` is the global batch B, whatever the strategy. Every input pipeline
(one per worker) builds the same seeded sequence of global batches (``epoch_batches``) and keeps its replicas'
slices: replica r of R gets rows [r·B/R, (r+1)·B/R) of each global batch. A last batch that does not split
evenly is trimmed to a multiple of R (at most R-1 rows per epoch, different rows each epoch; counted and logged).

Losses: each replica returns its mean loss divided by R; the optimizer sums gradients across replicas, so a step
follows the gradient of the global batch's mean loss, as on one device. In-batch retrieval negatives are
cross-replica (see ``RetrievalTask``): every row's softmax sees the whole global batch, as on one device.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import numpy as np
import tensorflow as tf

from tfmtl.config import STRATEGIES
from tfmtl.data.pipeline import epoch_batches

# Collectives wait at most this long for a peer, so a failed worker ends training with an error, not a hang.
COLLECTIVE_TIMEOUT_SECONDS = 120


def make_strategy(name: str) -> tf.distribute.Strategy:
    """``default`` | ``mirrored`` (every local GPU, else every logical CPU) | ``multi_worker`` (``TF_CONFIG``)."""
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
        return tf.distribute.MirroredStrategy(devices)
    if name == "multi_worker":
        _check_tf_config()
        timeout = float(os.environ.get("TFMTL_COLLECTIVE_TIMEOUT", COLLECTIVE_TIMEOUT_SECONDS))
        options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=timeout)
        return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    raise ValueError(f"--strategy {name!r} is unknown; expected one of {', '.join(STRATEGIES)}")


def _check_tf_config() -> None:
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        raise ValueError("--strategy multi_worker reads the cluster from the TF_CONFIG environment variable, which "
                         'is not set (e.g. {"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
                         '"task": {"type": "worker", "index": 0}})')
    try:
        config = json.loads(raw)
    except json.JSONDecodeError as error:
        raise ValueError(f"TF_CONFIG is not valid JSON: {error}") from None
    cluster, task = config.get("cluster"), config.get("task")
    if not isinstance(cluster, dict) or not cluster.get("worker") and not cluster.get("chief"):
        raise ValueError("TF_CONFIG field 'cluster' must list the workers: {\"worker\": [\"host:port\", ...]}")
    if not isinstance(task, dict) or task.get("type") not in cluster:
        raise ValueError(f"TF_CONFIG field 'task' must name a job of the cluster ({', '.join(cluster)}), got {task!r}")
    if not 0 <= int(task.get("index", -1)) < len(cluster[task["type"]]):
        raise ValueError(f"TF_CONFIG field 'task.index' = {task.get('index')!r} is not a position in "
                         f"cluster.{task['type']} ({len(cluster[task['type']])} entries)")


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """The worker that writes the run folder: the ``chief`` task, else worker 0; always true on one host."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    if resolver.task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return resolver.task_type == "worker" and resolver.task_id == 0 and not has_chief


def distributed_batches(strategy: tf.distribute.Strategy, arrays: dict[str, np.ndarray], *, batch_size: int,
                        seed: int, first_epoch: int, epochs: int) -> Any:
    """The global batches of :func:`epoch_batches`, sliced per replica (see the module docstring)."""
    replicas = strategy.num_replicas_in_sync
    if replicas == 1:
        return epoch_batches(arrays, batch_size=batch_size, seed=seed, first_epoch=first_epoch, epochs=epochs)
    if batch_size < replicas:
        raise ValueError(f"config field 'train.batch_size' ({batch_size}) is smaller than the {replicas} replicas")
    rest = len(next(iter(arrays.values()))) % batch_size
    trimmed = rest if rest < replicas else rest % replicas  # see training.steps_per_epoch
    if trimmed:
        print(f"[tfmtl] {replicas} replicas: the last batch of each epoch is trimmed by {trimmed} row(s) so it "
              "splits evenly (different rows each epoch)", file=sys.stderr, flush=True)

    def dataset(context: tf.distribute.InputContext) -> tf.data.Dataset:
        local = replicas // context.num_input_pipelines
        first = context.input_pipeline_id * local

        def slices(batch: dict[str, tf.Tensor]) -> tf.data.Dataset:
            size = tf.shape(next(iter(batch.values())))[0] // replicas
            return tf.data.Dataset.range(first, first + local).map(
                lambda r: {k: v[r * tf.cast(size, tf.int64):(r + 1) * tf.cast(size, tf.int64)]
                           for k, v in batch.items()})

        batches = epoch_batches(arrays, batch_size=batch_size, seed=seed, first_epoch=first_epoch, epochs=epochs)
        batches = batches.filter(lambda batch: tf.shape(next(iter(batch.values())))[0] >= replicas)
        return batches.flat_map(slices).prefetch(tf.data.AUTOTUNE)

    options = tf.distribute.InputOptions(experimental_fetch_to_device=False)  # string features stay on the host
    return strategy.distribute_datasets_from_function(dataset, options=options)


def replica_scale() -> tuple[float, tf.distribute.ReplicaContext | None]:
    """(1/R, the replica context) inside a replicated step; (1.0, None) otherwise."""
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return 1.0, None
    return 1.0 / context.num_replicas_in_sync, context
