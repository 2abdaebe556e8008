"""Errors and skip accounting for data at the boundary."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


class DataError(ValueError):
    """Bad input data, located by file, column and row (1-based data row, header excluded)."""

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        column: str | None = None,
        row: int | None = None,
        value: object | None = None,
    ) -> None:
        self.file, self.column, self.row, self.value = file, column, row, value
        where = []
        if file is not None:
            where.append(str(file))
        if column is not None:
            where.append(f"column '{column}'")
        if row is not None:
            where.append(f"row {row}")
        prefix = ", ".join(where)
        super().__init__(f"{prefix}: {message}" if prefix else message)


@dataclass
class SkipReport:
    """Rows dropped under the ``skip`` policy, counted per (file, reason), with a few examples; and, apart from
    them, rows kept with a value the model reads as missing (``missing``: e.g. an item without its precomputed
    vector, read as zeros), which neither policy drops but which must not pass unnoticed."""

    counts: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[int]] = field(default_factory=dict)
    missing: Counter[str] = field(default_factory=Counter)
    missing_examples: dict[str, list[int]] = field(default_factory=dict)

    def add(self, file: str, reason: str, rows: list[int]) -> None:
        _count(self.counts, self.examples, f"{file}: {reason}", rows)

    def add_missing(self, file: str, what: str, rows: list[int]) -> None:
        """Counts rows kept without a value (``what`` says which and what the model reads instead)."""
        _count(self.missing, self.missing_examples, f"{file}: {what}", rows)

    def missing_as_dict(self) -> dict[str, dict[str, object]]:
        return {
            key: {"rows": count, "example_rows": self.missing_examples.get(key, [])}
            for key, count in sorted(self.missing.items())
        }

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def as_dict(self) -> dict[str, dict[str, object]]:
        return {
            key: {"rows_skipped": count, "example_rows": self.examples.get(key, [])}
            for key, count in sorted(self.counts.items())
        }

    def lines(self) -> list[str]:
        return [
            f"skipped {count} row(s) — {key} (e.g. rows {', '.join(map(str, self.examples.get(key, [])))})"
            for key, count in sorted(self.counts.items())
        ] + [
            f"kept {count} row(s) with a missing value — {key} (e.g. rows "
            f"{', '.join(map(str, self.missing_examples.get(key, [])))})"
            for key, count in sorted(self.missing.items())
        ]


def _count(counts: Counter[str], examples: dict[str, list[int]], key: str, rows: list[int]) -> None:
    if not rows:
        return
    counts[key] += len(rows)
    examples.setdefault(key, []).extend(rows[: max(0, 5 - len(examples.get(key, [])))])
