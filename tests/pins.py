"""Metrics of tiny runs pinned before a refactor (`python tests/pins.py` records them).

The runs read the committed fixture dataset ``tests/fixtures/pins/`` (base files plus a fake LE
dataset with random LE fields), so the numbers depend only on the code under test. The LE build
pin uses the tiny random Llama of :mod:`recbole_lea.le.testing`.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from conftest import TINY_MODEL_CONFIG

from recbole_lea.le.testing import TINY_PROFILE

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "pins"
PINS_FILE = FIXTURES / "pins.json"
#: the test suite's tiny model config with 2 epochs (changing either means recording the pins again)
MODEL_CONFIG: dict[str, Any] = {k: v for k, v in {**TINY_MODEL_CONFIG, "epochs": 2}.items() if k != "le_state_dim"}
#: label -> (model, extra options)
RUNS: dict[str, tuple[str, dict[str, Any]]] = {
    "SASRec": ("SASRec", {}),
    "SNQN": ("SNQN", {}),
    "SA2C": ("SA2C", {}),
    "SA2C-GRU4Rec": ("SA2C", {"backbone": "GRU4Rec"}),
    "SNQN_LEA-LEASR": ("SNQN_LEA", {"variant": "LEASR"}),
    "SA2C_LEA-LEASR": ("SA2C_LEA", {"variant": "LEASR"}),
    "SA2C_LEA-LEASpR": ("SA2C_LEA", {"variant": "LEASpR"}),
    "SA2C_LEA-LER-both": ("SA2C_LEA", {"variant": "LER", "le_negatives": "both"}),
    "SA2C_LEA-LEA-GRU4Rec": ("SA2C_LEA", {"variant": "LEA", "backbone": "GRU4Rec"}),
}
#: the test suite's tiny LE profile and the fixture's item text (changing it means recording the pins again)
LE_PROFILE: dict[str, Any] = {
    **TINY_PROFILE,
    "item_text_fields": ["title"],
    "le_item_template": "[item] movie is titled {title}",
    "le_item_noun": "movie",
    "le_item_verb": "watched",
}


def model_pins(workdir: Path, run_fn: Any = None) -> dict[str, Any]:
    """Test metrics and per-epoch loss terms of every run in :data:`RUNS`."""
    if run_fn is None:
        from recbole_lea.quick_start import run_recbole_lea as run_fn
    out: dict[str, Any] = {}
    for label, (model, extra) in RUNS.items():
        cfg = {**MODEL_CONFIG, **extra, "data_path": str(FIXTURES), "checkpoint_dir": str(workdir / "saved")}
        if model.endswith("_LEA"):  # the fake LE folder of the fixture (8-dim states)
            cfg.update(le_dir=str(FIXTURES / "pin-lea"), le_state_dim=8)
        result = run_fn(model, "pin", config_dict=cfg, saved=False)
        out[label] = {"test_result": result["test_result"], "train_losses": result["train_losses"]}
    return out


def le_pins(workdir: Path, build_fn: Any = None) -> dict[str, float]:
    """Column sums of the LE atomic file a tiny build writes."""
    from recbole_lea.le.testing import save_tiny_llm

    if build_fn is None:
        from recbole_lea.le.build import build_le as build_fn
    data = workdir / "data"
    shutil.copytree(FIXTURES / "pin", data / "pin")
    llm = save_tiny_llm(workdir / "llm")
    out = build_fn("pin", data, dict(LE_PROFILE), {"le_model": str(llm), "le_cache_dir": str(workdir / "cache")})
    df = pd.read_csv(Path(out) / "pin-lea.inter", sep="\t", dtype=str, keep_default_na=False)
    df.columns = [c.split(":")[0] for c in df.columns]
    sums: dict[str, float] = {}
    for col in ("le_train", "le_reward", "le_neg_reward", "le_aug_reward", "le_aug_mask"):
        sums[col] = float(df[col].astype(float).sum())
    for col in ("le_state", "le_next_state"):
        sums[col] = float(np.abs(np.array([[float(v) for v in s.split()] for s in df[col]])).sum())
    sums["aug_equals_item"] = float((df["le_aug_id"] == df["item_id"]).sum())
    sums["neg_id_hash"] = float(sum(int(x[1:]) * (i % 7 + 1) for i, x in enumerate(df["le_neg_id"])))
    return sums


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        pins = {"models": model_pins(Path(tmp)), "le_build": le_pins(Path(tmp))}
    PINS_FILE.write_text(json.dumps(pins, indent=1, sort_keys=True))
    print(json.dumps(pins["le_build"], indent=1))
    sys.exit(0)
