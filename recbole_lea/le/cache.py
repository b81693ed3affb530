"""Fingerprinted, verified, locked artifact folders of the LE build.

Each stage's artifact lives in ``<cache>/stages/<stage>-<fingerprint>/``: computed in a temporary
folder, given a ``meta.json`` that records the sha256 of every file it holds, then renamed into
place with a ``COMPLETE`` marker. Before a folder is reused its files are checked against those
sha256s; a corrupted or truncated artifact is recomputed, never read. A file lock per stage and
fingerprint makes two builds started at once compute each stage once (the second waits, then
reuses). Temporary folders of processes that died are removed on the next start.

The fingerprint of a stage is the sha256 of its key: the code version (:func:`code_version`),
the options tagged with the stage (:func:`recbole_lea.le.config.stage_options`), the data files'
sha256 and the fingerprints of the stages it reads.
"""

from __future__ import annotations

import ast
import errno
import hashlib
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from filelock import FileLock

from recbole_lea.errors import ConfigError

logger = logging.getLogger(__name__)

_LOG_METHODS = frozenset({"debug", "info", "warning", "error", "exception", "critical", "log"})
#: how long a build waits for another process building the same artifact
LOCK_TIMEOUT_S = 24 * 3600


class CacheSpaceError(ConfigError):
    """The disk filled up while an artifact was written (nothing half-written stays behind)."""


def _is_docstring(stmt: ast.stmt) -> bool:
    return isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) and isinstance(stmt.value.value, str)


def _is_log_call(stmt: ast.stmt) -> bool:
    """`logger.info(...)` and the like: a statement that only writes a log line."""
    if not (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call)):
        return False
    func = stmt.value.func
    return (
        isinstance(func, ast.Attribute)
        and func.attr in _LOG_METHODS
        and isinstance(func.value, ast.Name)
        and func.value.id in ("logger", "logging")
    )


def source_fingerprint(source: str) -> str:
    """Hash of a module's behaviour: its syntax tree without comments, docstrings, log statements,
    line numbers or formatting, so that editing those does not invalidate cached LE stages."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        for name in ("body", "orelse", "finalbody"):  # every statement list (handlers are nodes with a body)
            block = getattr(node, name, None)
            if not (isinstance(block, list) and block and isinstance(block[0], ast.stmt)):
                continue
            docstring = name == "body" and _is_docstring(block[0])
            setattr(node, name, [s for s in block[docstring:] if not _is_log_call(s)])
    return hashlib.sha256(ast.dump(tree, include_attributes=False).encode()).hexdigest()


def code_files() -> list[Path]:
    """The modules whose code decides LE outputs: the LE build, the LE file writer and the mirror
    of RecBole's split (not the test helpers, the CLI or this cache, which decides where and
    whether an artifact is computed, not what it holds)."""
    pkg = Path(__file__).resolve().parents[1]
    skip = ("testing.py", "__main__.py", "__init__.py", "cache.py")
    le = [p for p in (pkg / "le").glob("*.py") if p.name not in skip]
    return sorted(le) + [pkg / "le_files" / "writer.py", pkg / "le_files" / "fields.py", pkg / "data" / "rows.py"]


def code_version() -> str:
    """Fingerprint of the LE build code; part of every stage's key and of the LE manifest."""
    h = hashlib.sha256()
    for p in code_files():
        h.update(p.name.encode())
        h.update(source_fingerprint(p.read_text(encoding="utf-8")).encode())
    return h.hexdigest()


def sha_of(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


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


def tmp_name(prefix: str) -> str:
    """A temporary name that carries this process id (see :func:`remove_stale_tmp`)."""
    return f".{prefix}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def remove_stale_tmp(parent: Path, prefix: str = "") -> list[Path]:
    """Remove ``parent/.<prefix>*.tmp-<pid>-*`` left by processes that are no longer alive."""
    removed = []
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


#: free bytes below which a failed write is taken for a full disk (numpy and torch report a
#: short write without errno ENOSPC: "requested and N written", "unexpected pos")
FULL_DISK_BYTES = 64 << 20


def disk_full(err: BaseException, where: Path) -> bool:
    """Whether ``err``, raised while writing under ``where``, comes from a full disk."""
    if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    if not isinstance(err, OSError | RuntimeError):
        return False
    probe = Path(where)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        return shutil.disk_usage(probe).free < FULL_DISK_BYTES
    except OSError:
        return False


def no_space(err: BaseException, where: Path) -> CacheSpaceError:
    return CacheSpaceError(
        f"No space left on the device while writing {where} ({err}). Nothing half-written was "
        f"kept and finished stages stay cached: free some space (`df -h {where.parent}`) and run the same "
        "command again, or point le_cache_dir / RECBOLE_LEA_CACHE at a larger disk."
    )


def locked(path: Path) -> FileLock:
    path.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(path), timeout=LOCK_TIMEOUT_S)


class StageCache:
    """Atomic, fingerprinted, verified and locked stage folders."""

    #: every stage computed in this process, in order (a run reports whether its LE was built)
    computed_log: list[str] = []

    def __init__(self, root: Path):
        self.root = root / "stages"
        self.root.mkdir(parents=True, exist_ok=True)
        self.computed: list[str] = []
        self.reused: list[str] = []
        self.times: dict[str, float] = {}

    def path(self, name: str, fp: str) -> Path:
        return self.root / f"{name}-{fp[:24]}"

    def verified(self, name: str, fp: str) -> Path | None:
        """The stage folder when it is complete and every file matches its sha256, else None
        (a corrupted folder is removed with a warning)."""
        final = self.path(name, fp)
        if not (final / "COMPLETE").exists():
            return None
        try:
            meta = json.loads((final / "meta.json").read_text())
            problem = verify_checksums(final, meta["checksums"])
        except (OSError, ValueError, KeyError, TypeError) as err:
            problem = f"meta.json is unreadable ({err})"
        if problem is None:
            return final
        logger.warning("stage %s: cached folder %s is corrupt (%s); recomputing it", name, final, problem)
        shutil.rmtree(final, ignore_errors=True)
        return None

    def run(self, name: str, key: dict, compute: Callable[[Path], dict], quiet: bool = False) -> tuple[Path, str]:
        """The verified folder of ``name`` with this key, computed by ``compute(tmp_folder)`` (which
        returns the meta to record) when absent or corrupt. ``quiet``: log at DEBUG (shards)."""
        fp = sha_of(key)
        final = self.path(name, fp)
        level = logging.DEBUG if quiet else logging.INFO
        with locked(self.root / ".locks" / f"{name}-{fp[:24]}.lock"):
            if self.verified(name, fp) is not None:
                logger.log(level, "stage %s: reusing %s", name, final)
                self.reused.append(name)
                self.times[name] = 0.0
                return final, fp
            remove_stale_tmp(self.root, name)
            tmp = self.root / tmp_name(f"{name}-{fp[:24]}")
            logger.log(level, "stage %s: computing (fingerprint %s)", name, fp[:12])
            t0 = time.time()
            try:
                tmp.mkdir(parents=True)
                meta = compute(tmp) or {}
                meta["seconds"] = time.time() - t0
                meta["checksums"] = folder_checksums(tmp)
                (tmp / "meta.json").write_text(
                    json.dumps({"key": key, "fingerprint": fp, **meta}, indent=1, default=str)
                )
                (tmp / "COMPLETE").write_text(fp)
                if final.exists():  # an incomplete leftover without COMPLETE
                    shutil.rmtree(final)
                os.replace(tmp, final)
            except BaseException as err:
                full = disk_full(err, tmp)
                shutil.rmtree(tmp, ignore_errors=True)
                if full:
                    raise no_space(err, final) from None
                raise
        self.computed.append(name)
        StageCache.computed_log.append(name)
        self.times[name] = time.time() - t0
        logger.log(level, "stage %s: done in %.1f s -> %s", name, self.times[name], final)
        return final, fp
