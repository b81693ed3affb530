"""Refactors keep the numbers: tiny runs reproduce metrics and loss terms recorded before them.

``tests/fixtures/pins/pins.json`` was written by ``python tests/pins.py`` on commit 97361af, before
the option and cache rework; a change that alters any model's update, the RL data or the LE build
fails here. Loss terms renamed since then are compared under their new names.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pins import PINS_FILE, le_pins, model_pins

#: loss-term names of the recording -> names now (the LEA paper's: L_h, L_p, L_n, L_ah, L_aq)
RENAMED = {"ce": "l_h", "q_pos": "l_p", "q_neg": "l_n", "aug_sv": "l_ah", "aug_q": "l_aq"}


@pytest.fixture(scope="module")
def pins() -> dict:
    return json.loads(PINS_FILE.read_text())


def _renamed(terms: dict) -> dict:
    return {RENAMED.get(k, k): v for k, v in terms.items()}


def test_model_runs_reproduce_pinned_metrics(pins: dict, tmp_path: Path) -> None:
    now = model_pins(tmp_path)
    assert set(now) == set(pins["models"])
    for label, old in pins["models"].items():
        assert now[label]["test_result"] == old["test_result"], label
        assert len(now[label]["train_losses"]) == len(old["train_losses"]), label
        for epoch_now, epoch_old in zip(now[label]["train_losses"], old["train_losses"], strict=True):
            old_terms = _renamed(epoch_old)
            for name, value in old_terms.items():
                assert epoch_now.get(name) == pytest.approx(value, rel=1e-6, abs=1e-9), (label, name)


def test_le_build_reproduces_pinned_output(pins: dict, tmp_path: Path) -> None:
    now = le_pins(tmp_path)
    for name, value in pins["le_build"].items():
        assert now[name] == pytest.approx(value, rel=1e-5), name
