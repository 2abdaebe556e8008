"""The run folder's files: written whole or not at all, the best weights named by a pointer, and the data check."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from tests.toy import toy_data
from tfmtl.data.splits import Split
from tfmtl.files import write_atomic
from tfmtl.run import RunFolder, check_data, data_fingerprint


def split_of(n: int) -> Split:
    return Split("tfrs", train=np.arange(n), validation=np.arange(n, n + 2), test=np.arange(n + 2, n + 4))


def test_a_write_that_fails_midway_leaves_the_old_file_and_no_leftovers(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    run = RunFolder(tmp_path)
    run.save_split(split_of(10))
    before = run.split.read_bytes()
    calls = []
    original = np.lib.format.write_array

    def disk_full(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(1)
        if len(calls) == 2:  # the first array is already written: a torn file if written in place
            raise OSError(28, "No space left on device")
        return original(*args, **kwargs)

    monkeypatch.setattr(np.lib.format, "write_array", disk_full)
    with pytest.raises(OSError, match="No space left"):
        run.save_split(split_of(20))
    assert run.split.read_bytes() == before and len(run.load_split().train) == 10
    assert sorted(p.name for p in tmp_path.iterdir()) == ["split.npz"]

    def half_then_fail(file) -> None:  # type: ignore[no-untyped-def]
        file.write(b'{"half')
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        write_atomic(tmp_path / "config.json", half_then_fail)
    assert not (tmp_path / "config.json").exists() and sorted(p.name for p in tmp_path.iterdir()) == ["split.npz"]


def test_the_best_weights_are_named_by_a_pointer_to_an_epoch_the_history_holds(toy_run) -> None:  # type: ignore[no-untyped-def]
    folder = RunFolder(toy_run.path)
    pointer = json.loads((folder.path / "best" / "best.json").read_text())
    epochs = [row["epoch"] for row in json.loads(folder.history.read_text())]
    assert pointer["epoch"] in epochs and folder.best_weights() == folder.path / "best" / pointer["prefix"]
    names = sorted(p.name for p in (folder.path / "best").iterdir())
    assert names == sorted(["best.json", f"{pointer['prefix']}.index", *(n for n in names if ".data-" in n)])


def test_the_data_check_covers_timestamps_and_the_item_and_user_tables(tmp_path) -> None:  # type: ignore[no-untyped-def]
    data = toy_data()
    run = RunFolder(tmp_path)
    run.write_json(run.data, data_fingerprint(data))
    check_data(run, toy_data())  # the same data, rebuilt: accepted

    later = data.interactions.assign(timestamp=data.interactions["timestamp"] + 1)
    retitled = data.items.assign(title=data.items["title"].str.upper())
    older = data.users.assign(age=data.users["age"] + 1)
    for changed, part in ((dataclasses.replace(data, interactions=later), "the timestamps"),
                          (dataclasses.replace(data, items=retitled), "the item table"),
                          (dataclasses.replace(data, users=older), "the user table")):
        with pytest.raises(ValueError, match=f"{part} differ"):
            check_data(run, changed)
    shuffled = dataclasses.replace(data, items=data.items.iloc[::-1].reset_index(drop=True))
    check_data(run, shuffled)  # row order is not content

    # A run written before these checksums existed is checked on what it holds.
    old = {k: v for k, v in data_fingerprint(data).items() if k in ("name", "interactions", "sha256")}
    run.write_json(run.data, old)
    check_data(run, dataclasses.replace(data, items=retitled))
