from __future__ import annotations

from pathlib import Path

import pytest

from tfmtl.data import DataError, Schema

MINIMAL = {"interactions": {"path": "r.csv", "user_id": "u", "item_id": "i"}}


def test_yaml_schema_round_trip(tmp_path: Path) -> None:
    (tmp_path / "s.yaml").write_text(
        "name: shop\ninteractions:\n  path: r.csv\n  user_id: u\n  item_id: i\n  labels: {rating: stars}\n"
        "items:\n  path: items.csv\n  item_id: i\n  text: title\n  multi_valued: [tags]\n")
    schema = Schema.from_file(tmp_path / "s.yaml")
    assert schema.interactions.path == tmp_path / "r.csv"
    assert schema.interactions.labels == {"rating": "stars"}
    assert schema.items is not None
    assert schema.items.features.text == ("title",)
    assert schema.items.multi_valued_separators == {"tags": "|"}


@pytest.mark.parametrize("raw,words", [
    ({}, "missing required key 'interactions'"),
    ({"interactions": {"path": "r.csv", "user_id": "u"}}, "missing required key 'item_id'"),
    ({**MINIMAL, "itmes": {}}, "unknown key 'itmes'"),
    ({"interactions": {**MINIMAL["interactions"], "user_id": 3}}, "'interactions.user_id'"),
    ({**MINIMAL, "on_bad_rows": "ignore"}, "'on_bad_rows' must be one of error, skip"),
    ({"interactions": {**MINIMAL["interactions"], "timestamp_format": "epoch"}}, "timestamp_format 'epoch'"),
    ({"interactions": {**MINIMAL["interactions"], "labels": {"user_id": "x"}}}, "reserved"),
    ({**MINIMAL, "items": {"path": "i.csv", "item_id": "i", "text": ["t"], "categorical": ["t"]}},
     "column 't' is listed as 'categorical'"),
    ([1, 2], "must be a mapping"),
    ({**MINIMAL, "items": {"path": "i.csv", "item_id": "i", "vector": {"clip": 0}}},
     "'items.vector.clip' must be a vector's dimension"),
])
def test_bad_schema_names_the_field(raw: object, words: str) -> None:
    with pytest.raises(DataError, match=words.replace("(", r"\(").replace(")", r"\)")):
        Schema.from_dict(raw, source="s.yaml")


def test_yaml_is_loaded_safely(tmp_path: Path) -> None:
    (tmp_path / "evil.yaml").write_text("interactions: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(DataError, match="cannot be parsed"):
        Schema.from_file(tmp_path / "evil.yaml")


def test_missing_schema_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="nope.yaml: schema file not found"):
        Schema.from_file(tmp_path / "nope.yaml")
