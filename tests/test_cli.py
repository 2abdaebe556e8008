from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.data.test_own_data import write_shop
from tfmtl.cli import main


def tfmtl(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    import os

    return subprocess.run([sys.executable, "-m", "tfmtl.cli", *args], capture_output=True, text=True,
                          timeout=600, env={**os.environ, **(env or {})})


def test_data_info_json_on_own_data(tmp_path: Path) -> None:
    result = tfmtl("data", "info", str(write_shop(tmp_path)), "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert (info["ratings"], info["users"], info["items"]) == (3, 2, 3)


def test_data_info_human_output(tmp_path: Path) -> None:
    result = tfmtl("data", "info", str(write_shop(tmp_path)))
    assert result.returncode == 0, result.stderr
    assert "ratings" in result.stdout and "3" in result.stdout


def test_bad_data_exits_2_with_one_line_and_no_traceback(tmp_path: Path) -> None:
    result = tfmtl("data", "info", str(write_shop(tmp_path, ratings="uid,sku,stars,ts\nu1,A,x,2021-01-01\n")),
                   "--json")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "column 'stars', row 1" in result.stderr
    assert json.loads(result.stdout)["type"] == "DataError"


def test_every_command_has_help() -> None:
    for command in (["--help"], ["data", "--help"], ["data", "info", "--help"], ["data", "split", "--help"],
                    ["pretrain", "--help"]):
        assert tfmtl(*command).returncode == 0


@pytest.mark.network
def test_data_info_ml_100k_json(movielens_dir: Path) -> None:
    result = tfmtl("data", "info", "ml-100k", "--json", env={"TFMTL_DATA_DIR": str(movielens_dir)})
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert (info["ratings"], info["users"], info["items"]) == (100_000, 943, 1_682)


@pytest.mark.network
def test_data_split_tfrs_json(movielens_dir: Path) -> None:
    result = tfmtl("data", "split", "ml-100k", "--json", env={"TFMTL_DATA_DIR": str(movielens_dir)})
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["train"] == 80_000


@pytest.mark.parametrize("tf_config, message", [
    (None, "TF_CONFIG environment variable, which is not set"),
    ("{not json", "TF_CONFIG is not valid JSON"),
    ('{"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "worker", "index": 3}}', "'task.index' = 3"),
])
def test_multi_worker_without_a_usable_tf_config_is_one_clear_line(tmp_path: Path, tf_config: str | None,
                                                                   message: str, monkeypatch: pytest.MonkeyPatch,
                                                                   capsys: pytest.CaptureFixture) -> None:
    # In this process: TF_CONFIG is checked before any strategy (or collective) is created.
    if tf_config is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", tf_config)
    assert main(["train", "--strategy", "multi_worker", "--output", str(tmp_path / "run"), "--no-progress"]) == 2
    error = capsys.readouterr().err
    assert "Traceback" not in error and message in error and error.count("\n") == 1
    assert not (tmp_path / "run").exists()


def test_multi_worker_needs_an_explicit_run_folder(capsys: pytest.CaptureFixture) -> None:
    assert main(["train", "--strategy", "multi_worker", "--no-progress"]) == 2
    assert "--output RUN_DIR" in capsys.readouterr().err


@pytest.mark.parametrize("error, words", [
    (OSError(28, "No space left on device", "/mnt/full/run/checkpoints"),
     "No space left on device: /mnt/full/run/checkpoints"),
    (PermissionError(13, "Permission denied", "/srv/models/toy"), "Permission denied: /srv/models/toy"),
    (subprocess.TimeoutExpired(["python", "-c", "verify"], 600), "timed out after 600 s: python -c verify"),
])
def test_disk_permission_and_time_out_errors_are_one_line_naming_the_path(
        error: Exception, words: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    import tfmtl.cli

    def fail(args):  # type: ignore[no-untyped-def]
        raise error

    monkeypatch.setattr(tfmtl.cli, "_data_info", fail)
    assert main(["data", "info", "ml-100k", "--json"]) == 2
    captured = capsys.readouterr()
    assert captured.err == f"tfmtl: error: {words}\n"
    assert json.loads(captured.out) == {"error": words, "type": type(error).__name__}
