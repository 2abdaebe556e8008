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
    """Rows dropped under the ``skip`` policy, counted per (file, reason), with a few examples."""

    counts: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[int]] = field(default_factory=dict)

    def add(self, file: str, reason: str, rows: list[int]) -> None:
        if not rows:
            return
        key = f"{file}: {reason}"
        self.counts[key] += len(rows)
        self.examples.setdefault(key, []).extend(rows[: max(0, 5 - len(self.examples.get(key, [])))])

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
        ]
