"""``python -m recbole_lea.datasets``: every command's ``--help`` works in a fresh process."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from recbole_lea.datasets.cli import build_parser

REPO = Path(__file__).resolve().parents[1]


def subcommands() -> list[str]:
    """Every sub-command the parser knows (so a new converter is covered without editing this list)."""
    for action in build_parser()._actions:
        if isinstance(action, argparse._SubParsersAction):
            return sorted(action.choices)
    raise AssertionError("python -m recbole_lea.datasets has no sub-commands")


def test_every_converter_is_listed() -> None:
    assert {"lcrec", "amazon", "lfm1b", "ml100k", "csv", "stats"} <= set(subcommands())


@pytest.mark.parametrize("command", [None, *subcommands()])
def test_help_exits_0_without_a_traceback(command: str | None) -> None:
    argv = [sys.executable, "-m", "recbole_lea.datasets", *([command] if command else []), "--help"]
    proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and "Error" not in proc.stderr
    assert proc.stdout.startswith("usage: python -m recbole_lea.datasets")
    if command not in (None, "stats"):
        assert "--max-bad-lines N|P%" in proc.stdout and "(default 0.1%)" in proc.stdout
