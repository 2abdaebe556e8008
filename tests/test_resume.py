"""A training process killed with SIGKILL mid-epoch resumes from its last checkpoint to the uninterrupted result.

Tolerance: 1e-4 on every test metric. The resumed run restores weights, optimizer state, history and the epoch,
and each epoch's batch order depends only on (seed, epoch), so without dropout the runs agree to float noise.
With dropout they would differ: random masks are not checkpointed (stated in the README).
"""

from __future__ import annotations

import dataclasses
import json
import signal

import pytest

from tests.conftest import REPO, run_python
from tests.toy import toy_config, write_toy_schema
from tfmtl.cli import main

EPOCHS = 4


@pytest.fixture
def config_file(tmp_path):  # type: ignore[no-untyped-def]
    schema = write_toy_schema(tmp_path)
    config = toy_config()
    config = dataclasses.replace(config, train=dataclasses.replace(config.train, dataset=str(schema), epochs=EPOCHS,
                                                                   patience=0))
    path = tmp_path / "config.json"
    config.to_file(path)
    return path


KILL_IN_EPOCH_3 = f"""
import os, signal, sys
sys.path.insert(0, {str(REPO)!r})
import tfmtl.training as training
from tfmtl.config import Config

begin, step = training._Progress.on_epoch_begin, training._Progress.on_train_batch_end

def on_epoch_begin(self, epoch, logs=None):
    self.epoch_number = epoch + 1
    return begin(self, epoch, logs)

def on_train_batch_end(self, batch, logs=None):
    if self.epoch_number == 3 and batch == 1:
        os.kill(os.getpid(), signal.SIGKILL)  # no cleanup, no flush: as a preempted machine
    return step(self, batch, logs)

training._Progress.on_epoch_begin, training._Progress.on_train_batch_end = on_epoch_begin, on_train_batch_end
training.train(Config.from_file({{config!r}}), output={{output!r}}, progress=False)
"""


def test_sigkill_mid_epoch_then_resume_matches_the_uninterrupted_run(config_file, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["train", "--config", str(config_file), "--output", str(tmp_path / "whole"), "--no-progress",
                 "--json"]) == 0
    whole = json.loads(capsys.readouterr().out)

    killed = tmp_path / "killed"
    result = run_python(KILL_IN_EPOCH_3.format(config=str(config_file), output=str(killed)))
    assert result.returncode == -signal.SIGKILL, result.stderr[-2000:]
    history = json.loads((killed / "history.json").read_text())
    assert [row["epoch"] for row in history] == [1, 2]  # died inside epoch 3
    assert not (killed / "metrics.json").exists()

    assert main(["train", "--output", str(killed), "--resume", "--no-progress", "--json"]) == 0
    resumed = json.loads(capsys.readouterr().out)
    assert resumed["epochs"] == whole["epochs"] == EPOCHS
    metrics = [name for name in whole if "/" in name]
    assert metrics
    for name in metrics:
        assert abs(resumed[name] - whole[name]) <= 1e-4, (name, resumed[name], whole[name])
    losses = [row["loss/total"] for row in json.loads((killed / "history.json").read_text())]
    expected = [row["loss/total"] for row in json.loads((tmp_path / "whole" / "history.json").read_text())]
    assert losses == pytest.approx(expected, abs=1e-4)
