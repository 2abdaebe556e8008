"""One toy run (tiny BERT reading titles), trained once, and one export of it, shared by the export tests."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from tests.toy import toy_config, write_toy_schema
from tfmtl.exporting import ExportResult, export
from tfmtl.training import TrainedRun, train


@pytest.fixture(scope="session")
def toy_run(tmp_path_factory: pytest.TempPathFactory) -> TrainedRun:
    schema = write_toy_schema(tmp_path_factory.mktemp("toy-data"))
    config = toy_config()
    config = dataclasses.replace(config, train=dataclasses.replace(config.train, dataset=str(schema), epochs=2))
    return train(config, output=tmp_path_factory.mktemp("toy-run") / "run", progress=False)


@pytest.fixture(scope="session")
def exported(toy_run: TrainedRun, tmp_path_factory: pytest.TempPathFactory) -> ExportResult:
    return export(toy_run, name="toy", base=tmp_path_factory.mktemp("saved_models"))


@pytest.fixture(scope="session")
def loaded(exported: ExportResult):  # type: ignore[no-untyped-def]
    import tensorflow as tf
    import tensorflow_text  # noqa: F401  (its ops must be registered before loading)

    return tf.saved_model.load(str(exported.path))


def export_base(result: ExportResult) -> Path:
    return result.path.parent.parent
