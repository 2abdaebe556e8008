"""A journal of a long benchmark's finished units of work, so that a run stopped part-way resumes where it stopped.

On this project's 2-core machine a benchmark of many trainings (``cold_start_books.py --select``: 18 trainings,
about 2 hours) outlasts one working session. Each finished unit (one training and its metrics) is appended to a
JSON-lines file as it ends; the same command run again reads the file and skips what is there. A unit is keyed by
its name and a fingerprint of what it depends on (its config and the data), so a changed config or data set runs
again instead of reusing a stale result. Each line also records when and at which commit it ran.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


def fingerprint(*parts: object) -> str:
    """A short digest of JSON-able parts (configs as ``get_config()`` dicts) and DataFrames (hashed by content)."""
    digest = hashlib.sha256()
    for part in parts:
        if isinstance(part, pd.DataFrame):
            digest.update(pd.util.hash_pandas_object(part.astype(str), index=False).to_numpy().tobytes())
        else:
            digest.update(json.dumps(part, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:16]


def _plain(value: object) -> object:
    """numpy scalars and arrays as Python values (a training's metrics may be either)."""
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    raise TypeError(f"the journal keeps JSON values; got {type(value).__name__}")


def _commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10,
                              cwd=Path(__file__).resolve().parent, check=True).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


class Journal:
    """Finished units in ``path`` (JSON lines); ``None`` keeps nothing (every unit runs)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.units: dict[tuple[str, str], Any] = {}
        if path is not None and path.exists():
            for number, line in enumerate(path.read_text().splitlines(), start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                    self.units[(record["unit"], record["fingerprint"])] = record["value"]
                except (json.JSONDecodeError, KeyError) as error:  # a line cut short by a kill: that unit reruns
                    print(f"[journal] {path}:{number}: unreadable line skipped ({error})", file=sys.stderr)
            print(f"[journal] {path}: {len(self.units)} finished units", file=sys.stderr, flush=True)

    def run(self, unit: str, depends_on: str, compute: Callable[[], Any]) -> Any:
        """``compute()``'s value for ``unit``, from the journal when a unit of that name and fingerprint
        ``depends_on`` has finished before; otherwise computed now and appended."""
        key = (unit, depends_on)
        if key in self.units:
            print(f"[journal] {unit}: from the journal", file=sys.stderr, flush=True)
            return self.units[key]
        value = json.loads(json.dumps(compute(), default=_plain))  # what a resumed run will read back
        self.units[key] = value
        if self.path is not None:
            record = {"unit": unit, "fingerprint": depends_on, "value": value, "commit": _commit(),
                      "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a") as file:
                file.write(json.dumps(record) + "\n")
        return value

    def close(self) -> None:
        """The run finished and its results are written: the journal has served its purpose."""
        if self.path is not None:
            self.path.unlink(missing_ok=True)
