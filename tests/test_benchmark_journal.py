"""A long benchmark stopped part-way resumes: finished units come from the journal, the rest run
(benchmarks/journal.py)."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from journal import Journal, fingerprint  # noqa: E402


def counting(values: dict[str, object]):  # type: ignore[no-untyped-def]
    calls: list[str] = []

    def compute(unit: str):  # type: ignore[no-untyped-def]
        def run() -> object:
            calls.append(unit)
            return values[unit]
        return run
    return calls, compute


def test_finished_units_are_read_back_and_not_run_again(tmp_path: Path) -> None:
    path = tmp_path / "run.journal.jsonl"
    calls, compute = counting({"a": {"recall": 0.25}, "b": [1, 2]})
    first = Journal(path)
    assert first.run("a", "f1", compute("a")) == {"recall": 0.25}
    assert first.run("b", "f1", compute("b")) == [1, 2]
    again = Journal(path)
    assert again.run("a", "f1", compute("a")) == {"recall": 0.25} and again.run("b", "f1", compute("b")) == [1, 2]
    assert calls == ["a", "b"]
    record = json.loads(path.read_text().splitlines()[0])
    assert record["unit"] == "a" and record["fingerprint"] == "f1" and "finished" in record


def test_numpy_values_are_kept_as_what_a_resumed_run_reads_back(tmp_path: Path) -> None:
    import numpy as np

    path = tmp_path / "run.journal.jsonl"
    fresh = Journal(path).run("a", "f", lambda: {"recall": np.float32(0.5), "ranks": np.arange(3), "epochs": 4})
    assert fresh == {"recall": 0.5, "ranks": [0, 1, 2], "epochs": 4}
    assert Journal(path).run("a", "f", lambda: None) == fresh
    with pytest.raises(TypeError, match="set"):
        Journal(path).run("b", "f", lambda: {1, 2})
    assert len(path.read_text().splitlines()) == 1


def test_a_changed_fingerprint_runs_again(tmp_path: Path) -> None:
    path = tmp_path / "run.journal.jsonl"
    calls, compute = counting({"a": 1})
    Journal(path).run("a", "config-1", compute("a"))
    Journal(path).run("a", "config-2", compute("a"))
    assert calls == ["a", "a"]


def test_a_line_cut_short_by_a_kill_reruns_only_that_unit(tmp_path: Path) -> None:
    path = tmp_path / "run.journal.jsonl"
    calls, compute = counting({"a": 1, "b": 2})
    Journal(path).run("a", "f", compute("a"))
    path.write_text(path.read_text() + '{"unit": "b", "fingerprint": "f", "val')
    resumed = Journal(path)
    assert resumed.run("a", "f", compute("a")) == 1 and resumed.run("b", "f", compute("b")) == 2
    assert calls == ["a", "b"]


def test_closing_removes_the_journal_and_none_keeps_nothing(tmp_path: Path) -> None:
    path = tmp_path / "run.journal.jsonl"
    journal = Journal(path)
    journal.run("a", "f", lambda: 1)
    journal.close()
    assert not path.exists()
    calls, compute = counting({"a": 1})
    Journal(None).run("a", "f", compute("a"))
    Journal(None).run("a", "f", compute("a"))
    assert calls == ["a", "a"]


def test_the_fingerprint_follows_the_content_of_configs_and_tables() -> None:
    table = pd.DataFrame({"user_id": ["u1", "u2"], "item_id": ["i1", "i2"]})
    assert fingerprint({"dim": 32}, table) == fingerprint({"dim": 32}, table.copy())
    assert fingerprint({"dim": 32}, table) != fingerprint({"dim": 64}, table)
    assert fingerprint({"dim": 32}, table) != fingerprint({"dim": 32}, table.assign(item_id=["i1", "i3"]))


def test_cold_start_selection_stopped_part_way_resumes_where_it_stopped(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The benchmark's own loop (two variants, candidate settings, seeds) with training stubbed out: a run that
    dies at its fourth training leaves three in the journal, and the rerun trains only the rest."""
    import quality

    from tests.toy import toy_config, toy_data

    trained: list[tuple[str, int]] = []
    stop_after = {"count": 3}

    def fake_train(config, *, output, **kwargs):  # type: ignore[no-untyped-def]
        if len(trained) == stop_after["count"]:
            raise KeyboardInterrupt("stopped")
        trained.append((f"{Path(output).parent.name}/{Path(output).name}", config.train.seed))
        return SimpleNamespace(history=[{"validation/" + config.train.monitor: config.model.item_tower.id_dropout}])

    def fake_run(config, data, split, test, seed, workdir, label, *, candidates=None, subsets=None):  # type: ignore[no-untyped-def]
        if len(trained) == stop_after["count"]:
            raise KeyboardInterrupt("stopped")
        trained.append((label, seed))
        return {**{k: seed / 10 for k in quality.COLD_REPORTED}, "seconds": 1.0,
                **{f"new_items/{k}": seed / 100 for k in quality.COLD_REPORTED}}

    monkeypatch.setattr(quality, "train", fake_train)
    monkeypatch.setattr(quality, "tfmtl_run", fake_run)
    config = toy_config()
    settings = {f"dropout {p}": dataclasses.replace(config, model=dataclasses.replace(
        config.model, item_tower=dataclasses.replace(config.model.item_tower, id_dropout=p))) for p in (0.1, 0.5)}
    variants = {"with": settings, "without": {"dropout 0.1": settings["dropout 0.1"]}}
    path = tmp_path / "cold.journal.jsonl"
    with pytest.raises(KeyboardInterrupt):
        quality.cold_start_selected(toy_data(), variants, [1, 2], tmp_path, journal=Journal(path))
    assert len(path.read_text().splitlines()) == 3
    stop_after["count"] = -1
    result = quality.cold_start_selected(toy_data(), variants, [1, 2], tmp_path, journal=Journal(path))
    # 2 + 1 selection runs and 2 seeds per variant, each trained once over the two calls
    assert len(trained) == 7 and len(set(trained)) == 7
    assert result["with"]["chosen"] == "dropout 0.5"  # the higher validation score
    assert result["with"]["retrieval/recall_at_100"]["values"] == [0.1, 0.2]


def test_a_run_of_one_catalog_keeps_the_other_catalogs_of_the_same_protocol(tmp_path: Path) -> None:
    from cold_start_encoders import earlier_catalogs

    protocol = {"seeds": [42, 1], "search": {"text_width": [32]}, "pretrain_epochs": 1, "epochs_cap": None}
    path = tmp_path / "cold_start_encoders.json"
    path.write_text(json.dumps({**protocol, "catalogs": {"movies": {"recall": 0.3}, "books": {"recall": 0.1}}}))
    assert earlier_catalogs(path, protocol, ["books"]) == {"movies": {"recall": 0.3}}
    assert earlier_catalogs(path, {**protocol, "seeds": [42]}, ["books"]) == {}  # other seeds: not comparable
    assert earlier_catalogs(tmp_path / "absent.json", protocol, ["books"]) == {}
