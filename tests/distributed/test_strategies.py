"""tf.distribute: two workers on 127.0.0.1 (MultiWorkerMirroredStrategy) and 2 logical CPUs (MirroredStrategy)
train the toy model (with weight averaging) to the same weights as one device on the same global batches; a dead
worker is an error."""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.toy import toy_config, write_toy_schema
from tfmtl.config import Config

WORKER = Path(__file__).with_name("worker.py")
TIMEOUT = 420  # seconds for any one process: the tests are bounded even if a collective hangs


@pytest.fixture(scope="module")
def config_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("distributed")
    base = toy_config(retrieval=dataclasses.replace(toy_config().model.retrieval, negatives="in_batch"))
    # Weight averaging on (0.5^20 steps: the averages are used), so its swap runs on distributed variables too.
    train = dataclasses.replace(base.train, dataset=str(write_toy_schema(folder)), epochs=2, batch_size=64,
                                validation_fraction=0.0, weight_averaging=0.5)
    path = folder / "config.json"
    Config(model=base.model, train=train).to_file(path)
    return path


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _with_strategy(config_file: Path, strategy: str) -> Path:
    config = Config.from_file(config_file)
    path = config_file.with_name(f"config-{strategy}.json")
    Config(model=config.model, train=dataclasses.replace(config.train, strategy=strategy)).to_file(path)
    return path


def _start(config: Path, output: Path, dump: Path, *, env: dict[str, str] | None = None,
           args: tuple[str, ...] = ()) -> subprocess.Popen:
    environment = {**os.environ, "CUDA_VISIBLE_DEVICES": "", **(env or {})}
    return subprocess.Popen([sys.executable, str(WORKER), str(config), str(output), str(dump), *args],
                            env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish(*processes: subprocess.Popen) -> list[str]:
    """Waits for every process, then fails with each failed one's log: a worker that dies first is the cause."""
    outputs = []
    for process in processes:
        try:
            outputs.append(process.communicate(timeout=TIMEOUT)[0])
        except subprocess.TimeoutExpired:
            for other in processes:
                other.kill()
            pytest.fail(f"a training process did not finish within {TIMEOUT} s")
    failed = [f"process {i} exited with {p.returncode}:\n{out[-3000:]}"
              for i, (p, out) in enumerate(zip(processes, outputs, strict=True)) if p.returncode != 0]
    assert not failed, "\n\n".join(failed)
    return outputs


def _weights(dump: Path) -> tuple[list[np.ndarray], np.ndarray]:
    with np.load(dump) as values:
        return [values[k] for k in sorted(values.files) if k != "losses"], values["losses"]


@pytest.fixture(scope="module")
def single(config_file: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[list[np.ndarray], np.ndarray]:
    folder = tmp_path_factory.mktemp("single")
    _finish(_start(config_file, folder / "run", folder / "weights.npz"))
    return _weights(folder / "weights.npz")


def _cluster(ports: list[int], index: int) -> str:
    return json.dumps({"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
                       "task": {"type": "worker", "index": index}})


def _assert_same_training(weights: list[np.ndarray], losses: np.ndarray,
                          reference: tuple[list[np.ndarray], np.ndarray]) -> None:
    expected_weights, expected_losses = reference
    np.testing.assert_allclose(losses, expected_losses, rtol=1e-4)
    assert len(weights) == len(expected_weights)
    for got, expected in zip(weights, expected_weights, strict=True):
        np.testing.assert_allclose(got, expected, atol=2e-4)  # float sums in another order, over 20 Adam steps


def test_two_workers_train_identical_weights_that_match_one_device(config_file: Path, tmp_path: Path,
                                                                    single) -> None:  # type: ignore[no-untyped-def]
    config, ports = _with_strategy(config_file, "multi_worker"), _free_ports(2)
    output = tmp_path / "run"  # one run folder: only the chief writes into it
    workers = [_start(config, output, tmp_path / f"weights-{i}.npz", env={"TF_CONFIG": _cluster(ports, i)})
               for i in range(2)]
    logs = _finish(*workers)
    assert "2 replicas, global batch 64 (32 per replica)" in logs[0]
    assert "not the chief" in logs[1] and "not the chief" not in logs[0]
    (chief_weights, chief_losses), (other_weights, other_losses) = (_weights(tmp_path / f"weights-{i}.npz")
                                                                    for i in range(2))
    for a, b in zip(chief_weights, other_weights, strict=True):
        np.testing.assert_array_equal(a, b)  # all-reduced updates: bit-identical on both workers
    np.testing.assert_array_equal(chief_losses, other_losses)
    _assert_same_training(chief_weights, chief_losses, single)
    assert (output / "history.json").exists() and (output / "checkpoints").exists()
    assert not list(tmp_path.glob("tfmtl-worker-*"))


@pytest.mark.slow  # the same sums as the two workers below (which stay in the fast suite), on one process
def test_mirrored_over_two_logical_cpus_matches_one_device(config_file: Path, tmp_path: Path,
                                                           single) -> None:  # type: ignore[no-untyped-def]
    [log] = _finish(_start(_with_strategy(config_file, "mirrored"), tmp_path / "run", tmp_path / "weights.npz",
                         args=("--logical-cpus", "2")))
    assert "2 replicas" in log
    _assert_same_training(*_weights(tmp_path / "weights.npz"), single)


@pytest.mark.slow  # three processes and a timeout (most of a CPU-minute)
@pytest.mark.xdist_group("distributed-failure")  # needs no single-device reference: may run beside the others
def test_a_dead_worker_is_a_clear_error_not_a_hang(config_file: Path, tmp_path: Path) -> None:
    config, ports = _with_strategy(config_file, "multi_worker"), _free_ports(2)
    slow = Config.from_file(config)
    config = config.with_name("config-long.json")
    Config(model=slow.model, train=dataclasses.replace(slow.train, epochs=200)).to_file(config)
    env = {"TFMTL_COLLECTIVE_TIMEOUT": "20"}
    workers = [_start(config, tmp_path / "run", tmp_path / f"w{i}.npz", env={**env, "TF_CONFIG": _cluster(ports, i)})
               for i in range(2)]
    time.sleep(1)
    deadline = time.monotonic() + TIMEOUT
    while not (tmp_path / "run" / "history.json").exists():  # the chief finished an epoch: training is under way
        assert time.monotonic() < deadline and workers[0].poll() is None, "training never started"
        time.sleep(0.5)
    workers[1].kill()
    started = time.monotonic()
    try:
        output, _ = workers[0].communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        workers[0].kill()
        pytest.fail("the surviving worker hung after its peer died")
    assert workers[0].returncode != 0
    assert "a worker of the cluster failed or stopped responding" in output, output[-3000:]
    assert time.monotonic() - started < 180


@pytest.mark.parametrize("rows, batch, replicas, steps", [
    (600, 64, 1, 10),  # 9 full batches and one of 24 rows
    (600, 64, 2, 10),  # 24 rows split 12 + 12
    (577, 64, 2, 9),   # a last batch of 1 row cannot feed 2 replicas: skipped
    (577, 64, 1, 10),
])
def test_steps_per_epoch_by_hand(rows: int, batch: int, replicas: int, steps: int) -> None:
    from tfmtl.training import steps_per_epoch

    assert steps_per_epoch(rows, batch, replicas) == steps
