"""Durable file writes: a reader sees the old file or the whole new one, never a torn one, even after a crash."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import IO


def write_atomic(path: Path, write: Callable[[IO[bytes]], object]) -> None:
    """Writes ``path`` through ``write(file)``: into a temporary file beside it, flushed and fsynced, then renamed
    over ``path`` and the folder fsynced. If ``write`` fails, ``path`` is untouched and the temporary file removed."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
        raise
    fsync_folder(path.parent)


def write_text_atomic(path: Path, text: str) -> None:
    write_atomic(path, lambda file: file.write(text.encode("utf-8")))


def fsync_folder(folder: Path) -> None:
    """Makes a rename or a new file in ``folder`` durable (a no-op where folders cannot be opened, e.g. Windows)."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def fsync_files(paths: list[Path]) -> None:
    """Flushes files another library wrote (e.g. a TensorFlow checkpoint) to disk."""
    for path in paths:
        with open(path, "rb") as file:
            os.fsync(file.fileno())
