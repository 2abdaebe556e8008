"""Precomputed embedding vectors (an LLM's, CLIP's, an audio model's): read, validated, and laid out for tf.data.

A vector feature's values come from a column of the entity table (a Parquet ``list<float>`` column, or a CSV cell
of numbers separated by spaces or commas, optionally in brackets) or from a file keyed by id (a ``.npz`` with
``ids`` [N] and ``vectors`` [N, dim], or a ``.npy`` of vectors with a companion ids file). Files are matched to the
table by id, never by row order, so a file sorted differently or written for another table cannot be read as the
wrong entities' vectors.

A vector is *missing* when its cell is null or empty (``None``, ``""``, ``[]``) or its id is absent from the file:
the row is kept, the model reads zeros, and the count goes to the report (``SkipReport.add_missing``). A vector
that is there but wrong (another length than declared, a value that is not a number, NaN or an infinity) is a bad
row: an error naming file, column, row and value, or, under ``on_bad_rows: skip``, dropped and counted.

Vectors are kept raw (not L2-normalised): normalise them before writing if the model that made them expects it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tfmtl.data.errors import DataError
from tfmtl.data.schema import VectorSource
from tfmtl.data.tables import RowPolicy, drop_duplicate_ids

_SEPARATORS = re.compile(r"[\s,;]+")
FILE_IDS = "ids"  # the arrays of a vector .npz
FILE_VECTORS = "vectors"


class _Problem:
    """Why one cell is a bad vector: the message for an error, the reason it is counted under, the value shown."""

    def __init__(self, message: str, reason: str, value: object) -> None:
        self.message, self.reason, self.value = message, reason, value


def parse_vectors(frame: pd.DataFrame, column: str, dim: int, *, file: str, policy: RowPolicy) -> pd.DataFrame:
    """A table column of vectors -> float32 arrays [dim] (None where missing); bad rows by ``policy``; missing
    rows counted."""
    vectors: list[np.ndarray | None] = []
    problems: dict[int, _Problem] = {}
    for row, value in frame[column].items():
        vector, problem = _cell(value, dim)
        if problem is not None:
            problems[int(row)] = problem  # type: ignore[arg-type]
        vectors.append(vector)
    frame = frame.assign(**{column: pd.Series(vectors, index=frame.index, dtype=object)})
    frame = _reject(frame, problems, policy, file=file, column=column)
    _count_missing(frame, column, policy, file=file, what=f"no vector in column '{column}' (the model reads zeros)")
    return frame


def read_vector_file(source: VectorSource, column: str, dim: int, *,
                     policy: RowPolicy) -> dict[str, tuple[int, np.ndarray]]:
    """id -> (its 1-based row in the file, its float32 vector [dim]); bad rows by ``policy``."""
    file = str(source.path)
    ids, vectors = _load_arrays(source)
    if vectors.ndim != 2:
        raise DataError(f"vectors must be a 2-D array [N, dim], got shape {vectors.shape}", file=file, column=column)
    if vectors.shape[1] != dim:
        raise DataError(f"vectors have dim {vectors.shape[1]} (shape {vectors.shape}), the schema declares {dim}",
                        file=file, column=column)
    if ids.ndim != 1 or len(ids) != len(vectors):
        raise DataError(f"{len(ids) if ids.ndim == 1 else ids.shape} ids for {len(vectors)} vectors: the ids must be "
                        "a 1-D array with one id per row of vectors", file=file, column=column)
    if ids.dtype.kind not in "USiu":
        raise DataError(f"ids have dtype {ids.dtype}: save them as strings or integers (a float id such as 1.0 would "
                        "not match the table's '1')", file=file, column=FILE_IDS)
    numbers = _numbers(vectors, file=file, column=column)
    frame = pd.DataFrame({FILE_IDS: [str(i).strip() for i in ids]}, index=pd.RangeIndex(1, len(ids) + 1, name="row"))
    frame = policy.reject(frame, (frame[FILE_IDS] == "").to_numpy(), file=file, column=FILE_IDS, reason="empty id")
    frame = drop_duplicate_ids(frame, FILE_IDS, file=file, policy=policy)
    problems = {}
    for row in frame.index:
        problem = _non_finite(numbers[row - 1])
        if problem is not None:
            problem.message = f"of id {frame.at[row, FILE_IDS]!r} {problem.message}"
            problems[int(row)] = problem
    frame = _reject(frame, problems, policy, file=file, column=column)
    return {str(frame.at[row, FILE_IDS]): (int(row), numbers[row - 1].astype(np.float32)) for row in frame.index}


def attach_vectors(frame: pd.DataFrame, id_column: str, column: str, vectors: dict[str, tuple[int, np.ndarray]], *,
                   file: str, source: str, policy: RowPolicy) -> pd.DataFrame:
    """The table with ``column`` holding each row's vector from ``vectors`` (by id; None where the file has none,
    counted), and the file's ids that match no row counted too."""
    ids = frame[id_column].astype(str)
    if len(frame) and vectors and not ids.isin(vectors.keys()).any():
        raise DataError(f"none of the {len(vectors)} ids of {source} is an id of this table (e.g. file id "
                        f"{next(iter(vectors))!r}, table id {ids.iloc[0]!r}): the vectors must be keyed by the "
                        f"table's '{id_column}'", file=file, column=column)
    if column in frame.columns:
        raise DataError(f"the table has a column '{column}', and vector '{column}' reads {source}: rename one",
                        file=file, column=column)
    frame = frame.assign(**{column: pd.Series([vectors[i][1] if i in vectors else None for i in ids],
                                              index=frame.index, dtype=object)})
    _count_missing(frame, column, policy, file=file, what=f"no vector for this id in {source} (column '{column}'; "
                                                         "the model reads zeros)")
    known = set(ids)
    unused = sorted(row for key, (row, _) in vectors.items() if key not in known)
    policy.skipped.add_missing(source, f"id matches no row of {file} (vector '{column}' unused)", unused)
    return frame


def vector_array(values: pd.Series, dim: int) -> np.ndarray:
    """A column of vectors (None where missing) -> float32 [N, dim], zeros where missing."""
    out = np.zeros((len(values), dim), np.float32)
    present = [n for n, value in enumerate(values) if isinstance(value, np.ndarray)]
    if present:
        out[present] = np.stack([values.iloc[n] for n in present])
    return out


def shown(vector: Any, limit: int = 4) -> str:
    """A short text of a (possibly long) vector: its first numbers and its length."""
    values = list(vector)
    head = ", ".join(f"{v:g}" if isinstance(v, (float, np.floating)) else repr(v) for v in values[:limit])
    return f"[{head}{', ...' if len(values) > limit else ''}] ({len(values)} values)"


# --- cells ---

def _cell(value: Any, dim: int) -> tuple[np.ndarray | None, _Problem | None]:
    """One table cell -> (its vector, or None when missing or bad; the problem, when bad)."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, str):
        text = value.strip().strip("[]").strip()
        if not text:
            return None, None
        value = _SEPARATORS.split(text)
        try:  # a CSV cell: numpy parses the numbers; the loop below finds the one that is not
            value = np.array(value, dtype=np.float64)
        except ValueError:
            pass
    elif value is None or (np.ndim(value) == 0 and bool(pd.isna(value))):
        return None, None
    elif np.ndim(value) == 0:
        return None, _Problem(f"is the single value {value!r}, not a vector of {dim} numbers",
                              "value is not a vector", value)
    if isinstance(value, np.ndarray) and value.ndim == 1 and value.dtype.kind in "fiu":
        numbers = value.astype(np.float64)  # a Parquet list<float>: the common case, no per-number work
    else:
        values = list(value)
        numbers = np.empty(len(values), np.float64)
        for position, element in enumerate(values):
            number = _number(element)
            if number is None:
                return None, _Problem(f"holds {element!r} at position {position}, which is not a number",
                                      "vector holds a value that is not a number", element)
            numbers[position] = number
    if not len(numbers):
        return None, None
    if len(numbers) != dim:
        return None, _Problem(f"has {len(numbers)} numbers, the schema declares {dim}",
                              f"vector length is not the declared {dim}", shown(numbers))
    problem = _non_finite(numbers)
    return (None, problem) if problem is not None else (numbers.astype(np.float32), None)


def _number(element: Any) -> float | None:
    if isinstance(element, (bool, np.bool_)) or element is None:
        return None
    if isinstance(element, (int, float, np.integer, np.floating)):
        return float(element)
    if isinstance(element, str):
        try:
            return float(element)
        except ValueError:
            return None
    return None


def _non_finite(numbers: np.ndarray) -> _Problem | None:
    bad = np.flatnonzero(~np.isfinite(numbers))
    if not len(bad):
        return None
    position = int(bad[0])
    return _Problem(f"holds {numbers[position]} at position {position}; a vector must be finite numbers (leave the "
                    "whole cell empty or null for a missing vector)", "vector holds NaN or an infinite value",
                    float(numbers[position]))


def _reject(frame: pd.DataFrame, problems: dict[int, _Problem], policy: RowPolicy, *, file: str,
            column: str) -> pd.DataFrame:
    """Raises on the first bad row (naming its value), or drops the bad rows counted by reason."""
    if not problems:
        return frame
    if not policy.skip:
        row = min(problems)
        problem = problems[row]
        more = f"; {len(problems) - 1} more bad vector(s) in this column" if len(problems) > 1 else ""
        raise DataError(f"vector {problem.message}{more}. Fix the data, or set on_bad_rows: skip to drop and count "
                        "such rows", file=file, column=column, row=row, value=problem.value)
    reasons: dict[str, list[int]] = {}
    for row, problem in sorted(problems.items()):
        reasons.setdefault(problem.reason, []).append(row)
    for reason, rows in reasons.items():
        policy.skipped.add(file, f"{reason} in column '{column}'", rows)
    return frame[~frame.index.isin(list(problems))]


def _count_missing(frame: pd.DataFrame, column: str, policy: RowPolicy, *, file: str, what: str) -> None:
    missing = [int(row) for row, value in frame[column].items() if value is None]
    if frame.size and len(missing) == len(frame):
        raise DataError(f"no row has a vector ({len(frame)} rows): check the column, or the ids of its file",
                        file=file, column=column)
    policy.skipped.add_missing(file, what, missing)


# --- files ---

def _load_arrays(source: VectorSource) -> tuple[np.ndarray, np.ndarray]:
    """(ids [N], vectors) of a .npz, or of a .npy and its ids file."""
    if source.path.suffix.lower() == ".npz":
        with _load(source.path) as arrays:
            names = set(arrays.files)
            if not {FILE_IDS, FILE_VECTORS} <= names:
                raise DataError(f"a vector .npz needs arrays '{FILE_IDS}' [N] and '{FILE_VECTORS}' [N, dim] (found: "
                                f"{', '.join(sorted(names)) or 'none'}), e.g. np.savez(path, ids=ids, vectors=vectors)",
                                file=str(source.path))
            return _read(source.path, lambda: arrays[FILE_IDS]), _read(source.path, lambda: arrays[FILE_VECTORS])
    vectors = _read(source.path, lambda: _load(source.path))
    if source.ids is None:  # the schema refuses this; a hand-made VectorSource gets the same answer
        raise DataError("a .npy of vectors needs an ids file", file=str(source.path))
    return _ids(source.ids), vectors


def _ids(path: Path) -> np.ndarray:
    if path.suffix.lower() == ".npy":
        return _read(path, lambda: _load(path))
    if not path.exists():
        raise DataError("file not found", file=str(path))
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as error:
        raise DataError(f"ids file is not valid UTF-8 ({error.reason} at byte {error.start})", file=str(path)) from None
    while lines and not lines[-1].strip():
        lines.pop()
    return np.array(lines, dtype=str)


def _load(path: Path) -> Any:
    if not path.exists():
        raise DataError("file not found", file=str(path))
    return _read(path, lambda: np.load(path, allow_pickle=False))


def _read(path: Path, load: Any) -> Any:
    """``load()``, with numpy's refusals as DataErrors; pickles are never read (a data file must not run code)."""
    try:
        return load()
    except DataError:
        raise
    except ValueError as error:
        if "allow_pickle" in str(error):
            raise DataError("holds Python objects (an object array), which are not read: save ids as strings or "
                            "integers (np.asarray(ids, dtype=str)) and vectors as floats", file=str(path)) from None
        raise DataError(f"cannot be read as {path.suffix}: {error}", file=str(path)) from None
    except (OSError, EOFError, KeyError) as error:  # a damaged zip or header
        raise DataError(f"cannot be read as {path.suffix}: {type(error).__name__}: {error}", file=str(path)) from None


def _numbers(vectors: np.ndarray, *, file: str, column: str) -> np.ndarray:
    """The vectors as float64, or an error naming the first value that is not a number."""
    if vectors.dtype.kind in "fiu":
        return vectors.astype(np.float64)
    if vectors.dtype.kind in "US":
        for row, vector in enumerate(vectors, start=1):
            for position, element in enumerate(vector):
                if _number(str(element)) is None:
                    raise DataError(f"vector holds {str(element)!r} at position {position}, which is not a number",
                                    file=file, column=column, row=row, value=str(element))
        return vectors.astype(np.float64)
    raise DataError(f"vectors have dtype {vectors.dtype}, not numbers", file=file, column=column)
