"""Tuned baselines (``run_compare_lea.py --tune_trials N``): each model tuned on validation over
its own search space with the same number of trials, the seeds then run its best configuration,
the table says which; a tuning is stored and read back, keyed on what changes it.

The fake run (``tuned_run``) runs inside Ray Tune's workers: they import this module, so its
folder goes on ``PYTHONPATH`` before a test starts Ray.
"""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path
from typing import Any

import pytest
from conftest import TINY_MODEL_CONFIG

from recbole_lea.errors import ConfigError
from recbole_lea.experiments import compare, tuning

ray = pytest.importorskip("ray")
BEST_LR = 3e-3


def tuned_run(model: str, dataset: str, **kwargs: Any) -> dict[str, Any]:
    """Validation peaks at learning_rate = BEST_LR; the TEST metric rises away from it (a selection
    that read test metrics would pick another configuration). Every call is logged."""
    config = kwargs["config_dict"]
    lr = float(config.get("learning_rate", 1e-3))
    with open(os.environ["RLEA_TEST_CALLS"], "a") as fh:
        fh.write(f"{model} {config['seed']} {lr!r}\n")
    valid = 1.0 / (1.0 + abs(math.log(lr / BEST_LR)))
    test = 1.0 - valid + 0.001 * int(config["seed"])
    kwargs["callback_fn"](0, valid, {"ndcg@10": valid})
    return {
        "best_valid_score": valid,
        "best_valid_result": {"ndcg@10": valid},
        "test_result": {key: test for key, _ in compare.TABLE_METRICS},
        "config": {"eval_protocol": "loo", "seed": config["seed"], "valid_metric": "NDCG@10"},
        "epoch_times": [0.01],
    }


def _kwargs(tiny_root: Path, out: Path, models: list[str], **extra: Any) -> dict[str, Any]:
    extra.setdefault("seeds", [1, 2])
    return dict(
        dataset="tiny",
        models=models,
        config_dict=dict(TINY_MODEL_CONFIG),
        data_path=str(tiny_root),
        output_dir=out,
        run_fn=tuned_run,
        quiet=True,
        tune_trials=3,
        **extra,
    )


def _trial_lrs(folder: Path) -> list[float]:
    with open(folder / "trials.csv") as fh:
        return sorted(float(row["learning_rate"]) for row in csv.DictReader(fh))


def test_search_spaces_are_shipped_and_fall_back(tmp_path: Path) -> None:
    for model in ("SASRec", "GRU4Rec", "SNQN", "SA2C", "SNQN_LEA", "SA2C_LEA"):
        assert tuning.space_file(model, tuning.TUNE_SPACES).name == f"{model}.hyper"
    assert tuning.space_file("BPR", tuning.TUNE_SPACES).name == "default.hyper"
    with pytest.raises(ConfigError, match="--tune_spaces .* no default.hyper"):
        tuning.space_file("BPR", tmp_path)


def test_tuned_comparison(tiny_root: Path, tmp_path: Path, fake_env: Path) -> None:
    out = tmp_path / "cmp"
    result = compare.run_comparison(**_kwargs(tiny_root, out, ["SASRec", "GRU4Rec:learning_rate=0.002"]))
    assert not ray.is_initialized()
    sasrec, gru = result["tuned"]
    # SASRec: 4 trials over its space, the best by VALIDATION (closest to BEST_LR), not by test
    folder = Path(sasrec.folder)
    lrs = _trial_lrs(folder)
    assert len(lrs) == 3 and sasrec.n_ok == 3
    best = min(lrs, key=lambda lr: abs(math.log(lr / BEST_LR)))
    assert sasrec.params["learning_rate"] == pytest.approx(best)
    assert set(sasrec.params) == {"learning_rate", "hidden_dropout_prob", "attn_dropout_prob"}
    # the spec's own learning rate is fixed: GRU4Rec tunes only its dropout
    assert gru.fixed == ["learning_rate"] and set(gru.params) == {"dropout_prob"}
    runs = {(r["label"], r["seed"]): r for r in result["runs"]}
    assert runs[("SASRec", 1)]["config_dict"]["learning_rate"] == pytest.approx(best)
    assert runs[("GRU4Rec:learning_rate=0.002", 2)]["config_dict"]["learning_rate"] == 0.002
    assert runs[("SASRec", 2)]["config_dict"]["hidden_dropout_prob"] == sasrec.params["hidden_dropout_prob"]
    # the table says which configuration each row used
    table = (out / "table.md").read_text()
    assert "Tuned configurations" in table and f"learning_rate={best:.4g}" in table
    assert "| GRU4Rec:learning_rate=0.002 | 3 (3) |" in table and "| learning_rate |" in table
    # tuning trials ran with the tuning seed, apart from the test seeds
    seeds = [int(line.split()[1]) for line in fake_env.read_text().splitlines()]
    assert seeds.count(2019) == 6 and seeds.count(1) == 2 and seeds.count(2) == 2

    # again: tunings and runs read back, nothing runs
    before = fake_env.read_text()
    again = compare.run_comparison(**_kwargs(tiny_root, out, ["SASRec", "GRU4Rec:learning_rate=0.002"]))
    assert fake_env.read_text() == before
    assert all(t.reused for t in again["tuned"])
    assert [t.params for t in again["tuned"]] == [t.params for t in result["tuned"]]
    # --stored reads the stored tunings too
    stored = compare.run_comparison(**_kwargs(tiny_root, out, ["SASRec", "GRU4Rec:learning_rate=0.002"], stored=True))
    assert [r["key"] for r in stored["runs"]] == [r["key"] for r in result["runs"]]

    # the same tuning seed samples the same configurations in a fresh folder
    same = compare.run_comparison(**_kwargs(tiny_root, tmp_path / "same", ["SASRec"], seeds=[1]))
    assert _trial_lrs(Path(same["tuned"][0].folder)) == lrs


def test_stored_without_a_tuning_and_bad_spaces(tiny_root: Path, tmp_path: Path, fake_env: Path) -> None:
    with pytest.raises(ConfigError, match="has no stored tuning"):
        compare.run_comparison(**_kwargs(tiny_root, tmp_path / "none", ["SASRec"], stored=True))
    with pytest.raises(ConfigError, match="--tune_spaces .*no such folder"):
        compare.run_comparison(**_kwargs(tiny_root, tmp_path / "none", ["SASRec"], tune_spaces=str(tmp_path / "x")))
    assert fake_env.read_text() == ""


def test_tuning_key_follows_its_inputs(tiny_root: Path, tmp_path: Path) -> None:
    files = [str(compare.DEFAULTS_FILE)]
    config = {**TINY_MODEL_CONFIG, "data_path": str(tiny_root)}
    space = tuning.space_file("SASRec", tuning.TUNE_SPACES)
    budget = tuning.TuneBudget(trials=4, seed=1)

    def key(**change: Any) -> str:
        return tuning.tune_key(
            change.get("model", "SASRec"),
            change.get("overrides", {}),
            "tiny",
            files,
            change.get("config", config),
            change.get("space", space),
            change.get("budget", budget),
        )

    base = key()
    assert key() == base
    other_space = tmp_path / "SASRec.hyper"
    other_space.write_text("learning_rate loguniform -9,-5\n")
    changed = [
        key(budget=tuning.TuneBudget(trials=5, seed=1)),
        key(budget=tuning.TuneBudget(trials=4, seed=2)),
        key(overrides={"hidden_dropout_prob": 0.3}),
        key(config={**config, "epochs": 2}),
        key(space=other_space),
        key(model="GRU4Rec"),
    ]
    assert base not in changed and len(set(changed)) == len(changed)


def test_a_modified_stored_tuning_is_not_trusted(tmp_path: Path) -> None:
    summary = {"best_params": {"learning_rate": 0.003}, "best_valid_score": 0.5, "n_trials": 3, "n_ok": 3}
    stored = tuning._store_tuning(tmp_path, summary)
    assert tuning.stored_tuning(tmp_path) == stored
    edited = json.loads((tmp_path / "tuning.json").read_text())
    edited["best_params"]["learning_rate"] = 0.01
    (tmp_path / "tuning.json").write_text(json.dumps(edited))
    assert tuning.stored_tuning(tmp_path) is None
    (tmp_path / "tuning.json").write_text("{")
    assert tuning.stored_tuning(tmp_path) is None
