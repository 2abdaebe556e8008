"""Fuzzed inputs to the loaders: corrupted CSV and Parquet tables, random schema files.

Loading must either succeed or raise ``DataError`` / ``ValueError`` with a message; never another exception,
never a hang. Examples are bounded in number; every file is tiny.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.data.test_own_data import ITEMS_CSV, RATINGS_CSV, USERS_CSV, write_shop
from tfmtl.data import DataError, load_dataset

FUZZ = settings(max_examples=int(os.environ.get("TFMTL_FUZZ_EXAMPLES", "60")),  # more for a deeper run
                deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def load_or_refuse(schema: Path) -> None:
    try:
        data = load_dataset(schema)
    except (DataError, ValueError) as error:
        assert str(error).strip(), "an error must say what is wrong"
        return
    # Loaded: every kept interaction points at a known item and user (what was dropped is counted in data.skipped).
    assert set(data.interactions["item_id"]) <= set(data.items["item_id"])
    assert set(data.interactions["user_id"]) <= set(data.users["user_id"])


def corrupt(raw: bytes, edits: list[tuple[int, int]], cut: int | None) -> bytes:
    data = bytearray(raw)
    for position, value in edits:
        if data:
            data[position % len(data)] = value
    return bytes(data[:cut] if cut is not None else data)


edits = st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=8)
cuts = st.one_of(st.none(), st.integers(0, 200))


@FUZZ
@given(table=st.sampled_from(["ratings", "items", "users"]), edits=edits, cut=cuts,
       policy=st.sampled_from(["error", "skip"]))
def test_corrupted_csv_is_loaded_or_refused_clearly(tmp_path_factory, table, edits, cut, policy) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path_factory.mktemp("csv")
    tables = {"ratings": RATINGS_CSV, "items": ITEMS_CSV, "users": USERS_CSV}
    tables[table] = corrupt(tables[table].encode(), edits, cut)  # type: ignore[assignment]
    load_or_refuse(write_shop(folder, policy=policy, **tables))


@pytest.fixture(scope="module")
def parquet_shop(tmp_path_factory) -> Path:  # type: ignore[no-untyped-def]
    folder = tmp_path_factory.mktemp("parquet-shop")
    schema_path = write_shop(folder)
    schema = json.loads(schema_path.read_text())
    for name in ("ratings", "items", "users"):
        frame = pd.read_csv(folder / f"{name}.csv", dtype=str)
        frame.to_parquet(folder / f"{name}.parquet", index=False)
        schema["interactions" if name == "ratings" else name]["path"] = f"{name}.parquet"
    schema_path.write_text(json.dumps(schema))
    return folder


@FUZZ
@given(table=st.sampled_from(["ratings", "items", "users"]), edits=edits, cut=cuts)
def test_corrupted_parquet_is_loaded_or_refused_clearly(parquet_shop, tmp_path_factory, table, edits, cut) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path_factory.mktemp("pq")
    for file in parquet_shop.iterdir():
        shutil.copy(file, folder / file.name)
    path = folder / f"{table}.parquet"
    path.write_bytes(corrupt(path.read_bytes(), edits, cut))
    load_or_refuse(folder / "schema.json")


schema_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.text(max_size=12),
              st.sampled_from(["ratings.csv", "items.csv", "uid", "sku", "stars", "ts", "unix", "skip", "error"])),
    lambda children: st.one_of(st.lists(children, max_size=3),
                               st.dictionaries(st.sampled_from(["path", "user_id", "item_id", "labels", "timestamp",
                                                                "timestamp_format", "text", "categorical",
                                                                "numeric", "multi_valued", "x"]),
                                               children, max_size=4)),
    max_leaves=12)


@FUZZ
@given(changes=st.dictionaries(st.sampled_from(["name", "on_bad_rows", "interactions", "items", "users", "extra"]),
                               schema_values, max_size=3), as_yaml=st.booleans())
def test_random_schema_files_are_loaded_or_refused_clearly(tmp_path_factory, changes, as_yaml) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path_factory.mktemp("schema")
    base = json.loads(write_shop(folder).read_text())
    base.update(changes)
    path = folder / ("schema.yaml" if as_yaml else "schema.json")
    path.write_text(yaml.safe_dump(base) if as_yaml else json.dumps(base))
    load_or_refuse(path)


def test_a_yaml_schema_cannot_construct_python_objects(tmp_path: Path) -> None:
    base = json.loads(write_shop(tmp_path).read_text())
    text = yaml.safe_dump(base) + "evil: !!python/object/apply:os.system ['touch pwned']\n"
    (tmp_path / "schema.yaml").write_text(text)
    with pytest.raises((DataError, ValueError)):
        load_dataset(tmp_path / "schema.yaml")
    assert not (tmp_path / "pwned").exists() and not Path("pwned").exists()


def test_invalid_utf8_inside_a_parquet_string_column_names_column_and_row(parquet_shop, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import pyarrow as pa
    import pyarrow.parquet as pq

    for file in parquet_shop.iterdir():
        shutil.copy(file, tmp_path / file.name)
    items = pq.read_table(tmp_path / "items.parquet")
    titles = pa.array([b"Red shoe", b"Blue \xff hat", b"Green scarf"], pa.binary()).view(pa.string())  # unchecked
    pq.write_table(items.set_column(items.column_names.index("title"), "title", titles), tmp_path / "items.parquet")
    with pytest.raises(DataError, match="invalid UTF-8") as caught:
        load_dataset(tmp_path / "schema.json")
    assert "title" in str(caught.value) and "row 2" in str(caught.value)
