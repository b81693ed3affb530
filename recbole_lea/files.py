"""Files written so that a crash never leaves half of one, and checked before they are read: one
home for the temporary-name-then-rename pattern, the sha256 checksums of cached folders and the
file locks of every stage (the LE build, comparisons, sweeps and converters use them)."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from filelock import FileLock

logger = logging.getLogger(__name__)

#: how long a process waits for another one's lock (a whole LE build can hold it)
LOCK_TIMEOUT_S = 24 * 3600


def tmp_name(prefix: str) -> str:
    """A temporary name that carries this process id (see :func:`remove_stale_tmp`)."""
    return f".{prefix}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w", **kwargs: Any) -> Iterator[IO[Any]]:
    """``open`` for writing a temporary file beside ``path``, renamed into place when the block
    ends without an error (a reader sees the old file or the new one) and removed when it fails."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(tmp_name(path.name))
    try:
        with open(tmp, mode, **kwargs) as fh:
            yield fh
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` through :func:`atomic_open`."""
    with atomic_open(path, "w", encoding="utf-8") as fh:
        fh.write(text)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def folder_checksums(folder: Path, skip: tuple[str, ...] = ()) -> dict[str, str]:
    """sha256 of every file under ``folder`` by relative path (``skip``: names left out)."""
    return {
        str(p.relative_to(folder)): sha256_file(p)
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name not in skip
    }


def verify_checksums(folder: Path, checksums: dict[str, str]) -> str | None:
    """None when every recorded file is there with its sha256, else what is wrong."""
    for rel, digest in checksums.items():
        path = folder / rel
        if not path.is_file():
            return f"{rel} is missing"
        if sha256_file(path) != digest:
            return f"{rel} does not match its recorded sha256 (modified or truncated)"
    return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_tmp(parent: Path, prefix: str = "") -> list[Path]:
    """Remove ``parent/.<prefix>*.tmp-<pid>-*`` left by processes that are no longer alive."""
    removed: list[Path] = []
    if not parent.is_dir():
        return removed
    for p in parent.glob(f".{prefix}*.tmp-*"):
        try:
            pid = int(p.name.rsplit(".tmp-", 1)[1].split("-")[0])
        except (IndexError, ValueError):
            continue
        if not _pid_alive(pid):
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
            removed.append(p)
    if removed:
        logger.info("removed %d leftover temporary folder(s) of killed builds under %s", len(removed), parent)
    return removed


def locked(path: Path) -> FileLock:
    """A file lock at ``path`` (its folder made), waiting up to :data:`LOCK_TIMEOUT_S`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(path), timeout=LOCK_TIMEOUT_S)
