"""Versions: numbering, atomic publish, a killed export, model names, TF Serving configs, the CLI."""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from google.protobuf import text_format

from tests.conftest import REPO
from tfmtl.cli import main
from tfmtl.config import ExportConfig
from tfmtl.exporting import export
from tfmtl.exporting.publish import PARTIAL_PREFIX, check_model_name, next_version, versions
from tfmtl.exporting.tf_serving_config import models_config


def tree_digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            digest.update(str(path.relative_to(folder)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def test_versions_read_numeric_folders_as_tf_serving_does(tmp_path) -> None:
    for name in ("1", "00012", "3", "tmp", ".partial-1-x", "7a"):
        (tmp_path / name).mkdir()
    (tmp_path / "99").write_text("a file, not a version")
    assert versions(tmp_path) == [1, 3, 12]
    assert next_version(tmp_path) == 13
    assert next_version(tmp_path / "absent") == 1


@pytest.mark.parametrize("name", ["../evil", "a/b", "..", "", ".hidden", "a\\b", "x" * 200, "name with space"])
def test_model_names_that_could_leave_the_base_folder_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="model name"):
        check_model_name(name)


def test_model_names_tf_serving_accepts_pass() -> None:
    assert check_model_name("movielens-100k_v2.1") == "movielens-100k_v2.1"


def test_export_refuses_a_bad_name_before_any_work(tmp_path) -> None:
    with pytest.raises(ValueError, match="model name"):
        export(tmp_path / "no-such-run", name="../x", base=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_models_config_parses_as_tf_servings_model_server_config() -> None:
    from tensorflow_serving.config import model_server_config_pb2

    config = text_format.Parse(models_config("movies"), model_server_config_pb2.ModelServerConfig())
    (model,) = config.model_config_list.config
    assert (model.name, model.base_path, model.model_platform) == ("movies", "/models/movies", "tensorflow")
    assert model.model_version_policy.latest.num_versions == 1 and not model.version_labels


def _export_in_subprocess(run: Path, base: Path) -> subprocess.Popen:
    code = (f"import sys; sys.path.insert(0, {str(REPO)!r})\n"
            "from tfmtl.exporting import export\n"
            f"export({str(run)!r}, name='toy', base={str(base)!r})\n")
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    return subprocess.Popen([sys.executable, "-c", code], env=env, cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)


def test_an_export_killed_mid_write_leaves_no_version_and_the_next_one_succeeds(toy_run, tmp_path) -> None:  # type: ignore[no-untyped-def]
    base = tmp_path / "models"
    unverified = ExportConfig(verify=False)  # publishing is under test here; verification has its own tests
    first = export(toy_run.path, name="toy", base=base, data=toy_run.data, config=unverified)
    before = tree_digest(first.path)
    model_dir = base / "toy"

    process = _export_in_subprocess(toy_run.path, base)
    deadline = time.monotonic() + 240
    try:  # kill it once the SavedModel is being written into its partial folder
        while time.monotonic() < deadline and process.poll() is None:
            if any((p / "variables").exists() for p in model_dir.glob(f"{PARTIAL_PREFIX}*")):
                break
            time.sleep(0.05)
        assert process.poll() is None, "the export finished before it could be killed"
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert versions(model_dir) == [1]
    assert list(model_dir.glob(f"{PARTIAL_PREFIX}*"))  # what it left is hidden from a version scan
    assert tree_digest(first.path) == before

    second = export(toy_run.path, name="toy", base=base, data=toy_run.data, config=unverified)
    assert second.version == 2 and versions(model_dir) == [1, 2]
    assert not list(model_dir.glob(f"{PARTIAL_PREFIX}*"))  # the dead export's leftovers are gone
    assert tree_digest(first.path) == before
    assert "latest" in (model_dir / "models.config").read_text()  # written by the first export, kept by the second


def test_a_failing_verification_publishes_nothing(toy_run, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import tfmtl.exporting as exporting

    def fail(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError("export verification: simulated mismatch")

    monkeypatch.setattr(exporting, "verify_export", fail)
    with pytest.raises(RuntimeError, match="simulated"):
        export(toy_run, name="toy", base=tmp_path)
    assert versions(tmp_path / "toy") == [] and not list((tmp_path / "toy").glob(f"{PARTIAL_PREFIX}*"))


def test_cli_export_prints_path_and_version_as_json(toy_run, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    # --no-verify: verification has its own tests (and the installed wheel's CLI export verifies, test_packaging)
    code = main(["export", "--run", str(toy_run.path), "--name", "toy", "--base", str(tmp_path), "--max-k", "7",
                 "--no-verify", "--json"])
    result = json.loads(capsys.readouterr().out)
    assert code == 0
    assert result["version"] == 1 and Path(result["path"]) == tmp_path / "toy" / "1"
    assert result["max_k"] == 7 and "retrieve" in result["signatures"]
    assert (tmp_path / "toy" / "batching.config").exists() and (tmp_path / "toy" / "monitoring.config").exists()


def test_cli_export_error_is_one_line(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["export", "--run", str(tmp_path / "missing"), "--name", "toy", "--base", str(tmp_path)]) == 2
    assert "not a tfmtl run folder" in capsys.readouterr().err


@pytest.mark.parametrize("field,value", [("max_k", 0), ("tf_serving_version", "twenty"), ("warmup_users", 0),
                                         ("max_batch_size", 0)])
def test_bad_export_config_names_the_field(field: str, value: object) -> None:
    from tfmtl.config import ExportConfig

    with pytest.raises(ValueError, match=f"'export.{field}'"):
        ExportConfig(**{field: value})


def test_partial_exports_of_other_hosts_are_kept_until_stale(tmp_path) -> None:  # type: ignore[no-untyped-def]
    publishing = importlib.import_module("tfmtl.exporting.publish")  # the package re-exports a function of that name

    host, boot = publishing._host(), publishing._boot_id()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()  # a process id that has just ended
    names = {
        "this host, running": f"{PARTIAL_PREFIX}{host}_{boot}_{os.getpid()}_a",
        "this host, killed": f"{PARTIAL_PREFIX}{host}_{boot}_{dead}_b",
        "this host, before a reboot": f"{PARTIAL_PREFIX}{host}_000000000000_{os.getpid()}_c",
        "another host, fresh": f"{PARTIAL_PREFIX}other-host_{boot}_{dead}_d",
        "another host, a day old": f"{PARTIAL_PREFIX}other-host_{boot}_{os.getpid()}_e",
        "before hosts were recorded, killed": f"{PARTIAL_PREFIX}{dead}-f",
    }
    for name in names.values():
        (tmp_path / name).mkdir()
        (tmp_path / name / "saved_model.pb").write_bytes(b"")
    old = time.time() - publishing.FOREIGN_STALE_SECONDS - 60
    for path in (tmp_path / names["another host, a day old"], tmp_path / names["another host, a day old"] /
                 "saved_model.pb"):
        os.utime(path, (old, old))
    removed = {path.name for path in publishing.remove_stale_partials(tmp_path)}
    assert removed == {names[k] for k in ("this host, killed", "this host, before a reboot",
                                          "another host, a day old", "before hosts were recorded, killed")}
    assert {p.name for p in tmp_path.iterdir()} == {names["this host, running"], names["another host, fresh"]}
