"""The benchmark figures agree everywhere: each results markdown is what its JSON generates, and every table README.md
copies is the markdown's table (see benchmarks/figures.py)."""

from __future__ import annotations

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
