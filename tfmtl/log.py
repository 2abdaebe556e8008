"""One place for the progress lines tfmtl writes to stderr (stdout stays for ``--json``)."""

from __future__ import annotations

import sys


def log(message: str) -> None:
    """``[tfmtl] message`` on stderr, flushed (long runs are watched through pipes and log files)."""
    print(f"[tfmtl] {message}", file=sys.stderr, flush=True)


def say(message: str) -> None:
    """``message`` on stderr as it is (data loaders' lines name their dataset themselves)."""
    print(message, file=sys.stderr, flush=True)
