"""The house rules, checked: the stage order is the import order (import-linter contracts in
setup.cfg, no cycle at any depth), no function over 100 lines, and setup.cfg ships every package."""

from __future__ import annotations

import ast
import configparser
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "recbole_lea"
MAX_FUNCTION_LINES = 100
#: import-linter's `lint-imports` command, run by this interpreter
LINT = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"


def _lint_imports(cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(cwd)}
    return subprocess.run(
        [sys.executable, "-c", LINT, "--config", str(cwd / "setup.cfg"), "--no-cache"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _copy_house(tmp_path: Path) -> Path:
    shutil.copytree(PACKAGE, tmp_path / "recbole_lea", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "setup.cfg", tmp_path / "setup.cfg")
    return tmp_path


def test_import_contracts_hold() -> None:
    done = _lint_imports(ROOT)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout


@pytest.mark.parametrize(
    ("module", "line"),
    [
        ("data/split.py", "from recbole_lea.experiments import compare"),  # against the layers
        ("le/cache.py", "from recbole_lea.le import build"),  # a cycle inside le/
    ],
)
def test_import_contracts_catch_an_upward_import_or_a_cycle(tmp_path: Path, module: str, line: str) -> None:
    house = _copy_house(tmp_path)
    path = house / "recbole_lea" / module
    path.write_text(path.read_text() + f"\n{line}  # noqa\n")
    done = _lint_imports(house)
    assert done.returncode != 0 and "BROKEN" in done.stdout, done.stdout[-3000:]


def test_no_function_is_longer_than_the_limit() -> None:
    long = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1  # type: ignore[operator]
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({lines} lines)")
    assert not long, f"split these by job (limit {MAX_FUNCTION_LINES} lines): {long}"


def test_setup_cfg_lists_every_package_and_maps_the_shipped_defaults() -> None:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    listed = set(cfg["options"]["packages"].split())
    folders = {
        ".".join(p.parent.relative_to(ROOT).parts) for p in PACKAGE.rglob("__init__.py") if "__pycache__" not in p.parts
    }
    assert listed == folders | {"recbole_lea.properties"}
    assert cfg["options"]["package_dir"].split() == ["recbole_lea.properties", "=", "properties"]
    assert (ROOT / "properties" / "overall.yaml").is_file() and not (PACKAGE / "properties").exists()
