from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import settings as hypothesis_settings

import tfmtl  # noqa: F401  (the Keras guard runs before any test imports TensorFlow)

# CI explores the same fuzz examples every run (a failure there is reproducible); elsewhere they vary run to run.
hypothesis_settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    hypothesis_settings.load_profile("ci")

REPO = Path(__file__).resolve().parents[1]


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which reads the groups into the node ids
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Groups for ``pytest -n N --dist loadgroup``: the tests reading the session's toy export run on one worker
    (it is trained and exported once there), the tests reading only its toy run on another (trained once more
    there, so the two halves run side by side), every other module on one worker (its module fixtures are built
    once), and a test marked with a group of its own (an independent slow one) wherever there is room."""
    for item in items:
        if item.get_closest_marker("xdist_group"):  # a test that asked for a group of its own
            continue
        fixtures = set(getattr(item, "fixturenames", ()))
        group = ("toy-export" if fixtures & {"exported", "loaded"} else "toy-run" if "toy_run" in fixtures
                 else item.nodeid.split("::")[0])
        item.add_marker(pytest.mark.xdist_group(group))


@pytest.fixture(scope="session")
def movielens_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The MovieLens cache: $TFMTL_DATA_DIR when set (CI reuses it), else a fresh folder for this run."""
    configured = os.environ.get("TFMTL_DATA_DIR")
    return Path(configured) if configured else tmp_path_factory.mktemp("tfmtl-data")


def run_python(code: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Runs code in a fresh interpreter (import-order and determinism tests need a clean process)."""
    full_env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout,
                          env=full_env, cwd=REPO)


# === A toy run and its export, shared by the export and serving tests ===

@pytest.fixture(scope="session")
def toy_run(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """One toy run (tiny BERT reading titles; the data as CSV files + schema), trained once per test session: the
    first xdist worker that needs it trains it, the others wait and load it from its run folder. Its user tower is
    the causal sequence tower trained on every position (with the titles in its history), so every export and
    serving test runs the sequence model; the pooled towers are covered by tests that build their own models."""
    from filelock import FileLock

    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base  # one folder for every worker
    folder, trained = shared / "shared-toy-run", shared / "shared-toy-run" / "trained"
    with FileLock(str(shared / "shared-toy-run.lock")):
        if not trained.exists():
            run = _train_toy_run(folder)
            trained.write_text("")
            return run
    return _load_toy_run(folder / "run")


def _train_toy_run(folder: Path):  # type: ignore[no-untyped-def]
    import dataclasses

    from tests.toy import toy_config, write_toy_schema
    from tfmtl.config import SequenceConfig
    from tfmtl.training import train

    (folder / "data").mkdir(parents=True, exist_ok=True)
    schema = write_toy_schema(folder / "data")
    # No dropout, as in the rest of the toy model: resume tests compare a resumed run with an uninterrupted one, and
    # dropout's random state is not checkpointed.
    config = toy_config(history_pooling="causal", history_text=True, sequence=SequenceConfig(dropout=0.0))
    config = dataclasses.replace(config, train=dataclasses.replace(config.train, dataset=str(schema), epochs=2))
    return train(config, output=folder / "run", progress=False)


def _load_toy_run(path: Path):  # type: ignore[no-untyped-def]
    """The trained toy run as :func:`tfmtl.training.train` returned it, from its run folder (best weights)."""
    import json

    from tfmtl.data import load_dataset
    from tfmtl.run import RunFolder, load_run
    from tfmtl.training import TrainedRun

    config, model, split = load_run(path)
    run = RunFolder(path)
    metrics = {k: v for k, v in json.loads(run.metrics.read_text()).items() if k != "epoch"}
    return TrainedRun(path, config, model, load_dataset(config.train.dataset), split, run.read_history(), metrics)


@pytest.fixture(scope="session")
def exported(toy_run, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """Version 1 of model "toy" under a fresh base folder."""
    from tfmtl.exporting import export

    return export(toy_run, name="toy", base=tmp_path_factory.mktemp("saved_models"))


@pytest.fixture(scope="session")
def loaded(exported):  # type: ignore[no-untyped-def]
    """The toy export loaded in this process with tf.saved_model.load."""
    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (its ops must be registered before loading)

    return tf.saved_model.load(str(exported.path))
