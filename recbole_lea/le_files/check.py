"""Verifying an LE folder before a run reads it: every file against the sha256 its manifest
records, the columns against the field contract, and (optionally) the code version."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from recbole_lea.le.cache import verify_checksums
from recbole_lea.le.data import LEInputError
from recbole_lea.le_files.fields import LE_FIELD_NAMES
from recbole_lea.le_files.writer import MANIFEST


class LEDatasetMismatch(LEInputError):
    """An LE folder that is missing, modified, truncated or stale."""


def read_manifest(folder: Path) -> dict[str, Any]:
    path = folder / MANIFEST
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise LEDatasetMismatch(f"{path} not found: {folder} is not an LE folder written by the LE build") from None
    except (OSError, ValueError) as err:
        raise LEDatasetMismatch(f"{path} is unreadable ({err})") from None


def verify_le_dir(folder: Path, fix: str) -> dict[str, Any]:
    """The manifest of the LE folder ``folder`` (``<dataset>-lea/``) after checking that every
    file it lists is there with its recorded sha256 and that the .inter header has every LE field.
    ``fix`` is the command that rebuilds it, said in the error."""
    folder = Path(folder)
    if not folder.is_dir():
        raise LEDatasetMismatch(f"LE folder {folder} does not exist; {fix}")
    manifest = read_manifest(folder)
    checksums = manifest.get("checksums")
    if not isinstance(checksums, dict) or f"{folder.name}.inter" not in checksums:
        raise LEDatasetMismatch(
            f"{folder / MANIFEST} records no checksums of its files (written by an older version, or not an LE "
            f"folder named after its dataset); {fix}"
        )
    problem = verify_checksums(folder, checksums)
    if problem is not None:
        raise LEDatasetMismatch(f"LE folder {folder}: {problem}; {fix}")
    with open(folder / f"{folder.name}.inter", encoding="utf-8") as fh:
        header = [c.split(":")[0] for c in fh.readline().rstrip("\n").split("\t")]
    missing = [f for f in LE_FIELD_NAMES if f not in header]
    if missing:
        raise LEDatasetMismatch(f"{folder / (folder.name + '.inter')} lacks the LE field(s) {missing}; {fix}")
    return manifest
