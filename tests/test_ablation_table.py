"""benchmarks/le_ablation_table.py: arms from different run folders join into one table whose
protocol line is the runs' own, ``--ignore`` leaves an option out of the match, and the LE each arm
read is named by its files."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import benchmark_module

from recbole_lea.experiments import compare

SEQUENCE = {"eval_protocol": "sequence", "sequence_split_ratios": [0.8, 0.1, 0.1], "split_seed": 2020}


@pytest.fixture(scope="module")
def table():  # type: ignore[no-untyped-def]
    with benchmark_module("le_ablation_table") as module:
        yield module


def _store(folder: Path, label: str, seed: int, base: float, le_dir: str | None) -> None:
    options: dict[str, Any] = {"epochs": 16, "eval_protocol": "sequence", "seed": seed, "data_path": "x"}
    inputs: dict[str, Any] = {"code": "c"}
    if le_dir is not None:
        options["le_dir"] = le_dir
        inputs["le"] = {"d-lea.inter": le_dir}
    record = {
        "label": label,
        "seed": seed,
        "status": "ok",
        "config_dict": options,
        "config": SEQUENCE,
        "n_queries": {"test": 40, "valid": 41},
        "inputs": inputs,
        "test_result": {key: base + 0.001 * seed for key, _ in compare.TABLE_METRICS},
        "epoch_times": [1.0],
    }
    runs = folder / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    (runs / f"{label}__seed{seed}.json").write_text(json.dumps(record))


def test_arms_from_two_folders(table, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    old, new = tmp_path / "old", tmp_path / "new"
    for seed in (1, 2, 3):
        _store(old, "SA2C", seed, 0.10, None)
        _store(new, "SA2C_LEA:variant=LER", seed, 0.20, "/le/a")
    _store(new, "SA2C_LEA:variant=LER", 4, 0.20, "/le/a")  # a seed the other arm lacks: left out
    out = tmp_path / "table.md"
    argv = ["t", "--baseline", "SA2C", "--where", "epochs=16", "eval_protocol=sequence", "--dataset", "d"]
    arms = ["--arm", f"SA2C={old}:SA2C", "--arm", f"LER={new}:SA2C_LEA:variant=LER", "--out", str(out)]

    monkeypatch.setattr(sys, "argv", [*argv, *arms])
    with pytest.raises(SystemExit, match="no finished run of 'SA2C_LEA:variant=LER'"):
        table.main()  # le_dir is an option of the LER runs only

    monkeypatch.setattr(sys, "argv", [*argv, "--ignore", "le_dir", *arms])
    table.main()
    text = out.read_text()
    assert "over 3 seed(s) (1, 2, 3)" in text
    assert "sequence protocol (SA2C): whole sequences split 0.8/0.1/0.1 with split_seed 2020" in text
    assert "40 test and 41 validation queries per run" in text
    assert "leave-one-out" not in text
    assert "not compared: le_dir" in text
    assert "spec `SA2C`, no LE" in text
    assert "spec `SA2C_LEA:variant=LER`, LE files " in text
