"""The benchmark figures agree everywhere: each results markdown is what its JSON generates, and every table README.md
copies is the markdown's table (see benchmarks/figures.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import figures  # noqa: E402


def test_every_results_markdown_is_what_its_json_generates() -> None:
    pages = figures.generated()
    assert {p.name for p in pages} >= {"quality.md", "speed.md", "content_task.md", "cold_start_books.md"}
    stale = [page.name for page, text in pages.items() if page.read_text() != text]
    assert not stale, f"regenerate with benchmarks/figures.py: {stale}"


def test_every_readme_table_is_a_copy_of_its_results_table() -> None:
    blocks = figures.readme_blocks(figures.README.read_text())
    assert len(blocks) >= 3
    for name, number, body in blocks:
        assert body == figures.table(name, number), f"README.md's copy of {name} table {number}"


def test_a_changed_figure_in_the_readme_is_caught_and_the_copy_restores_it() -> None:
    readme = figures.README.read_text()
    name, number, body = figures.readme_blocks(readme)[0]
    first_row = body.splitlines()[2]
    edited = readme.replace(first_row, first_row.replace("|", "| 9.9999 |", 2), 1)
    (_, _, changed), *_ = figures.readme_blocks(edited)
    assert changed != figures.table(name, number)
    assert figures.copied(edited) == readme


def test_a_block_naming_a_missing_table_is_refused() -> None:
    with pytest.raises(ValueError, match="table 99 of quality.md"):
        figures.table("quality.md", 99)


def test_every_json_the_readme_copies_from_records_its_protocol() -> None:
    names = {name for name, _, _ in figures.readme_blocks(figures.README.read_text())}
    assert {"speed.md", "quality.md", "cold_start_books_selected.md", "sequential.md"} <= names
    for name in names:
        record = json.loads((figures.RESULTS / name).with_suffix(".json").read_text())
        assert figures.missing_protocol(record) == [], name
        rows = record.get("rows")  # where a JSON names its rows, each says what it is given
        assert set(record["protocol"]["given"]) >= (set(rows) if isinstance(rows, dict) else set()), name


def test_a_protocol_without_its_parts_is_refused_and_named() -> None:
    block = figures.protocol("80/20 split", {"peer": "ids only"}, seeds=[0, 1])
    assert block == {"split": "80/20 split", "seeds": [0, 1], "given": {"peer": "ids only"}}
    assert figures.missing_protocol({"protocol": block}) == []
    with pytest.raises(ValueError, match="seeds or, for timings, its repeats"):
        figures.protocol("80/20 split", {"peer": "ids only"})
    with pytest.raises(ValueError, match="what each row is given"):
        figures.protocol("80/20 split", {}, repeats=3)
    assert figures.missing_protocol({"seeds": [0]}) == ["protocol"]
    assert figures.missing_protocol({"protocol": {"split": "x", "repeats": 3}}) == ["given"]
    assert figures.missing_protocol({"protocol": {"split": "x", "given": {"a": "b"}}}) == ["seeds or repeats"]
