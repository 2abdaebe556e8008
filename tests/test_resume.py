"""A run killed with SIGKILL resumes from its last checkpoint to the uninterrupted result, and the CLI's
train/resume/evaluate round trip.

The uninterrupted run is the session's toy run (conftest ``toy_run``). ``tfmtl train --config`` in a fresh process
is killed inside the last epoch, and ``tfmtl train --resume`` finishes it; a run killed in its first epoch, before
any checkpoint, resumes from epoch 0 with its saved config (``-m slow``: one more fresh process). Tolerance: 1e-4 on
every test metric. The resumed run restores weights, optimizer state, history and the epoch, and each epoch's
batch order depends only on (seed, epoch), so without dropout the runs agree to float noise. With dropout they
would differ: random masks are not checkpointed (stated in the README).
"""

from __future__ import annotations

import json
import signal
import types

import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import REPO, run_python
from tfmtl.cli import main
from tfmtl.data.interactions import USER_ID
from tfmtl.run import RunFolder
from tfmtl.training import train

KILL_IN_EPOCH = """
import os, signal, sys
sys.path.insert(0, {repo!r})
import tfmtl.training as training
from tfmtl.cli import main
from tfmtl.data.interactions import USER_ID

begin, step = training._Progress.on_epoch_begin, training._Progress.on_train_batch_end

def on_epoch_begin(self, epoch, logs=None):
    self.epoch_number = epoch + 1
    return begin(self, epoch, logs)

def on_train_batch_end(self, batch, logs=None):
    if self.epoch_number == {kill_epoch} and batch == 1:
        os.kill(os.getpid(), signal.SIGKILL)  # no cleanup, no flush: as a preempted machine
    return step(self, batch, logs)

training._Progress.on_epoch_begin, training._Progress.on_train_batch_end = on_epoch_begin, on_train_batch_end
main({argv!r})
"""


def _killed_in_epoch(argv: list[str], epoch: int) -> None:
    result = run_python(KILL_IN_EPOCH.format(repo=str(REPO), argv=[*argv, "--no-progress", "--json"], kill_epoch=epoch))
    assert result.returncode == -signal.SIGKILL, result.stderr[-2000:]


@pytest.fixture(scope="module")
def killed_and_resumed(toy_run, tmp_path_factory):  # type: ignore[no-untyped-def]
    """The toy run's config killed inside its last epoch, then resumed with ``tfmtl train --resume --json`` to the
    end."""
    folder = tmp_path_factory.mktemp("resume")
    config, killed = folder / "config.json", folder / "killed"
    toy_run.config.to_file(config)
    epochs = toy_run.config.train.epochs
    _killed_in_epoch(["train", "--config", str(config), "--epochs", str(epochs), "--output", str(killed)], epochs)
    history = json.loads((killed / "history.json").read_text())
    before = types.SimpleNamespace(epochs=[row["epoch"] for row in history], history=history,
                                   metrics_written=(killed / "metrics.json").exists())
    with pytest.raises(ValueError, match="already holds a run"):
        train(toy_run.config, output=killed, progress=False)
    resumed = _cli_json(["train", "--output", str(killed), "--resume", "--no-progress", "--json"])
    return types.SimpleNamespace(path=killed, before=before, resumed=resumed, whole=toy_run)


def _cli_json(argv: list[str]) -> dict:  # type: ignore[type-arg]
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(argv)
    assert code == 0, out.getvalue()
    return json.loads(out.getvalue())  # type: ignore[no-any-return]


def test_the_kill_came_inside_the_last_epoch(killed_and_resumed) -> None:  # type: ignore[no-untyped-def]
    epochs = killed_and_resumed.whole.config.train.epochs
    assert killed_and_resumed.before.epochs == list(range(1, epochs))  # died inside the last epoch
    assert not killed_and_resumed.before.metrics_written


def test_sigkill_mid_epoch_then_resume_matches_the_uninterrupted_run(killed_and_resumed) -> None:  # type: ignore[no-untyped-def]
    whole, resumed = killed_and_resumed.whole, killed_and_resumed.resumed
    assert resumed["epochs"] == len(whole.history) == whole.config.train.epochs
    metrics = [name for name in whole.metrics if "/" in name]
    assert metrics
    for name in metrics:
        assert abs(resumed[name] - whole.metrics[name]) <= 1e-4, (name, resumed[name], whole.metrics[name])
    losses = [row["loss/total"] for row in json.loads((killed_and_resumed.path / "history.json").read_text())]
    assert losses == pytest.approx([row["loss/total"] for row in whole.history], abs=1e-4)


def test_resume_restores_the_optimizer_state(killed_and_resumed) -> None:  # type: ignore[no-untyped-def]
    # The latest checkpoint's step count covers every epoch, not just the resumed one.
    whole = killed_and_resumed.whole
    rows = (len(whole.model.space.next_item_arrays(whole.data, whole.split.train)[0][USER_ID])
            if whole.config.model.trains_all_positions else len(whole.split.train))  # sequences, or interactions
    steps = int(np.ceil(rows / whole.config.train.batch_size))
    latest = tf.train.load_checkpoint(tf.train.latest_checkpoint(str(RunFolder(killed_and_resumed.path).checkpoints)))
    assert int(latest.get_tensor("optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE")) == \
        whole.config.train.epochs * steps


def test_cli_evaluate_reproduces_the_resumed_runs_test_metrics(killed_and_resumed) -> None:  # type: ignore[no-untyped-def]
    evaluated = _cli_json(["evaluate", "--run", str(killed_and_resumed.path), "--json"])
    assert evaluated["rating/rmse"] == pytest.approx(killed_and_resumed.resumed["rating/rmse"], abs=1e-5)
    assert evaluated["retrieval/recall_at_10"] == pytest.approx(killed_and_resumed.resumed["retrieval/recall_at_10"],
                                                                abs=1e-5)


def test_cli_evaluate_of_a_folder_without_a_run_is_one_clear_error(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["evaluate", "--run", str(tmp_path), "--json"]) == 2
    assert "not a tfmtl run folder" in json.loads(capsys.readouterr().out)["error"]


@pytest.mark.slow  # one more fresh process and training (the chain above covers a kill and a resume)
def test_a_run_killed_in_its_first_epoch_resumes_from_epoch_0_with_its_saved_config(toy_run, tmp_path) -> None:  # type: ignore[no-untyped-def]
    config, killed = tmp_path / "config.json", tmp_path / "killed"
    toy_run.config.to_file(config)
    _killed_in_epoch(["train", "--config", str(config), "--output", str(killed)], 1)
    assert list(RunFolder(killed).checkpoints.glob("*.index")) == []  # died before its first checkpoint
    assert RunFolder(killed).read_history() == []
    # `--resume` (no --config) trains from the start with the saved config and split: the uninterrupted run.
    resumed = _cli_json(["train", "--output", str(killed), "--resume", "--no-progress", "--json"])
    assert resumed["epochs"] == len(toy_run.history)
    for name in (name for name in toy_run.metrics if "/" in name):
        assert abs(resumed[name] - toy_run.metrics[name]) <= 1e-4, (name, resumed[name], toy_run.metrics[name])
