"""Shared fixtures: tiny atomic datasets written per test session (no network, no LLM).

``write_tiny_dataset`` (re-exported from :mod:`recbole_lea.le.testing`) writes the base files;
``write_fake_le_dataset`` adds an LE folder with random LE fields and a sealed manifest."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd
import pytest
import torch

from recbole_lea.data.le_fields import lea_inter_header
from recbole_lea.le.testing import seal_le_dir, write_tiny_dataset

torch.set_num_threads(1)
os.environ.setdefault("HF_HUB_OFFLINE", "1")

TINY_MODEL_CONFIG = {
    "epochs": 1,
    "train_batch_size": 64,
    "eval_batch_size": 256,
    "hidden_size": 16,
    "embedding_size": 16,
    "inner_size": 16,
    "MAX_ITEM_LIST_LENGTH": 5,
    "stopping_step": 2,
    "show_progress": False,
    "switch_step": 3,
    "le_state_dim": 8,
    "seed": 7,
}


def write_fake_le_dataset(root: Path, base: pd.DataFrame, name: str = "tiny", dim: int = 8, seed: int = 1) -> Path:
    """A ``<name>-lea`` dataset with random LE fields in the contract's layout (no LLM involved)."""
    from recbole_lea.data.split import training_row_mask

    rng = np.random.default_rng(seed)
    train = training_row_mask(base, "user_id", "timestamp")
    n = len(base)
    items = base["item_id"].unique()
    df = base[["user_id", "item_id", "timestamp"]].copy()
    df["le_train"] = train.astype(float)
    df["le_reward"] = np.where(train, rng.normal(1.0, 0.5, n), 0.0)
    df["le_neg_id"] = np.where(train, rng.choice(items, n), df["item_id"])
    df["le_neg_reward"] = np.where(train, rng.normal(-1.0, 0.5, n), 0.0)
    df["le_aug_id"] = np.where(train, rng.choice(items, n), df["item_id"])
    df["le_aug_reward"] = np.where(train, rng.normal(0.5, 0.5, n), 0.0)
    df["le_aug_mask"] = np.where(train, (rng.random(n) < 0.7).astype(float), 0.0)
    states = rng.normal(size=(n, dim)) * train[:, None]
    nxt = rng.normal(size=(n, dim)) * train[:, None]
    df["le_state"] = [" ".join(f"{v:.5f}" for v in row) for row in states]
    df["le_next_state"] = [" ".join(f"{v:.5f}" for v in row) for row in nxt]
    lea = f"{name}-lea"
    folder = root / lea
    folder.mkdir(parents=True, exist_ok=True)
    df.to_csv(folder / f"{lea}.inter", sep="\t", index=False, header=list(lea_inter_header()))
    return seal_le_dir(folder)


@contextmanager
def benchmark_module(name: str) -> Iterator[ModuleType]:
    """Import ``benchmarks/<name>.py`` (a script folder, not a package) for the length of a block."""
    bench = str(Path(__file__).resolve().parents[1] / "benchmarks")
    sys.path.insert(0, bench)
    try:
        yield importlib.import_module(name)
    finally:
        sys.path.remove(bench)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """pytest records warnings per test with its own filters; install ours (the targeted filters
    of :func:`recbole_lea.compat.quiet_third_party_warnings`) in each test's context too, before
    its fixtures run (a module fixture that builds an LE runs inside the first test's context)."""
    from recbole_lea.compat import quiet_third_party_warnings

    quiet_third_party_warnings()


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("atomic")
    base = write_tiny_dataset(root)
    write_fake_le_dataset(root, base)
    return root


@pytest.fixture()
def tiny_config(tiny_root: Path, tmp_path: Path) -> dict:
    cfg = dict(TINY_MODEL_CONFIG)
    cfg["data_path"] = str(tiny_root)
    cfg["le_dir"] = str(tiny_root / "tiny-lea")
    cfg["checkpoint_dir"] = str(tmp_path / "saved")
    return cfg


@pytest.fixture()
def fake_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Environment of fake runs that Ray's workers import from this folder (a local Ray's processes
    inherit it at start): the test's folder as working directory, the calls log they append to
    (``RLEA_TEST_CALLS``, returned), this folder on ``PYTHONPATH``, and no Ray left running (every
    comparison or sweep starts its own node)."""
    monkeypatch.chdir(tmp_path)
    calls = tmp_path / "calls.txt"
    calls.touch()
    monkeypatch.setenv("RLEA_TEST_CALLS", str(calls))
    here = str(Path(__file__).resolve().parent)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in [here, os.environ.get("PYTHONPATH")] if p))
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        ray.shutdown()
    return calls
