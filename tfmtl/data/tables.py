"""Reading CSV/Parquet tables and parsing their columns, with errors that name file, column and row.

Row numbers are 1-based data rows (the header is not a row); in a CSV, row N is on line N + 1.
Under the ``skip`` policy a bad row is dropped and counted in a :class:`SkipReport`, never silently.
"""

from __future__ import annotations

import csv
import io
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from tfmtl.data.errors import DataError, SkipReport

PARQUET_SUFFIXES = (".parquet", ".pq")


class RowPolicy:
    """Applies the bad-row policy: raise on the first bad row, or drop and count them all."""

    def __init__(self, policy: str, skipped: SkipReport) -> None:
        self.skip = policy == "skip"
        self.skipped = skipped

    def reject(self, frame: pd.DataFrame, bad: np.ndarray, *, file: str, column: str | None,
               reason: str, values: pd.Series | None = None) -> pd.DataFrame:
        """Handles the rows where ``bad`` is True: raises, or returns the frame without them."""
        if not bad.any():
            return frame
        rows = frame.index[bad].tolist()
        if not self.skip:
            first = rows[0]
            value = None if values is None else values[bad].iloc[0]
            shown = "" if value is None else f" (value {value!r})"
            more = f"; {len(rows) - 1} more row(s) like it" if len(rows) > 1 else ""
            raise DataError(f"{reason}{shown}{more}. Fix the data, or set on_bad_rows: skip to drop and "
                            "count such rows", file=file, column=column, row=first, value=value)
        self.skipped.add(file, f"{reason} in column '{column}'" if column else reason, rows)
        return frame[~bad]


def read_table(path: Path, *, separator: str | None, policy: RowPolicy) -> pd.DataFrame:
    """Reads a whole table as strings (CSV) or native types (Parquet), indexed by 1-based row number."""
    file = str(path)
    if not path.exists():
        raise DataError("file not found", file=file)
    if path.stat().st_size == 0:
        raise DataError("file is empty", file=file)
    frame = _read_parquet(path) if path.suffix.lower() in PARQUET_SUFFIXES else _read_csv(path, separator, policy)
    if len(frame) == 0:
        raise DataError("file has a header but no data rows", file=file)
    return frame


def _read_csv(path: Path, separator: str | None, policy: RowPolicy) -> pd.DataFrame:
    file = str(path)
    lines = path.read_bytes().splitlines()
    if not lines or not lines[0].strip():
        raise DataError("file has no header line", file=file)
    header_bytes, body = lines[0], lines[1:]
    try:
        header = header_bytes.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise DataError(f"header is not valid UTF-8 (byte {error.start})", file=file) from None
    if separator is None:
        separator = "\t" if path.suffix.lower() in (".tsv", ".tab") or "\t" in header else ","
    decoded: list[str] = []
    row_numbers: list[int] = []
    bad_utf8: list[int] = []
    for number, raw in enumerate(body, start=1):
        if not raw.strip():
            continue  # blank lines carry no data
        try:
            decoded.append(raw.decode("utf-8"))
            row_numbers.append(number)
        except UnicodeDecodeError as error:
            if not policy.skip:
                raise DataError(f"invalid UTF-8 at byte {error.start} of the line (line {number + 1}). "
                                "Re-encode the file as UTF-8, or set on_bad_rows: skip",
                                file=file, row=number) from None
            bad_utf8.append(number)
    policy.skipped.add(file, "invalid UTF-8", bad_utf8)
    columns = next(csv.reader([header], delimiter=separator))
    duplicated = sorted({c for c in columns if columns.count(c) > 1})
    if duplicated:
        raise DataError(f"header names column '{duplicated[0]}' twice", file=file)
    records: list[list[str]] = []
    kept_rows: list[int] = []
    wrong_width: list[int] = []
    for number, fields in zip(row_numbers, csv.reader(io.StringIO("\n".join(decoded)), delimiter=separator),
                              strict=False):
        if len(fields) != len(columns):
            if not policy.skip:
                raise DataError(f"has {len(fields)} fields, the header has {len(columns)}", file=file,
                                row=number)
            wrong_width.append(number)
            continue
        records.append(fields)
        kept_rows.append(number)
    policy.skipped.add(file, "wrong number of fields", wrong_width)
    frame = pd.DataFrame(records, columns=columns, dtype=object)
    frame.index = pd.Index(kept_rows, name="row")
    return frame


def _read_parquet(path: Path) -> pd.DataFrame:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as error:
        raise DataError(f"cannot be read as Parquet: {error}", file=str(path)) from None
    frame = table.to_pandas()
    frame.index = pd.RangeIndex(1, len(frame) + 1, name="row")
    for column in frame.columns:
        frame[column] = _decode_bytes(frame[column], str(path), str(column))
    return frame


def _decode_bytes(series: pd.Series, file: str, column: str) -> pd.Series:
    """Binary Parquet columns arrive as bytes; decode them strictly so bad UTF-8 is located."""
    if series.dtype != object or not any(isinstance(v, bytes) for v in series.head(100)):
        return series
    out = []
    for row, value in series.items():
        if isinstance(value, bytes):
            try:
                value = value.decode("utf-8")
            except UnicodeDecodeError as error:
                raise DataError(f"invalid UTF-8 at byte {error.start}", file=file, column=column,
                                row=int(row)) from None  # type: ignore[arg-type]
        out.append(value)
    return pd.Series(out, index=series.index, dtype=object)


def require_columns(frame: pd.DataFrame, file: str, columns: list[str]) -> None:
    present = set(map(str, frame.columns))
    for column in columns:
        if column not in present:
            raise DataError(f"required column '{column}' is missing (found: {', '.join(map(str, frame.columns))})",
                            file=file, column=column)


def as_text(series: pd.Series) -> pd.Series:
    """Strings with missing values as ''."""
    return series.map(lambda v: "" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v)).astype(object)


def parse_ids(frame: pd.DataFrame, column: str, *, file: str, policy: RowPolicy) -> pd.DataFrame:
    ids = as_text(frame[column]).str.strip()
    frame = frame.assign(**{column: ids})
    return policy.reject(frame, (ids == "").to_numpy(), file=file, column=column, reason="empty id")


def parse_numeric(frame: pd.DataFrame, column: str, *, file: str, policy: RowPolicy,
                  allow_missing: bool = False) -> pd.DataFrame:
    raw = frame[column]
    values = pd.to_numeric(raw.map(lambda v: v.strip() if isinstance(v, str) else v), errors="coerce")
    missing = raw.map(lambda v: v is None or (isinstance(v, str) and not v.strip())).to_numpy() | (
        raw.isna().to_numpy())
    bad = values.isna().to_numpy() & ~missing
    bad |= np.isinf(values.to_numpy(dtype=float, na_value=np.nan))
    frame = policy.reject(frame, bad, file=file, column=column, reason="value is not a finite number",
                          values=raw)
    if not allow_missing:
        frame = policy.reject(frame, missing[~bad], file=file, column=column,
                              reason="value is missing")
    numbers = pd.to_numeric(frame[column].map(lambda v: v.strip() if isinstance(v, str) else v), errors="coerce")
    return frame.assign(**{column: numbers.astype("float64")})


def parse_timestamps(frame: pd.DataFrame, column: str, fmt: str, *, file: str,
                     policy: RowPolicy) -> pd.DataFrame:
    """Converts a timestamp column to int64 Unix seconds."""
    raw = frame[column]
    if fmt in ("unix", "unix_ms"):
        numbers = pd.to_numeric(raw.map(lambda v: v.strip() if isinstance(v, str) else v), errors="coerce")
        seconds = numbers / 1000.0 if fmt == "unix_ms" else numbers
    else:
        texts = as_text(raw).str.strip()
        if fmt == "iso":
            parsed = pd.to_datetime(texts, errors="coerce", utc=True, format="ISO8601")
        else:
            parsed = texts.map(lambda t: _strptime(t, fmt))
            parsed = pd.to_datetime(parsed, errors="coerce", utc=True)
        seconds = (parsed - pd.Timestamp(0, tz="UTC")).dt.total_seconds()
    bad = seconds.isna().to_numpy()
    frame = policy.reject(frame, bad, file=file, column=column,
                          reason=f"timestamp cannot be parsed as {fmt!r}", values=raw)
    seconds = seconds[~bad]
    return frame.assign(**{column: np.floor(seconds.to_numpy(dtype=float)).astype("int64")})


def _strptime(text: str, fmt: str) -> datetime | None:
    try:
        return datetime.strptime(text, fmt)
    except ValueError:
        return None


def split_multi_valued(series: pd.Series, separator: str) -> pd.Series:
    """'a|b|' -> ('a', 'b'): tuples of stripped, non-empty values."""
    return as_text(series).map(lambda v: tuple(p.strip() for p in v.split(separator) if p.strip()))


def drop_duplicate_ids(frame: pd.DataFrame, column: str, *, file: str, policy: RowPolicy) -> pd.DataFrame:
    duplicated = frame[column].duplicated(keep="first").to_numpy()
    if duplicated.any() and not policy.skip:
        value = frame[column][duplicated].iloc[0]
        first = frame.index[(frame[column] == value).to_numpy()][0]
        row = frame.index[duplicated][0]
        raise DataError(f"duplicate id {value!r} (first seen in row {first}); ids must be unique",
                        file=file, column=column, row=int(row), value=value)
    return policy.reject(frame, duplicated, file=file, column=column, reason="duplicate id (first kept)")
