"""TF Serving deployment files and rollouts, held against TF Serving's documented rules (serving_config.md).

The rules, as TF Serving applies a new ``models.config`` (without ``--allow_version_labels_for_unavailable_models``):
a version label may point only at a version that is loaded (AVAILABLE) when the config arrives, and at one the
config's ``specific`` policy serves; the ``latest`` policy serves the newest version folder; and a config is
re-read only with ``--model_config_file_poll_wait_seconds``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from tfmtl.cli import main
from tfmtl.exporting import tf_serving_config
from tfmtl.exporting.tf_serving_config import Batching, docker_command, promote, write_tf_serving_configs


def parse(text: str):  # type: ignore[no-untyped-def]
    return text_format.Parse(text, model_server_config_pb2.ModelServerConfig())


def served(config, folders: list[int]) -> set[int]:  # type: ignore[no-untyped-def]
    (entry,) = config.model_config_list.config
    policy = entry.model_version_policy
    return set(policy.specific.versions) if policy.WhichOneof("policy_choice") == "specific" else {max(folders)}


def tf_serving_refuses(previous, new, folders: list[int]) -> str | None:  # type: ignore[no-untyped-def]
    """Why TF Serving would refuse ``new`` arriving while ``previous`` is fully loaded (None: it accepts it)."""
    loaded, serving = served(previous, folders), served(new, folders)
    for label, version in new.model_config_list.config[0].version_labels.items():
        if version not in loaded:
            return f"label {label} -> {version}, which is not loaded"
        if version not in serving:
            return f"label {label} -> {version}, which the policy does not serve"
    return None


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "movies"
    (folder / "1").mkdir(parents=True)
    write_tf_serving_configs(folder, "movies", Batching())
    return folder


@pytest.fixture
def writes(monkeypatch):  # type: ignore[no-untyped-def]
    """Every models.config text written, in order, with the version folders there at that moment."""
    from tfmtl.exporting.publish import versions

    texts: list[tuple[str, list[int]]] = []
    original = tf_serving_config.write_text_atomic

    def record(path: Path, text: str) -> None:
        texts.append((text, versions(path.parent)))
        original(path, text)

    monkeypatch.setattr(tf_serving_config, "write_text_atomic", record)
    return texts


def check_sequence(first: str, texts: list[tuple[str, list[int]]]) -> None:
    previous = parse(first)
    for text, folders in texts:
        new = parse(text)
        assert tf_serving_refuses(previous, new, folders) is None, text
        previous = new


def test_the_first_config_serves_each_new_export_and_later_exports_leave_the_operators_files_alone(model_dir) -> None:  # type: ignore[no-untyped-def]
    config = parse((model_dir / "models.config").read_text())
    (entry,) = config.model_config_list.config
    assert entry.name == "movies" and entry.base_path == "/models/movies"
    assert entry.model_version_policy.WhichOneof("policy_choice") == "latest" and not entry.version_labels
    (model_dir / "models.config").write_text("# the operator's own\n" + (model_dir / "models.config").read_text())
    (model_dir / "batching.config").write_text("max_batch_size { value: 8 }\n")
    (model_dir / "2").mkdir()
    write_tf_serving_configs(model_dir, "movies", Batching(max_batch_size=64))  # what the next export does
    assert (model_dir / "models.config").read_text().startswith("# the operator's own")
    assert (model_dir / "batching.config").read_text() == "max_batch_size { value: 8 }\n"


def test_the_printed_command_makes_tf_serving_poll_the_config_and_the_versions() -> None:
    command = docker_command(Path("saved_models"), "movies")
    assert "--model_config_file=/models/movies/models.config" in command
    assert "--model_config_file_poll_wait_seconds=30" in command and "--file_system_poll_wait_seconds=1" in command


def test_a_canary_rollout_promotion_and_rollback_only_write_configs_tf_serving_accepts(model_dir, writes) -> None:  # type: ignore[no-untyped-def]
    start = (model_dir / "models.config").read_text()
    promote(model_dir, "movies", stable=1)  # pin what is served before exporting more
    (model_dir / "2").mkdir()
    steps = promote(model_dir, "movies", canary=2)  # no server to ask: it loads 2 and stops
    assert [s.to_json() for s in steps] == [{"versions": [1, 2], "labels": {"stable": 1}, "waits_for": [2]}]
    steps = promote(model_dir, "movies", canary=2)  # run again once 2 is AVAILABLE
    assert [s.labels for s in steps] == [{"stable": 1, "canary": 2}]
    promote(model_dir, "movies", stable=2)
    final = parse((model_dir / "models.config").read_text()).model_config_list.config[0]
    assert list(final.model_version_policy.specific.versions) == [2] and dict(final.version_labels) == {"stable": 2}
    steps = promote(model_dir, "movies", stable=1, is_available=lambda version: True)  # roll back, one call
    assert [s.to_json() for s in steps] == [{"versions": [1, 2], "labels": {"stable": 2}, "waits_for": [1]},
                                            {"versions": [1], "labels": {"stable": 1}, "waits_for": []}]
    check_sequence(start, writes)


def test_the_old_behaviour_labelling_an_unloaded_version_is_what_the_rules_refuse() -> None:
    previous = parse('model_config_list { config { name: "movies" base_path: "/models/movies" '
                     'model_version_policy { specific { versions: 1 } } version_labels { key: "stable" value: 1 } } }')
    eager = parse('model_config_list { config { name: "movies" base_path: "/models/movies" '
                  'model_version_policy { specific { versions: 1 versions: 2 } } '
                  'version_labels { key: "stable" value: 1 } version_labels { key: "canary" value: 2 } } }')
    assert tf_serving_refuses(previous, eager, [1, 2]) == "label canary -> 2, which is not loaded"


def test_promote_refuses_what_it_cannot_do_by_name(model_dir) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="has no version 7 \\(have: 1\\)"):
        promote(model_dir, "movies", canary=7)
    with pytest.raises(ValueError, match="no stable version to keep beside canary 1"):
        promote(model_dir, "movies", canary=1)
    with pytest.raises(ValueError, match="has no model named 'films'"):
        promote(model_dir, "films", stable=1)


def test_cli_promote_reports_the_steps(model_dir, capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["promote", "--base", str(model_dir.parent), "--name", "movies", "--stable", "1", "--json"]) == 0
    (model_dir / "2").mkdir()
    assert main(["promote", "--base", str(model_dir.parent), "--name", "movies", "--canary", "2", "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["done"] is False and out["steps"][-1]["waits_for"] == [2]


def test_pinning_stable_after_a_newer_export_was_served_first_loads_the_pinned_version(model_dir, writes) -> None:  # type: ignore[no-untyped-def]
    start = (model_dir / "models.config").read_text()
    (model_dir / "2").mkdir()  # the latest policy now serves 2; pinning 1 must load 1 before labelling it
    steps = promote(model_dir, "movies", stable=1, is_available=lambda version: True)
    assert [s.to_json() for s in steps] == [{"versions": [1, 2], "labels": {}, "waits_for": [1]},
                                            {"versions": [1], "labels": {"stable": 1}, "waits_for": []}]
    check_sequence(start, writes)
