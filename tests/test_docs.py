"""The docs stay true to the repository: module paths exist, relative links resolve, the README stays short."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PATH_PREFIXES = ("recbole_lea/", "properties/", "benchmarks/", "tests/", "docs/")
BACKTICKED = re.compile(r"`([^`\s]+)`")
LINK = re.compile(r"\]\(([^)\s]+)\)")


def markdown_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def exists(path: str) -> bool:
    """A path, or for a pattern such as ``properties/le/*.yaml`` or ``properties/dataset/<name>.yaml``
    its literal folder."""
    literal = re.split(r"[<>*{}\[]", path, maxsplit=1)[0]
    if literal != path:
        return (ROOT / literal).parent.is_dir() if not literal.endswith("/") else (ROOT / literal).is_dir()
    return (ROOT / path.rstrip("/")).exists()


def test_architecture_names_only_paths_that_exist() -> None:
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    named = {m.group(1) for m in BACKTICKED.finditer(text) if m.group(1).startswith(PATH_PREFIXES)}
    assert named, "docs/architecture.md names no repository path"
    missing = sorted(p for p in named if not exists(p))
    assert not missing, f"docs/architecture.md names paths that do not exist: {missing}"


def test_relative_links_point_to_existing_files() -> None:
    broken = []
    for doc in markdown_files():
        for m in LINK.finditer(doc.read_text(encoding="utf-8")):
            target = m.group(1).split("#", 1)[0]
            if not target or re.match(r"^[a-z][a-z0-9+.-]*:", target):  # anchors, http(s), mailto
                continue
            if not (doc.parent / target).exists():
                broken.append(f"{doc.relative_to(ROOT)}: {m.group(1)}")
    assert not broken, "relative links to missing files:\n" + "\n".join(broken)


def test_readme_is_a_quick_start() -> None:
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) < 130, f"README.md has {len(lines)} lines; move details to docs/"
