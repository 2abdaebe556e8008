"""Reading CSV/Parquet tables and parsing their columns, with errors that name file, column and row.

Row numbers are 1-based data records (the header and blank lines are not rows; a quoted CSV field may span
lines, so errors found while reading also give the line).
Under the ``skip`` policy a bad row is dropped and counted in a :class:`SkipReport`, never silently.
"""

from __future__ import annotations

import csv
import io
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tfmtl.data.errors import DataError, SkipReport

PARQUET_SUFFIXES = (".parquet", ".pq")
MAX_ABS_SECONDS = 1e11


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
    """Parses quoted fields (which may span lines) before judging records; row N is the N-th data record."""
    file = str(path)
    raw = path.read_bytes()
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    # surrogateescape keeps invalid bytes visible per record instead of failing the whole file.
    text = raw.decode("utf-8", errors="surrogateescape")
    first_line = text.split("\n", 1)[0]
    if separator is None:
        separator = "\t" if path.suffix.lower() in (".tsv", ".tab") or "\t" in first_line else ","
    # A field may be as long as its file: the csv module's default limit (128 KiB) rejects a long description.
    csv.field_size_limit(max(csv.field_size_limit(), len(text) + 1))
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=separator, strict=True)
    records: list[list[str]] = []
    kept_rows: list[int] = []
    bad_utf8: list[int] = []
    wrong_width: list[int] = []
    columns: list[str] | None = None
    row = 0
    line = 1  # the line the next record starts on
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csv.Error as error:
            raise DataError(f"cannot parse the CSV record starting on line {line} ({error}); check for an "
                            "unclosed quote", file=file, row=row + 1 if columns is not None else None) from None
        start, line = line, reader.line_num + 1
        if not fields or (len(fields) == 1 and not fields[0].strip()):
            continue  # blank lines carry no data
        if columns is None:
            if _has_invalid_utf8(fields):
                raise DataError("header is not valid UTF-8", file=file)
            columns = fields
            continue
        row += 1
        if _has_invalid_utf8(fields):
            if not policy.skip:
                raise DataError(f"invalid UTF-8 (line {start}). Re-encode the file as UTF-8, or set "
                                "on_bad_rows: skip", file=file, row=row)
            bad_utf8.append(row)
            continue
        if len(fields) != len(columns):
            if not policy.skip:
                raise DataError(f"has {len(fields)} fields, the header has {len(columns)} (line {start})",
                                file=file, row=row)
            wrong_width.append(row)
            continue
        records.append(fields)
        kept_rows.append(row)
    if columns is None:
        raise DataError("file has no header line", file=file)
    duplicated = sorted({c for c in columns if columns.count(c) > 1})
    if duplicated:
        raise DataError(f"header names column '{duplicated[0]}' twice", file=file)
    policy.skipped.add(file, "invalid UTF-8", bad_utf8)
    policy.skipped.add(file, "wrong number of fields", wrong_width)
    frame = pd.DataFrame(records, columns=columns, dtype=object)
    frame.index = pd.Index(kept_rows, name="row")
    return frame


def _has_invalid_utf8(fields: list[str]) -> bool:
    return any(any("\udc80" <= ch <= "\udcff" for ch in value) for value in fields)


def _read_parquet(path: Path) -> pd.DataFrame:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as error:
        raise DataError(f"cannot be read as Parquet: {error}", file=str(path)) from None
    _check_utf8(table, str(path))
    try:
        frame = table.to_pandas(integer_object_nulls=True)  # integer ids with nulls must not become '1.0'
    except (pa.ArrowException, KeyError, ValueError, TypeError, IndexError) as error:  # e.g. damaged pandas metadata
        raise DataError(f"cannot be read as Parquet: {type(error).__name__}: {error}", file=str(path)) from None
    frame.index = pd.RangeIndex(1, len(frame) + 1, name="row")
    for column in frame.columns:
        frame[column] = _decode_bytes(frame[column], str(path), str(column))
    return frame


def _check_utf8(table: Any, file: str) -> None:
    """Parquet does not check that string columns hold UTF-8; find the first bad value's row before pandas trips."""
    import pyarrow as pa

    for name in table.column_names:
        column = table.column(name)
        if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
            continue
        offset = 0
        for chunk in column.chunks:
            try:
                chunk.validate(full=True)
            except pa.ArrowException as error:
                found = re.search(r"index (\d+)", str(error))
                row = offset + int(found.group(1)) + 1 if found else None
                raise DataError("invalid UTF-8" if found else f"cannot be read as Parquet: {error}", file=file,
                                column=str(name), row=row) from None
            offset += len(chunk)


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
    # object first: pandas 2.x maps a nullable integer column with a missing value as floats ('1.0', not '1').
    return series.astype(object).map(lambda v: "" if _is_missing(v) else str(v)).astype(object)


def _is_missing(value: object) -> bool:
    return value is None or (np.ndim(value) == 0 and bool(pd.isna(value)))  # type: ignore[arg-type]  # None, NaN, NaT, pd.NA


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
    if pd.api.types.is_datetime64_any_dtype(raw.dtype):  # a native Parquet timestamp: already a time
        parsed = pd.to_datetime(raw, utc=True)
        seconds = (parsed - pd.Timestamp(0, tz="UTC")).dt.total_seconds()
    elif fmt in ("unix", "unix_ms"):
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
    values = seconds.to_numpy(dtype=float, na_value=np.nan)
    # NaN, infinities and times beyond year ~5000 are not timestamps (and would overflow int64 silently).
    bad = ~np.isfinite(values) | (np.abs(np.nan_to_num(values)) > MAX_ABS_SECONDS)
    frame = policy.reject(frame, bad, file=file, column=column,
                          reason=f"timestamp cannot be parsed as {fmt!r}", values=raw)
    return frame.assign(**{column: np.floor(values[~bad]).astype("int64")})


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
