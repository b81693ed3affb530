"""Ray Tune sweeps on a tiny dataset: per-epoch VALIDATION reports, a crashing trial recorded as
failed while the sweep goes on, the best trial's TEST metrics, the heatmap, ASHA, devices."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from test_experiments import TINY, write_tiny

from recbole_lea.experiments import tune as lea_tune

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def ray_local() -> Iterator[None]:
    # the way run_sweep starts a local Ray (loopback only; tests/test_tune_loopback.py checks that)
    assert lea_tune.start_local_ray(num_cpus=2, log_to_driver=False) == "127.0.0.1"
    yield
    ray.shutdown()


@pytest.fixture()
def data_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return write_tiny(tmp_path / "data")


def test_grid_sweep_records_failures_and_best(ray_local: None, data_root: Path, tmp_path: Path) -> None:
    params_file = tmp_path / "grid.hyper"
    params_file.write_text(
        "# 2 x 2 grid; n_heads=3 does not divide hidden_size=8, so those trials raise\n"
        "n_heads choice [1, 3]\n"
        "hidden_dropout_prob choice [0.1, 0.3]   # second axis of the heatmap\n"
    )
    summary = lea_tune.run_sweep(
        model="SASRec",
        dataset="tiny",
        params_file=params_file,
        config_dict=dict(TINY),
        data_path=str(data_root),
        output_dir=tmp_path / "sweep",
        max_concurrent=2,
        heatmap=("n_heads", "hidden_dropout_prob"),
        quiet=True,
    )
    out = tmp_path / "sweep"
    with open(out / "trials.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 4
    failed = [r for r in rows if r["status"] == "ERROR"]
    ok = [r for r in rows if r["status"] == "OK"]
    assert len(failed) == 2 and len(ok) == 2
    assert all(r["n_heads"] == "3" and "attention heads" in r["error"] for r in failed)
    assert all(r["epochs_reported"] == "2" and r["valid_ndcg@10"] for r in ok)
    assert not any("test" in column for column in rows[0])  # selection never sees test metrics
    best = json.loads((out / "best.json").read_text())
    assert best["best_params"]["n_heads"] == 1
    assert best["best_valid_score"] == max(float(r["valid_score"]) for r in ok)
    assert set(best["best_test_result"]) >= {"hit@10", "ndcg@10"}
    assert summary["n_error"] == 2 and summary["n_ok"] == 2
    assert Path(summary["heatmap_png"]).is_file()
    # each trial reported VALIDATION metrics after every epoch, nothing from the test set
    best_dir = Path(best["best_trial_dir"])
    progress = pd.read_csv(best_dir / "progress.csv")
    assert len(progress) == 2 and "valid_ndcg@10" in progress.columns
    assert not [c for c in progress.columns if c.startswith("test")]
    assert (best_dir / "run" / "curves.png").is_file()


def test_asha_random_search(ray_local: None, data_root: Path, tmp_path: Path) -> None:
    params_file = tmp_path / "random.hyper"
    params_file.write_text("learning_rate loguniform -9.2,-2.3\nhidden_dropout_prob choice [0.1, 0.2]\n")
    summary = lea_tune.run_sweep(
        model="GRU4Rec",
        dataset="tiny",
        params_file=params_file,
        config_dict={**TINY, "epochs": 3},
        data_path=str(data_root),
        output_dir=tmp_path / "asha",
        search="random",
        num_samples=3,
        scheduler="asha",
        max_concurrent=2,
        quiet=True,
    )
    assert summary["n_trials"] == 3 and summary["n_error"] == 0
    assert summary["n_ok"] + summary["n_stopped_early"] == 3
    assert summary["best_params"] is not None
    lrs = [row["learning_rate"] for row in summary["trials"]]
    assert all(1e-4 <= lr <= 0.1 for lr in lrs) and len(set(lrs)) == 3


def test_device_options_follow_ray() -> None:
    assert lea_tune.device_options([]) == {"use_gpu": False, "gpu_id": ""}
    assert lea_tune.device_options(["1"]) == {"use_gpu": True, "gpu_id": "1"}
    assert lea_tune.device_options([0, 2]) == {"use_gpu": True, "gpu_id": "0,2"}


def test_ray_temp_dir_short_link(tmp_path: Path) -> None:
    deep = tmp_path / ("x" * 60) / "out"
    path = lea_tune._ray_temp_dir(deep)
    assert len(path) <= 36 and Path(path).resolve() == (deep / "ray_tmp").resolve()


def test_lea_weight_grid_heatmap(
    ray_local: None, tiny_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The paper's Figure 4 sweep (w_ah x w_aq of SA2C_LEA) on a fake-LE tiny dataset."""
    from conftest import TINY_MODEL_CONFIG

    monkeypatch.chdir(tmp_path)
    params_file = tmp_path / "w.hyper"
    params_file.write_text("w_ah choice [0.01, 0.1]\nw_aq choice [0.01, 0.1]\n")
    summary = lea_tune.run_sweep(
        model="SA2C_LEA",
        dataset="tiny",
        params_file=params_file,
        config_dict={**TINY_MODEL_CONFIG, "variant": "LEASR", "le_dir": str(tiny_root / "tiny-lea")},
        data_path=str(tiny_root),
        output_dir=tmp_path / "w",
        max_concurrent=2,
        quiet=True,
    )
    assert summary["n_ok"] == 4, [r["error"] for r in summary["trials"]]
    assert Path(summary["heatmap_png"]).name == "heatmap_w_ah_w_aq.png"
    assert {r["w_ah"] for r in summary["trials"]} == {0.01, 0.1}
    assert set(summary["best_test_result"]) == {f"{m}@{k}" for m in ("hit", "ndcg") for k in (5, 10, 20)}
