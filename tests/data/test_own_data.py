"""Your own data through a schema file: good tables, and each kind of bad input named by file, column, row."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tfmtl.data import DataError, Schema, load_dataset, load_from_schema

ITEMS_CSV = "sku,title,genres,price\nA,Red shoe,shoes|red,10.5\nB,Blue hat,hats,\nC,Green scarf,,3\n"
USERS_CSV = "uid,gender,age\nu1,F,31\nu2,M,40\n"
RATINGS_CSV = "uid,sku,stars,ts\nu1,A,5,2021-03-01\nu2,B,3,2021-03-02\nu1,C,4,2021-03-05\n"


def write_shop(folder: Path, *, ratings: str | bytes = RATINGS_CSV, items: str | bytes = ITEMS_CSV,
               users: str | bytes = USERS_CSV, policy: str = "error", timestamp_format: str = "%Y-%m-%d") -> Path:
    for name, content in (("ratings.csv", ratings), ("items.csv", items), ("users.csv", users)):
        path = folder / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    schema = {
        "name": "shop",
        "on_bad_rows": policy,
        "interactions": {"path": "ratings.csv", "user_id": "uid", "item_id": "sku", "labels": {"rating": "stars"},
                         "timestamp": "ts", "timestamp_format": timestamp_format},
        "items": {"path": "items.csv", "item_id": "sku", "text": ["title"], "multi_valued": {"genres": "|"},
                  "numeric": ["price"]},
        "users": {"path": "users.csv", "user_id": "uid", "categorical": ["gender"], "numeric": ["age"]},
    }
    (folder / "schema.json").write_text(json.dumps(schema))
    return folder / "schema.json"


def test_good_tables_normalise(tmp_path: Path) -> None:
    data = load_dataset(write_shop(tmp_path))
    frame = data.interactions
    assert list(frame.columns) == ["user_id", "item_id", "rating", "timestamp"]
    assert frame["user_id"].tolist() == ["u1", "u2", "u1"]
    assert frame["rating"].tolist() == [5.0, 3.0, 4.0]
    # 2021-03-01T00:00:00Z, worked out by hand: 18687 days after 1970-01-01.
    assert frame["timestamp"].tolist() == [18687 * 86400, 18688 * 86400, 18691 * 86400]
    assert data.items["genres"].tolist() == [("shoes", "red"), ("hats",), ()]
    assert np.isnan(data.items["price"].iloc[1])  # missing numbers stay missing in the table
    assert data.users["age"].tolist() == [31.0, 40.0]
    info = data.info()
    assert (info["ratings"], info["users"], info["items"], info["skipped_rows"]) == (3, 2, 3, 0)


def test_parquet_tables_read_like_csv(tmp_path: Path) -> None:
    write_shop(tmp_path)
    pd.read_csv(tmp_path / "ratings.csv", dtype=str).to_parquet(tmp_path / "ratings.parquet")
    schema = json.loads((tmp_path / "schema.json").read_text())
    schema["interactions"]["path"] = "ratings.parquet"
    (tmp_path / "schema.json").write_text(json.dumps(schema))
    from_parquet = load_dataset(tmp_path / "schema.json").interactions
    from_csv = load_dataset(write_shop(tmp_path)).interactions
    pd.testing.assert_frame_equal(from_parquet, from_csv)


@pytest.mark.parametrize("fmt,value,expected", [
    ("unix", "86400", 86400),
    ("unix_ms", "86400123", 86400),
    ("iso", "1970-01-02T01:00:00+01:00", 86400),
    ("%d/%m/%Y", "02/01/1970", 86400),
])
def test_timestamp_formats(tmp_path: Path, fmt: str, value: str, expected: int) -> None:
    ratings = f"uid,sku,stars,ts\nu1,A,5,{value}\n"
    data = load_dataset(write_shop(tmp_path, ratings=ratings, timestamp_format=fmt))
    assert data.interactions["timestamp"].tolist() == [expected]


BAD_INPUTS = [
    # (name, which file gets the bad content, content, expected file, column, row, words in message)
    ("empty file", "ratings", "", "ratings.csv", None, None, "empty"),
    ("header only", "ratings", "uid,sku,stars,ts\n", "ratings.csv", None, None, "no data rows"),
    ("missing column", "ratings", "uid,sku,ts\nu1,A,2021-03-01\n", "ratings.csv", "stars", None, "missing"),
    ("duplicate item id", "items", ITEMS_CSV + "B,Blue hat again,hats,1\n", "items.csv", "sku", 4, "duplicate id 'B'"),
    ("non-numeric rating", "ratings", RATINGS_CSV + "u2,A,five,2021-03-07\n", "ratings.csv", "stars", 4, "'five'"),
    ("unparseable timestamp", "ratings", RATINGS_CSV + "u2,A,4,yesterday\n", "ratings.csv", "ts", 4, "'yesterday'"),
    ("invalid utf-8", "items", ITEMS_CSV.encode() + b"D,Caf\xe9 cup,cups,2\n", "items.csv", None, 4, "UTF-8"),
    ("wrong field count", "ratings", RATINGS_CSV + "u2,A,4\n", "ratings.csv", None, 4, "3 fields"),
    ("unknown item", "ratings", RATINGS_CSV + "u2,Z,4,2021-03-07\n", "ratings.csv", "sku", 4, "'Z'"),
    ("empty user id", "ratings", RATINGS_CSV + ",A,4,2021-03-07\n", "ratings.csv", "uid", 4, "empty id"),
    ("infinite rating", "ratings", RATINGS_CSV + "u2,A,inf,2021-03-07\n", "ratings.csv", "stars", 4, "finite"),
]


@pytest.mark.parametrize("case", BAD_INPUTS, ids=[case[0] for case in BAD_INPUTS])
def test_bad_input_is_named_by_file_column_and_row(tmp_path: Path, case: tuple) -> None:
    _, target, content, file, column, row, words = case
    schema = write_shop(tmp_path, **{target: content})
    with pytest.raises(DataError) as caught:
        load_dataset(schema)
    error = caught.value
    assert Path(str(error.file)).name == file
    assert error.column == column
    assert error.row == row
    assert words in str(error)
    assert isinstance(error, ValueError)


@pytest.mark.parametrize("case", [c for c in BAD_INPUTS if c[5] is not None], ids=lambda c: c[0])
def test_skip_policy_drops_counts_and_reports_the_bad_row(tmp_path: Path, case: tuple) -> None:
    _, target, content, file, _, row, _ = case
    data = load_dataset(write_shop(tmp_path, policy="skip", **{target: content}))
    assert data.skipped.total == 1
    (key, report), = data.skipped.as_dict().items()
    assert file in key
    assert report == {"rows_skipped": 1, "example_rows": [row]}
    assert len(data.interactions) == 3  # the three good ratings survive
    assert data.info()["skipped_rows"] == 1


def test_invalid_utf8_in_parquet_is_located(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    write_shop(tmp_path)
    table = pa.table({"sku": pa.array([b"A", b"B", b"C"], pa.binary()),
                      "title": pa.array([b"ok", b"Caf\xe9", b"fine"], pa.binary()),
                      "genres": ["x", "y", "z"], "price": [1.0, 2.0, 3.0]})
    pq.write_table(table, tmp_path / "items.parquet")
    schema = json.loads((tmp_path / "schema.json").read_text())
    schema["items"]["path"] = "items.parquet"
    (tmp_path / "schema.json").write_text(json.dumps(schema))
    with pytest.raises(DataError) as caught:
        load_dataset(tmp_path / "schema.json")
    assert (caught.value.column, caught.value.row) == ("title", 2)
    assert "items.parquet" in str(caught.value)


def test_corrupt_parquet_names_the_file(tmp_path: Path) -> None:
    schema = write_shop(tmp_path)
    (tmp_path / "ratings.parquet").write_bytes(b"PAR1 this is not parquet")
    raw = json.loads(schema.read_text())
    raw["interactions"]["path"] = "ratings.parquet"
    schema.write_text(json.dumps(raw))
    with pytest.raises(DataError, match="ratings.parquet.*Parquet"):
        load_dataset(schema)


def test_without_item_and_user_tables_ids_come_from_interactions(tmp_path: Path) -> None:
    (tmp_path / "r.tsv").write_text("u\ti\tclicked\nx\t1\t1\ny\t2\t0\nx\t2\t1\n")
    data = load_from_schema(Schema.from_dict(
        {"interactions": {"path": "r.tsv", "user_id": "u", "item_id": "i", "labels": ["clicked"]}},
        base_dir=tmp_path))
    assert data.items["item_id"].tolist() == ["1", "2"]
    assert data.users["user_id"].tolist() == ["x", "y"]
    assert not data.has_timestamps
    assert data.labels == ("clicked",)


@pytest.mark.parametrize("value", ["inf", "1e30", "nan"])
def test_non_finite_or_absurd_unix_timestamps_are_refused(tmp_path: Path, value: str) -> None:
    with pytest.raises(DataError) as caught:
        load_dataset(write_shop(tmp_path, ratings=f"uid,sku,stars,ts\nu1,A,5,{value}\n", timestamp_format="unix"))
    assert (caught.value.column, caught.value.row) == ("ts", 1)


def replace_with_parquet(tmp_path: Path, table: str, frame: pd.DataFrame, policy: str = "error") -> Path:
    frame.to_parquet(tmp_path / f"{table}.parquet", index=False)
    schema = json.loads((tmp_path / "schema.json").read_text())
    schema[table]["path"] = f"{table}.parquet"
    schema["on_bad_rows"] = policy
    (tmp_path / "schema.json").write_text(json.dumps(schema))
    return tmp_path / "schema.json"


def test_native_parquet_datetimes_become_seconds_and_missing_ones_are_bad(tmp_path: Path) -> None:
    write_shop(tmp_path, timestamp_format="unix")
    frame = pd.DataFrame({"uid": ["u1", "u2"], "sku": ["A", "B"], "stars": [5.0, 3.0],
                          "ts": pd.to_datetime(["2021-03-01", None])})
    schema = replace_with_parquet(tmp_path, "interactions", frame)
    with pytest.raises(DataError) as caught:
        load_dataset(schema)
    assert (caught.value.column, caught.value.row) == ("ts", 2)
    data = load_dataset(replace_with_parquet(tmp_path, "interactions", frame, policy="skip"))
    assert data.interactions["timestamp"].tolist() == [18687 * 86400]
    assert data.skipped.total == 1


def test_integer_parquet_ids_with_a_null_keep_their_spelling(tmp_path: Path) -> None:
    write_shop(tmp_path, items="sku,title,genres,price\n1,One,a,1\n3,Three,b,2\n")
    frame = pd.DataFrame({"uid": ["u1", "u2", "u1"], "sku": pd.array([1, None, 3], dtype="Int64"),
                          "stars": [5.0, 3.0, 4.0], "ts": ["2021-03-01", "2021-03-02", "2021-03-03"]})
    data = load_dataset(replace_with_parquet(tmp_path, "interactions", frame, policy="skip"))
    assert data.interactions["item_id"].tolist() == ["1", "3"]
    assert data.skipped.as_dict() == {
        f"{tmp_path / 'interactions.parquet'}: empty id in column 'sku'": {"rows_skipped": 1, "example_rows": [2]}}


def test_quoted_fields_may_span_lines(tmp_path: Path) -> None:
    items = 'sku,title,genres,price\nA,"Red\n\nshoe, with ""quotes""",shoes,1\nB,Blue hat,hats,2\nC,Scarf,,3\n'
    data = load_dataset(write_shop(tmp_path, items=items))
    assert data.items["title"].tolist() == ['Red\n\nshoe, with "quotes"', "Blue hat", "Scarf"]


def test_an_unclosed_quote_is_an_error_not_a_swallowed_file(tmp_path: Path) -> None:
    ratings = 'uid,sku,stars,ts\nu1,A,5,2021-03-01\nu2,"B,3,2021-03-02\nu1,C,4,2021-03-05\n'
    for policy in ("error", "skip"):
        with pytest.raises(DataError, match="unclosed quote"):
            load_dataset(write_shop(tmp_path, ratings=ratings, policy=policy))


def test_rows_are_counted_as_records_when_a_quote_spans_lines(tmp_path: Path) -> None:
    ratings = ('uid,sku,stars,ts\nu1,A,5,2021-03-01\nu2,"B,3,2021-03-02\nu1,C,4,2021-03-05\nu2,A",4,2021-03-05\n'
               "u1,B,4,2021-03-05\n")
    data = load_dataset(write_shop(tmp_path, ratings=ratings, policy="skip"))
    # Record 2 spans three lines (its item id is the quoted run): one bad record; record 3 is the last line.
    assert data.skipped.as_dict() == {
        f"{tmp_path / 'ratings.csv'}: item id not found in the item table in column 'sku'":
            {"rows_skipped": 1, "example_rows": [2]}}
    assert data.interactions["item_id"].tolist() == ["A", "B"]


def test_a_quoted_field_longer_than_the_csv_modules_default_limit_loads_whole(tmp_path: Path) -> None:
    description = "a long description " * 12_000  # 228,000 characters: over csv's 128 KiB default
    items = f'sku,title,genres,price\nA,"{description}",shoes,10.5\nB,Blue hat,hats,\nC,Green scarf,,3\n'
    data = load_dataset(write_shop(tmp_path, items=items))
    assert data.items.set_index("item_id").loc["A", "title"] == description


def test_two_labels_reading_one_column_name_the_column(tmp_path: Path) -> None:
    schema = write_shop(tmp_path)
    raw = json.loads(schema.read_text())
    raw["interactions"]["labels"] = {"rating": "stars", "score": "stars"}
    schema.write_text(json.dumps(raw))
    with pytest.raises(DataError, match="labels 'rating' and 'score' both read column 'stars'") as caught:
        load_dataset(schema)
    assert caught.value.column == "stars"


@pytest.mark.parametrize("path", ["/etc/hostname", "../outside.csv", "sub/../../outside.csv"])
def test_data_paths_outside_the_schemas_folder_are_refused(tmp_path: Path, path: str) -> None:
    folder = tmp_path / "shop"
    folder.mkdir()
    (tmp_path / "outside.csv").write_text(RATINGS_CSV)
    schema = write_shop(folder)
    raw = json.loads(schema.read_text())
    raw["interactions"]["path"] = path
    schema.write_text(json.dumps(raw))
    with pytest.raises(DataError, match="'interactions.path' .* is outside the schema's folder"):
        load_dataset(schema)


def test_a_schema_may_allow_outside_paths_explicitly(tmp_path: Path) -> None:
    folder = tmp_path / "shop"
    folder.mkdir()
    schema = write_shop(folder)
    (tmp_path / "outside.csv").write_text(RATINGS_CSV)
    raw = json.loads(schema.read_text())
    raw["interactions"]["path"] = "../outside.csv"
    raw["allow_outside_paths"] = True
    schema.write_text(json.dumps(raw))
    assert len(load_dataset(schema).interactions) == 3
    raw["allow_outside_paths"] = "yes"
    schema.write_text(json.dumps(raw))
    with pytest.raises(DataError, match="'allow_outside_paths' must be true or false"):
        load_dataset(schema)
