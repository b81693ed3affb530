"""Experiments: params files, the sequence protocol, comparison tables, caching, determinism,
concurrent drivers and plots. Tiny data (30 users x 8 items, 40 items), tiny models, 1-2 epochs."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from recbole_lea.data import split as protocol
from recbole_lea.data.split import sequence_parts, split_counts
from recbole_lea.errors import ConfigError
from recbole_lea.experiments import compare, params, plots, runner

REPO = Path(__file__).resolve().parents[1]
TINY = {
    "epochs": 2,
    "hidden_size": 8,
    "embedding_size": 8,
    "inner_size": 8,
    "train_batch_size": 64,
    "eval_batch_size": 64,
}


def write_tiny(root: Path, name: str = "tiny", users: int = 30, per_user: int = 8, items: int = 40) -> Path:
    rng = np.random.RandomState(0)
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["user_id:token\titem_id:token\ttimestamp:float"]
    for u in range(users):
        for t, i in enumerate(rng.choice(items, per_user, replace=False)):
            lines.append(f"u{u}\ti{i}\t{1000 + 100 * u + t}")
    (folder / f"{name}.inter").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture()
def data_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)  # RecBole's log/ and log_tensorboard/ land here
    return write_tiny(tmp_path / "data")


# ------------------------------------------------------------------------------ params files


def test_params_file_syntax_and_ray_space(tmp_path: Path) -> None:
    from ray import tune

    text = """
# a comment line
w_ah choice [0.01, 0.1, 1.0]   # trailing comment
w_aq choice [0.001,0.01]
learning_rate loguniform -9.2, -4.6
dropout_prob uniform 0.0,0.5
neg_num quniform 1,10,1
"""
    f = tmp_path / "p.hyper"
    f.write_text(text)
    specs = params.parse_params_file(f)
    assert [s.name for s in specs] == ["w_ah", "w_aq", "learning_rate", "dropout_prob", "neg_num"]
    assert specs[0].values == [0.01, 0.1, 1.0]
    assert params.grid_size(specs) == 6
    grid = params.to_ray_space(specs, "grid")
    assert grid["w_ah"] == tune.grid_search([0.01, 0.1, 1.0])
    random_space = params.to_ray_space(specs, "random")
    assert random_space["w_ah"].categories == [0.01, 0.1, 1.0]
    # loguniform bounds are natural logs, as in RecBole/hyperopt
    lu = random_space["learning_rate"]
    assert math.isclose(lu.lower, math.exp(-9.2)) and math.isclose(lu.upper, math.exp(-4.6))
    assert random_space["neg_num"].sampler.q == 1.0


@pytest.mark.parametrize(
    "line",
    ["w_ah choice", "w_ah pick [1]", "w_ah uniform 1,0", "w_ah choice []", "w_ah choice [__import__('os')]"],
)
def test_params_file_rejects_bad_lines(line: str) -> None:
    with pytest.raises(ValueError):
        params.parse_params_text(line)


def test_shipped_params_files_parse_and_resolve_by_name() -> None:
    from recbole_lea.errors import ConfigError
    from recbole_lea.options import PROPERTIES

    files = sorted((PROPERTIES / "experiments").glob("*.hyper"))
    assert {f.stem for f in files} >= {"w_grid", "w_grid_paper", "reward_scale"}
    for f in files:
        assert params.parse_params_file(f) == params.parse_params_file(f.stem), f
    with pytest.raises(ConfigError, match="no_such_grid not found.*w_grid"):
        params.parse_params_file("no_such_grid")


# ------------------------------------------------------------------------------ protocol


def _recbole_sequential_dataset(data_root: Path, monkeypatch: pytest.MonkeyPatch, seed: int = 2020) -> Any:
    from recbole.config import Config
    from recbole.data.dataset import SequentialDataset

    from recbole_lea import compat

    compat.apply()  # numpy 2 aliases RecBole's Config reads (run alone, no other test applied them)
    monkeypatch.setattr(sys, "argv", ["pytest"])  # RecBole's Config parses sys.argv
    config = Config(
        model="SASRec",
        dataset="tiny",
        config_dict={
            "data_path": str(data_root),
            "seed": seed,
            "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
            "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "mode": "full"},
            "train_neg_sample_args": None,
            "loss_type": "CE",
        },
    )
    ds = SequentialDataset(config)
    ds._change_feat_format()  # what build() does first: augmentation
    return ds


def test_split_by_sequence_whole_users(data_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ds = _recbole_sequential_dataset(data_root, monkeypatch)
    total = len(ds.inter_feat)
    assert total == 30 * 7  # RecBole never makes a user's first interaction a target
    parts = protocol.split_by_sequence(ds, [0.8, 0.1, 0.1], split_seed=2020)
    users = [set(p.inter_feat[ds.uid_field].numpy().tolist()) for p in parts]
    assert [len(u) for u in users] == [24, 3, 3]
    assert not (users[0] & users[1]) and not (users[0] & users[2]) and not (users[1] & users[2])
    assert sum(len(p.inter_feat) for p in parts) == total
    for part, part_users in zip(parts[1:], users[1:]):
        # every (non-first) interaction of a held-out user is a query
        assert len(part.inter_feat) == 7 * len(part_users)
    # rows keep (user, time) order inside a part
    uid = parts[0].inter_feat[ds.uid_field].numpy()
    assert (np.diff(uid) >= 0).all()
    # seeded: same split seed -> same users; another seed -> another split
    again = protocol.sequence_split_index(ds, [0.8, 0.1, 0.1], 2020)
    assert set(ds.inter_feat[ds.uid_field].numpy()[again[2]].tolist()) == users[2]
    other = protocol.sequence_split_index(ds, [0.8, 0.1, 0.1], 7)
    assert set(ds.inter_feat[ds.uid_field].numpy()[other[2]].tolist()) != users[2]
    # the split is a property of the raw data: the same raw users as the mirror of the LE build
    raw_test = set(ds.id2token(ds.uid_field, sorted(users[2])).tolist())
    frame = pd.read_csv(data_root / "tiny" / "tiny.inter", sep="\t", dtype=str)
    mirror = sequence_parts(frame["user_id:token"].to_numpy(), [0.8, 0.1, 0.1], 2020)
    assert set(frame["user_id:token"][mirror == 2]) == raw_test


def test_split_counts_small() -> None:
    assert split_counts(30, [0.8, 0.1, 0.1]) == [24, 3, 3]
    assert split_counts(5, [0.8, 0.1, 0.1]) == [3, 1, 1]  # each held-out part non-empty
    assert split_counts(10, [1, 0, 0]) == [10, 0, 0]


def test_split_by_sequence_needs_augmented_dataset() -> None:
    class Fake:
        inter_feat = {"user_id": []}

    with pytest.raises(TypeError):
        protocol.split_by_sequence(Fake(), [0.8, 0.1, 0.1])


# ------------------------------------------------------------------------------ statistics


def _fake_record(label: str, seed: int, base: float) -> dict[str, Any]:
    return {
        "label": label,
        "seed": seed,
        "status": "ok",
        "test_result": {key: base + 0.001 * seed for key, _ in compare.TABLE_METRICS},
        "epoch_times": [1.0, 2.0],
        "wall_time_s": 3.0,
    }


def test_summary_ttest_marks_and_ranks() -> None:
    from scipy.stats import ttest_rel

    seeds = [1, 2, 3, 4]
    rng = np.random.RandomState(1)
    records = []
    for s in seeds:
        records.append(_fake_record("BASE", s, 0.10))
        better = _fake_record("GOOD", s, 0.20)
        better["test_result"] = {k: v + 0.001 * rng.rand() for k, v in better["test_result"].items()}
        records.append(better)
        records.append(_fake_record("MID", s, 0.15 + 0.02 * rng.randn()))
    rows = compare.summarise(records, ["BASE", "GOOD", "MID"], seeds, "BASE", 0.01)
    good = next(r for r in rows if r["model"] == "GOOD")
    base = next(r for r in rows if r["model"] == "BASE")
    a = [r["test_result"]["ndcg@10"] for r in records if r["label"] == "GOOD"]
    b = [r["test_result"]["ndcg@10"] for r in records if r["label"] == "BASE"]
    assert math.isclose(good["ndcg@10_p"], ttest_rel(a, b).pvalue)
    assert good["ndcg@10_sig"] and good["ndcg@10_rank"] == 1
    assert math.isclose(good["ndcg@10_std"], float(np.std(a, ddof=1)))
    assert not base["ndcg@10_sig"] and math.isnan(base["ndcg@10_p"])
    md = compare.render_markdown(rows, "toy", seeds, "BASE", 0.01, ["leave-one-out"])
    good_line = next(line for line in md.splitlines() if line.startswith("| GOOD"))
    assert "**" in good_line and "*" in good_line.replace("**", "")
    assert "<u>" in next(line for line in md.splitlines() if line.startswith("| MID"))


def test_paired_pvalue_edge_cases() -> None:
    assert math.isnan(compare.paired_pvalue([0.1], [0.2]))
    assert math.isnan(compare.paired_pvalue([0.1, 0.2], [0.1, 0.2]))
    assert math.isnan(compare.paired_pvalue([0.2, 0.3], [0.1, 0.2]))  # a constant difference: no test


def test_model_spec_parsing() -> None:
    spec = compare.parse_model_spec("SA2C_LEA:variant=LEASR,w_ah=0.1,topk=[5,10]")
    assert spec.model == "SA2C_LEA"
    assert spec.overrides == {"variant": "LEASR", "w_ah": 0.1, "topk": [5, 10]}
    assert ":" not in spec.slug and "," not in spec.slug
    assert compare.parse_model_spec("SASRec").overrides == {}
    with pytest.raises(ValueError):
        compare.parse_model_spec("SASRec:oops")
    assert compare.seed_list(3) == [2020, 2021, 2022]
    with pytest.raises(ValueError, match="--base_seed 2026 --seeds 1"):
        compare.seed_list(2026)  # a seed typed where a count belongs
    assert len(compare.seed_list(compare.MAX_SEED_COUNT)) == compare.MAX_SEED_COUNT


def test_compare_cli_rejects_a_seed_typed_as_count(capsys: pytest.CaptureFixture[str]) -> None:
    from recbole_lea.experiments.cli import compare_main

    with pytest.raises(SystemExit) as e:
        compare_main(["--dataset", "ml-100k", "--models", "SASRec", "--seeds", "2026"])
    assert e.value.code == 2
    assert "--base_seed 2026 --seeds 1" in capsys.readouterr().err


# ------------------------------------------------------------------------------ real runs


def test_same_seed_gives_identical_metrics(data_root: Path, tmp_path: Path) -> None:
    cfg = {**TINY, "data_path": str(data_root), "seed": 11}
    first = runner.run_one("SASRec", "tiny", None, cfg, tmp_path / "r1")
    second = runner.run_one("SASRec", "tiny", None, cfg, tmp_path / "r2")
    assert first["status"] == "ok", first.get("traceback")
    assert first["test_result"] == second["test_result"]
    assert first["valid_curve"] == second["valid_curve"]
    assert len(first["valid_curve"]) == 2 and len(first["epoch_times"]) == 2
    assert Path(first["curves_png"]).is_file()


def test_failed_run_is_recorded(data_root: Path, tmp_path: Path) -> None:
    cfg = {**TINY, "data_path": str(data_root), "n_heads": 3}  # 8 % 3 != 0: SASRec raises
    record = runner.run_one("SASRec", "tiny", None, cfg, tmp_path / "bad")
    assert record["status"] == "failed"
    assert "attention heads" in record["error"]


def test_comparison_table_and_cache(data_root: Path, tmp_path: Path) -> None:
    calls: list[str] = []
    real = runner.resolve_run_fn()

    def counting(model: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        calls.append(model)
        return real(model, *args, **kwargs)

    kwargs: dict[str, Any] = dict(
        dataset="tiny",
        models=["SASRec", "GRU4Rec", "SASRec:n_heads=2", "SASRec:n_heads=3"],
        seeds=[1, 2],
        baseline="GRU4Rec",
        config_dict={**TINY, "epochs": 1},
        data_path=str(data_root),
        output_dir=tmp_path / "cmp",
        run_fn=counting,
    )
    out = compare.run_comparison(**kwargs)
    assert len(calls) == 8
    md = (tmp_path / "cmp" / "table.md").read_text()
    assert "leave-one-out" in md and "| GRU4Rec (baseline) |" in md and "**" in md and "<u>" in md
    assert "SASRec:n_heads=3, seed 1" in md  # failed runs are listed, not averaged
    rows = {r["model"]: r for r in out["rows"]}
    assert rows["SASRec"]["n_seeds"] == 2 and rows["SASRec:n_heads=3"]["n_seeds"] == 0
    table = (tmp_path / "cmp" / "table.csv").read_text().splitlines()
    assert table[0].startswith("model,n_seeds,hit@5_mean,hit@5_std,hit@5_p")
    runs_csv = (tmp_path / "cmp" / "runs.csv").read_text()
    assert "epoch_times_s" in runs_csv
    jsons = sorted((tmp_path / "cmp" / "runs").glob("*.json"))
    assert len(jsons) == 8
    assert json.loads(jsons[0].read_text())["epoch_times"]
    # second call: finished runs are read back; only the failed ones are retried
    calls.clear()
    again = compare.run_comparison(**kwargs)
    assert sorted(calls) == ["SASRec", "SASRec"]
    assert sum(bool(r.get("cached")) for r in again["runs"]) == 6
    assert again["markdown"] == out["markdown"]
    # --stored: nothing runs, records are matched by spec, seed and options (not by code version)
    calls.clear()
    ok_kwargs = dict(kwargs, models=["SASRec", "GRU4Rec"])
    stored = compare.run_comparison(**ok_kwargs, stored=True)
    assert calls == [] and stored["markdown"] == compare.run_comparison(**ok_kwargs)["markdown"]
    with pytest.raises(ConfigError, match="no finished record of SASRec with seed 1"):
        compare.run_comparison(**dict(ok_kwargs, config_dict={**TINY, "epochs": 2}), stored=True)


def test_sequence_protocol_end_to_end(data_root: Path, tmp_path: Path) -> None:
    cfg = {**TINY, "epochs": 1, "data_path": str(data_root), "eval_protocol": "sequence"}
    record = runner.run_one("SASRec", "tiny", None, cfg, tmp_path / "seq")
    assert record["status"] == "ok", record.get("traceback")
    # 3 held-out users x 7 queries: every hit rate is a multiple of 1/21
    for key, value in record["test_result"].items():
        if key.startswith("hit"):
            assert abs(value * 21 - round(value * 21)) < 0.01, (key, value)
    assert "sequence protocol" in protocol.protocol_description(record["config"])
    assert "split_seed 2020" in protocol.protocol_description(record["config"])
    assert record["n_queries"] == {"valid": 21, "test": 21}


def test_two_drivers_at_once_share_cache_safely(data_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "cmp2"
    common = [
        "--dataset=tiny",
        f"--data_path={data_root}",
        "--seeds",
        "5",
        "6",
        f"--output_dir={out}",
        "--epochs=1",
        "--hidden_size=8",
        "--embedding_size=8",
        "--inner_size=8",
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [
        subprocess.Popen(
            [sys.executable, str(REPO / "run_compare_lea.py"), "--models", *models, *common],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=tmp_path,
            env=env,
        )
        for models in (["GRU4Rec", "SASRec"], ["SASRec", "GRU4Rec"])
    ]
    outputs = [p.communicate(timeout=240)[0] for p in procs]
    for p, text in zip(procs, outputs):
        assert p.returncode == 0, text[-3000:]
    records = [json.loads(f.read_text()) for f in sorted((out / "runs").glob("*.json"))]
    assert len(records) == 4 and all(r["status"] == "ok" for r in records)
    cached = sum(
        int(line.split("(")[1].split()[0])
        for text in outputs
        for line in text.splitlines()
        if "read from cache" in line
    )
    assert cached == 4  # 8 requests, each of the 4 runs computed exactly once
    model_files = {r["model_file"] for r in records}
    assert len(model_files) == 4 and all(Path(f).is_file() for f in model_files)


# ------------------------------------------------------------------------------ plots


def test_plots(tmp_path: Path) -> None:
    losses = [{"ce": 3.0, "q": 1.0}, {"ce": 2.5, "q": 0.8, "aug": 0.3}, 2.0]
    curve = [{"epoch": 0, "valid_score": 0.1, "valid_result": {"ndcg@10": 0.1}}, {"epoch": 1, "valid_score": 0.2}]
    png = plots.plot_learning_curves(losses, curve, tmp_path / "c" / "curves.png", title="t")
    assert png.stat().st_size > 1000
    rows = [
        {"w_ah": 0.1, "w_aq": 0.01, "v": 0.3},
        {"w_ah": 0.1, "w_aq": 0.01, "v": 0.5},
        {"w_ah": 1.0, "w_aq": 0.01, "v": "nan"},
        {"w_ah": 1.0, "w_aq": 0.1, "v": 0.2},
    ]
    heat = plots.plot_heatmap(rows, "w_ah", "w_aq", "v", tmp_path / "h.png")
    assert heat is not None and heat.stat().st_size > 1000
    assert plots.plot_heatmap(rows, "x", "y", "v", tmp_path / "none.png") is None


def test_lea_models_compare_with_loss_terms(tiny_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from conftest import TINY_MODEL_CONFIG

    monkeypatch.chdir(tmp_path)
    out = compare.run_comparison(
        dataset="tiny",
        models=["SA2C", "SA2C_LEA:variant=LEASR,w_ah=0.1,w_aq=0.01"],
        seeds=1,
        baseline="SA2C",
        config_dict={**TINY_MODEL_CONFIG, "epochs": 2, "le_dir": str(tiny_root / "tiny-lea")},
        data_path=str(tiny_root),
        output_dir=tmp_path / "lea",
    )
    assert all(r["status"] == "ok" for r in out["runs"]), [r.get("traceback") for r in out["runs"]]
    lea = next(r for r in out["runs"] if r["model"] == "SA2C_LEA")
    assert len(lea["train_losses"]) == 2 and len(lea["train_losses"][0]) >= 2  # named terms per epoch
    assert Path(lea["curves_png"]).is_file()
    assert "SA2C_LEA:variant=LEASR" in out["markdown"]
