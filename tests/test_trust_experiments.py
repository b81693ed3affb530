"""No stale or misleading experiment results (issue 33): the run-record key covers every module a
run's numbers depend on, the LE fingerprint follows the library versions, a constant paired
difference is never starred, ``--stored`` says when the data changed since a record, repeated
seeds and unknown swept options are one message before any work."""

from __future__ import annotations

import importlib.metadata
import json
import logging
import math
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from recbole_lea.errors import ConfigError
from recbole_lea.experiments import compare, runner
from recbole_lea.le.testing import save_tiny_llm, tiny_lea_options, write_tiny_dataset

PKG = Path(runner.__file__).resolve().parents[1]
SMALL = {"epochs": 1, "hidden_size": 8, "embedding_size": 8, "inner_size": 8, "train_batch_size": 64}


# ------------------------------------------------------------------ 1: the run key covers the run's code
def test_run_code_is_every_module_but_documented_exclusions() -> None:
    excluded = runner.NOT_RUN_CODE
    assert excluded, "the exclusion list is empty"
    for rel, reason in excluded.items():
        assert (PKG / rel).is_file(), f"NOT_RUN_CODE names {rel}, which does not exist"
        assert reason.strip(), f"NOT_RUN_CODE gives no reason for {rel}"
    keyed = {str(p.relative_to(PKG)) for p in runner.run_code_files()}
    for rel in ("data/split.py", "run_config.py", "checkpoint.py", "files.py", "trainer.py", "model/sa2c.py"):
        assert rel in keyed, rel
    assert "experiments/compare.py" not in keyed and "experiments/plots.py" not in keyed
    every = {str(p.relative_to(PKG)) for p in PKG.rglob("*.py")}
    assert keyed | set(excluded) == every and not keyed & set(excluded)


def _copy_package(dst: Path) -> Path:
    for src in PKG.rglob("*.py"):
        target = dst / src.relative_to(PKG)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target)
    return dst


def test_source_digest_follows_every_module_that_decides_numbers(tmp_path: Path) -> None:
    root = _copy_package(tmp_path / "recbole_lea")
    before = runner.source_digest(root)
    for rel, changes in (
        ("data/split.py", True),
        ("run_config.py", True),
        ("checkpoint.py", True),
        ("experiments/plots.py", False),
    ):
        path = root / rel
        text = path.read_text()
        path.write_text(text + "\n# a comment only\n")
        assert runner.source_digest(root) == before, f"a comment in {rel} changed the key"
        path.write_text(text + "\n_PROBE = 1\n")
        assert (runner.source_digest(root) != before) is changes, rel
        path.write_text(text)
    assert runner.source_digest(root) == before


def test_no_excluded_module_is_imported_by_a_run() -> None:
    code = (
        "import json, sys; import recbole_lea.quick_start, recbole_lea.experiments.runner; "
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('recbole_lea'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=PKG.parent)
    imported = set(json.loads(out.stdout.strip().splitlines()[-1]))
    excluded = {"recbole_lea." + rel[: -len(".py")].replace("/", ".") for rel in runner.NOT_RUN_CODE}
    assert not imported & excluded, imported & excluded


# ------------------------------------------------------------------ 2: the LE fingerprint follows library versions
def test_le_fingerprint_follows_library_versions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from recbole_lea.le import plan as le_plan
    from recbole_lea.run_config import resolve_run, split_of

    data = tmp_path / "data"
    write_tiny_dataset(data, n_users=10, max_len=12)
    llm = save_tiny_llm(tmp_path / "llm" / "tiny-llama")
    options = tiny_lea_options(tmp_path, data, llm, **SMALL)
    resolved = resolve_run("SA2C_LEA", "tiny", [], options)

    def plan() -> Any:
        return le_plan.plan_le("tiny", data, resolved.le, split_of(resolved.run))

    first = plan()
    assert set(first.versions) >= {"torch", "transformers", "peft", "accelerate", "numpy"}
    assert first.versions["torch"] == importlib.metadata.version("torch")
    assert first.keys["write"]["versions"] == first.versions
    real = le_plan.library_versions()
    monkeypatch.setattr(le_plan, "library_versions", lambda: {**real, "torch": "0.0.1-other"})
    second = plan()
    assert second.fingerprint != first.fingerprint
    assert second.fps["le_train"] != first.fps["le_train"]  # no stage computed by another torch is reused
    assert plan().fingerprint == second.fingerprint  # deterministic
    digest, _ = runner.inputs_digest("SA2C_LEA", "tiny", [], options)
    assert digest["le"] == second.fingerprint


# ------------------------------------------------------------------ 3: a constant difference is not significant
def _record(label: str, seed: int, value: float) -> dict[str, Any]:
    return {
        "label": label,
        "seed": seed,
        "status": "ok",
        "test_result": {key: value for key, _ in compare.TABLE_METRICS},
        "epoch_times": [1.0],
        "wall_time_s": 1.0,
    }


def test_constant_paired_difference_is_nan_and_never_starred() -> None:
    assert math.isnan(compare.paired_pvalue([0.2, 0.3], [0.1, 0.2]))
    assert math.isnan(compare.paired_pvalue([0.5, 0.5, 0.5], [0.1, 0.1, 0.1]))
    seeds = [1, 2]
    records = [_record("BASE", s, 0.1 + 0.01 * s) for s in seeds] + [_record("GOOD", s, 0.3 + 0.01 * s) for s in seeds]
    rows = compare.summarise(records, ["BASE", "GOOD"], seeds, "BASE", 0.01)
    good = next(r for r in rows if r["model"] == "GOOD")
    assert math.isnan(good["ndcg@10_p"]) and not good["ndcg@10_sig"]
    md = compare.render_markdown(rows, "toy", seeds, "BASE", 0.01, ["leave-one-out"])
    line = next(x for x in md.splitlines() if x.startswith("| GOOD"))
    assert "**" in line and "*" not in line.replace("**", ""), line


# ------------------------------------------------------------------ 4: --stored says when the data changed
def _fake_run(model: str, dataset: str, **kwargs: Any) -> dict[str, Any]:
    seed = int(kwargs["config_dict"]["seed"])
    return {
        "best_valid_score": 0.1,
        "test_result": {key: 0.1 + 0.01 * seed for key, _ in compare.TABLE_METRICS},
        "best_valid_result": {"ndcg@10": 0.1},
        "config": {"eval_protocol": "loo", "seed": seed},
        "epoch_times": [0.1],
    }


def test_stored_table_warns_when_the_data_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "data"
    write_tiny_dataset(data, n_users=20)
    kwargs: dict[str, Any] = dict(
        dataset="tiny",
        models=["SASRec"],
        seeds=[1, 2],
        config_dict=dict(SMALL),
        data_path=str(data),
        output_dir=tmp_path / "c",
    )
    compare.run_comparison(**kwargs, run_fn=_fake_run)
    root = logging.getLogger()  # run_one drops the root logger's handlers; restored after the test
    monkeypatch.setattr(root, "handlers", [*root.handlers, caplog.handler])
    with caplog.at_level(logging.WARNING, logger="recbole_lea.experiments.compare"):
        same = compare.run_comparison(**kwargs, stored=True)
    assert not [r for r in caplog.records if "--stored" in r.getMessage()]
    assert not same.get("notes") and "Warning" not in same["markdown"]
    inter = data / "tiny" / "tiny.inter"
    lines = inter.read_text().splitlines(keepends=True)
    inter.write_text("".join(lines[: len(lines) // 2]))
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="recbole_lea.experiments.compare"):
        out = compare.run_comparison(**kwargs, stored=True)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    for seed in (1, 2):
        assert any("SASRec" in w and f"seed {seed}" in w and "tiny.inter" in w for w in warnings), warnings
    notes = [x for x in out["markdown"].splitlines() if "tiny.inter" in x]
    assert len(notes) == 2 and all("SASRec" in x for x in notes), out["markdown"]


# ------------------------------------------------------------------ 5: repeated seeds
def test_repeated_seed_is_one_config_error(capsys: pytest.CaptureFixture[str]) -> None:
    from recbole_lea.experiments.cli import compare_main

    with pytest.raises(ConfigError, match="seed 2 .*twice"):
        compare.seed_list([1, 2, 2])
    with pytest.raises(ConfigError, match="seed 2 "):
        compare.run_comparison(dataset="tiny", models=["SASRec"], seeds=[1, 2, 2], run_fn=_fake_run)
    with pytest.raises(SystemExit) as e:
        compare_main(["--dataset", "ml-100k", "--models", "SASRec", "--seeds", "1", "2", "2"])
    assert e.value.code == 2
    assert "seed 2 " in capsys.readouterr().err
    assert compare.seed_list([3, 1, 2]) == [3, 1, 2]


# ------------------------------------------------------------------ 6: an unknown swept option, before Ray
def test_unknown_swept_option_fails_before_ray(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ray = pytest.importorskip("ray")
    from recbole_lea.experiments import tune as lea_tune
    from recbole_lea.experiments.cli import hyper_main

    monkeypatch.chdir(tmp_path)
    data = tmp_path / "data"
    write_tiny_dataset(data, n_users=10)
    calls: list[Any] = []

    def no_ray(*args: Any, **kwargs: Any) -> None:
        calls.append(args)
        raise RuntimeError("ray.init was called")

    monkeypatch.setattr(ray, "init", no_ray)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    params_file = tmp_path / "p.hyper"
    params_file.write_text("n_heads choice [1, 2]\nw_ahh choice [0.1, 1.0]\n")
    start = time.perf_counter()
    with pytest.raises(ConfigError, match=r"`w_ahh`.*p\.hyper.*Did you mean `w_ah`"):
        lea_tune.run_sweep(
            model="SASRec",
            dataset="tiny",
            params_file=params_file,
            config_dict=dict(SMALL),
            data_path=str(data),
            output_dir=tmp_path / "sweep",
        )
    assert time.perf_counter() - start < 10
    argv = ["--model", "SASRec", "--dataset", "tiny", "--params_file", str(params_file), "--data_path", str(data)]
    assert hyper_main([*argv, "--output_dir", str(tmp_path / "s2")]) == 2
    err = capsys.readouterr().err
    assert "w_ahh" in err and "Traceback" not in err
    # a bad value of a known option is named too, before Ray
    params_file.write_text("n_heads choice [1, 'two']\n")
    with pytest.raises(ConfigError, match="n_heads"):
        lea_tune.run_sweep(model="SASRec", dataset="tiny", params_file=params_file, data_path=str(data))
    assert calls == []
