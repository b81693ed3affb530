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
from collections.abc import Callable
from pathlib import Path
from typing import Any

from recbole_lea.errors import ConfigError
from recbole_lea.files import folder_checksums, locked, remove_stale_tmp, tmp_name, verify_checksums

logger = logging.getLogger(__name__)

_LOG_METHODS = frozenset({"debug", "info", "warning", "error", "exception", "critical", "log"})


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
    """The modules whose code decides LE outputs: the LE build with its file writer, the LE field
    contract and the split (not the test helpers, the CLI or this cache, which decides where and
    whether an artifact is computed, not what it holds)."""
    pkg = Path(__file__).resolve().parents[1]
    skip = ("testing.py", "__main__.py", "__init__.py", "cache.py")
    le = [p for p in (pkg / "le").glob("*.py") if p.name not in skip]
    return sorted(le) + [pkg / "data" / "le_fields.py", pkg / "data" / "split.py"]


def code_version() -> str:
    """Fingerprint of the LE build code; part of every stage's key and of the LE manifest."""
    h = hashlib.sha256()
    for p in code_files():
        h.update(p.name.encode())
        h.update(source_fingerprint(p.read_text(encoding="utf-8")).encode())
    return h.hexdigest()


def sha_of(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


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
