"""Versioned, atomic publishing under ``<base>/<name>/<version>/``, the layout TF Serving polls.

A version is written into a hidden ``.partial-<host>_<boot id>_<pid>_<token>`` folder beside the versions (same
filesystem), then renamed into place under a lock: TF Serving never sees a half-written version, and a killed export
leaves only a hidden folder, which a later export removes once it is stale: its process is gone (same host and
boot), its host has rebooted since, or (another host sharing the folder, whose processes cannot be seen from here)
it has not changed for ``FOREIGN_STALE_SECONDS``. Versions are integers that only grow.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from tfmtl.files import fsync_files, fsync_folder
from tfmtl.serving.signatures import check_model_name  # noqa: F401  (re-exported: names are checked before writing)

PARTIAL_PREFIX = ".partial-"
FOREIGN_STALE_SECONDS = 24 * 3600  # far longer than any export takes


def versions(model_dir: Path) -> list[int]:
    """The numeric version folders, as TF Serving reads them ('00012' is 12), ascending."""
    if not model_dir.is_dir():
        return []
    return sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit())


@contextlib.contextmanager
def partial_version(model_dir: Path) -> Iterator[Path]:
    """A fresh hidden folder to write a version into; removed if the block fails."""
    model_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(model_dir)
    path = model_dir / f"{PARTIAL_PREFIX}{_host()}_{_boot_id()}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    path.mkdir()
    try:
        yield path
    finally:
        if path.exists():
            shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def version_lock(model_dir: Path) -> Iterator[None]:
    """Serialises version numbering between concurrent exports of one model."""
    model_dir.mkdir(parents=True, exist_ok=True)
    with open(model_dir / ".export.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def next_version(model_dir: Path) -> int:
    existing = versions(model_dir)
    return existing[-1] + 1 if existing else 1


def publish(partial: Path, model_dir: Path, version: int) -> Path:
    """Renames a finished partial folder to ``<model_dir>/<version>`` (call under :func:`version_lock`)."""
    target = model_dir / str(version)
    if target.exists() or version in versions(model_dir):
        raise RuntimeError(f"version {version} of {model_dir} already exists; versions are never overwritten")
    _fsync_tree(partial)
    os.rename(partial, target)  # atomic on one filesystem
    fsync_folder(model_dir)
    return target


def remove_stale_partials(model_dir: Path, *, now: float | None = None) -> list[Path]:
    """Removes partial folders of exports that can no longer finish (see the module docstring); keeps the others."""
    removed = []
    for path in model_dir.glob(f"{PARTIAL_PREFIX}*"):
        if _stale(path, time.time() if now is None else now):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def _stale(path: Path, now: float) -> bool:
    name = path.name[len(PARTIAL_PREFIX):]
    parts = name.rsplit("_", 3)
    if len(parts) == 4:
        host, boot, pid = parts[:3]
    else:  # written before host and boot were recorded: this host's
        host, boot, pid = _host(), _boot_id(), name.split("-", 1)[0]
    if host != _host():
        try:
            changed = max([path.stat().st_mtime, *(p.stat().st_mtime for p in path.iterdir())])
        except OSError:
            return False  # it is being written or removed right now
        return now - changed > FOREIGN_STALE_SECONDS
    return boot != _boot_id() or not pid.isdigit() or not _alive(int(pid))


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9.-]", "-", socket.gethostname()) or "host"


def _boot_id() -> str:
    """This boot of this host (Linux's boot id); a process id means nothing across boots."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip().replace("-", "")[:12] or "boot"
    except OSError:
        return "boot"


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _fsync_tree(root: Path) -> None:
    for folder, _, files in os.walk(root):
        fsync_files([Path(folder, name) for name in files])
        fsync_folder(Path(folder))
