"""No silently wrong result, no code run from data (issue 20): caches keyed on what they depend on
and verified before use, safe loading of pickles, option strings and checkpoints, locked builds,
bad options stopped before any work, SA2C that says when it never switches."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from recbole_lea.cli import main as cli_main
from recbole_lea.errors import ConfigError
from recbole_lea.experiments import compare, runner
from recbole_lea.le.build import build_le
from recbole_lea.le.testing import TINY_DATASET_KEYS, TINY_PROFILE, save_tiny_llm, tiny_lea_options, write_tiny_dataset
from recbole_lea.quick_start import run_recbole_lea

ROOT = Path(__file__).resolve().parents[1]
SMALL = {"epochs": 1, "hidden_size": 8, "embedding_size": 8, "inner_size": 8, "train_batch_size": 64, "seed": 3}


@pytest.fixture(scope="module")
def llm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_llm(tmp_path_factory.mktemp("llm") / "tiny-llama")


@pytest.fixture()
def lea_setup(tmp_path: Path, llm_dir: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """A tiny dataset, a tiny LE profile file and the options of a LEA run that builds its LE."""
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "data"
    write_tiny_dataset(data, n_users=10, max_len=12)
    options = tiny_lea_options(tmp_path, data, llm_dir, **SMALL)
    return {"data": data, "options": options, "tmp": tmp_path}


# ------------------------------------------------------------------ 1, 2: comparisons
def test_comparison_builds_one_le_per_le_build_config(lea_setup: dict[str, Any]) -> None:
    out = compare.run_comparison(
        dataset="tiny",
        models=["SA2C_LEA:le_epochs=1", "SA2C_LEA:le_epochs=2"],
        seeds=1,
        config_dict=lea_setup["options"],
        output_dir=lea_setup["tmp"] / "cmp",
    )
    assert all(r["status"] == "ok" for r in out["runs"]), [r.get("error") for r in out["runs"]]
    les = [r["inputs"]["le"] for r in out["runs"]]
    assert les[0] != les[1]  # two LE fingerprints, two keys
    dirs = [Path(r["config_dict"]["le_dir"]) for r in out["runs"]]
    assert dirs[0] != dirs[1] and all((d / "manifest.json").is_file() for d in dirs)
    epochs = [json.loads((d / "manifest.json").read_text())["config"]["le_epochs"] for d in dirs]
    assert epochs == [1, 2]


def test_sweep_over_an_le_option_prepares_no_shared_le(lea_setup: dict[str, Any]) -> None:
    opts, data = lea_setup["options"], str(lea_setup["data"])
    assert runner.prepare_shared("SA2C_LEA", "tiny", data, [], opts, swept=["le_epochs"]) == {}
    prepared = runner.prepare_shared("SA2C_LEA", "tiny", data, [], opts, swept=["w_ah", "w_aq"])
    assert (Path(prepared["le_dir"]) / "tiny-lea.inter").is_file()


def test_comparison_cache_follows_data_and_le_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "data"
    df = write_tiny_dataset(data, n_users=20)
    kwargs: dict[str, Any] = dict(
        dataset="tiny",
        models=["SASRec"],
        seeds=1,
        config_dict=dict(SMALL),
        data_path=str(data),
        output_dir=tmp_path / "c",
    )
    first = compare.run_comparison(**kwargs)["runs"][0]
    assert compare.run_comparison(**kwargs)["runs"][0]["cached"]
    # cut the data by 45%: the cached result is not read back
    inter = data / "tiny" / "tiny.inter"
    lines = inter.read_text().splitlines(keepends=True)
    inter.write_text("".join(lines[: 1 + int(0.55 * len(df))]))
    again = compare.run_comparison(**kwargs)["runs"][0]
    assert not again["cached"] and again["key"] != first["key"]
    # a modified record is recomputed, not trusted
    path = tmp_path / "c" / "runs" / f"{again['key']}.json"
    record = json.loads(path.read_text())
    record["test_result"]["ndcg@10"] = 0.99
    path.write_text(json.dumps(record))
    third = compare.run_comparison(**kwargs)["runs"][0]
    assert not third["cached"] and third["test_result"]["ndcg@10"] != 0.99


def test_le_code_version_enters_the_comparison_key(lea_setup: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    from recbole_lea.le import plan as le_plan

    opts = lea_setup["options"]
    digest, _ = runner.inputs_digest("SA2C_LEA", "tiny", [], opts)
    monkeypatch.setattr(le_plan, "code_version", lambda: "f" * 64)
    other, _ = runner.inputs_digest("SA2C_LEA", "tiny", [], opts)
    assert digest["le"] != other["le"]


# ------------------------------------------------------------------ 3, 7: verified LE files and stages
def test_run_refuses_a_modified_le_file_and_a_rebuild_restores_it(lea_setup: dict[str, Any]) -> None:
    opts = lea_setup["options"]
    result = run_recbole_lea("SA2C_LEA", "tiny", config_dict=opts, saved=False)
    le_dir = Path(result["le_dir"])
    inter = le_dir / "tiny-lea.inter"
    good = inter.read_bytes()
    lines = good.decode().splitlines(keepends=True)
    inter.write_text("".join(lines[: len(lines) * 3 // 4]))  # truncated, as a killed copy would leave it
    for given in ({"le_dir": str(le_dir)}, {"le_auto_build": False}):
        with pytest.raises(ConfigError, match=r"tiny-lea\.inter does not match its recorded sha256"):
            run_recbole_lea("SA2C_LEA", "tiny", config_dict={**opts, **given}, saved=False)
    # with le_auto_build (the default) the build notices it and rewrites the folder from its stages
    again = run_recbole_lea("SA2C_LEA", "tiny", config_dict=opts, saved=False)
    assert inter.read_bytes() == good and again["test_result"] == result["test_result"]


def test_corrupted_stage_is_recomputed_not_read(lea_setup: dict[str, Any], caplog: pytest.LogCaptureFixture) -> None:
    data, opts = lea_setup["data"], lea_setup["options"]
    overrides = {**TINY_DATASET_KEYS, "le_model": opts["le_model"], "le_cache_dir": opts["le_cache_dir"]}
    out = build_le("tiny", data, dict(TINY_PROFILE), overrides)
    first = (out / "tiny-lea.inter").read_bytes()
    stages = Path(opts["le_cache_dir"]) / "stages"
    states = next(stages.glob("featurize-*")) / "states.npy"
    states.write_bytes(states.read_bytes()[:100])  # truncated under its COMPLETE marker
    (out / "tiny-lea.inter").unlink()  # force the output to be rewritten from the stages
    with caplog.at_level("WARNING", logger="recbole_lea"):
        again = build_le("tiny", data, dict(TINY_PROFILE), overrides)
    assert "featurize" in caplog.text and "corrupt" in caplog.text
    assert (again / "tiny-lea.inter").read_bytes() == first


# ------------------------------------------------------------------ 4, 5: nothing runs from data or options
class _Plant:
    """Unpickling this makes the folder ``marker``: proof that a pickle was loaded."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.mkdir, (str(self.marker),))


def test_planted_dataset_and_dataloader_pickles_are_never_loaded(
    tiny_root: Path, tiny_config: dict, tmp_path: Path
) -> None:
    import recbole.data

    saved = tmp_path / "saved"
    saved.mkdir()
    marker = tmp_path / "pwned"
    for name in ("tiny-for-SASRec-dataloader.pth", "tiny-SequentialDataset.pth", "tiny-Dataset.pth"):
        (saved / name).write_bytes(pickle.dumps(_Plant(marker)))
    result = run_recbole_lea("SASRec", "tiny", config_dict=dict(tiny_config, checkpoint_dir=str(saved)), saved=False)
    assert result["test_result"] and not marker.exists()
    # RecBole's own entry points are shimmed too
    from recbole_lea.quick_start import build_config

    config = build_config("BPR", "tiny", config_dict=dict(tiny_config, checkpoint_dir=str(saved)))
    recbole.data.create_dataset(config)
    assert recbole.data.utils.load_split_dataloaders(config) is None and not marker.exists()
    for key, value in (("save_dataloaders", True), ("dataloaders_save_path", str(saved / "x.pth"))):
        with pytest.raises(ConfigError, match=f"`{key}`.*never unpickles"):
            build_config("SASRec", "tiny", config_dict=dict(tiny_config, **{key: value}))


def test_option_strings_are_parsed_as_literals_never_run(tmp_path: Path) -> None:
    from recbole.config import Config

    import recbole_lea.quick_start  # noqa: F401  (applies the shims)

    marker = tmp_path / "pwned"
    payload = f'__import__("os").mkdir({str(marker)!r})'
    converted = Config._convert_config_dict(
        Config.__new__(Config), {"x": payload, "n": "5", "l": "[1, 2]", "b": "True"}
    )
    assert converted == {"x": payload, "n": 5, "l": [1, 2], "b": True} and not marker.exists()


def test_the_command_line_never_reaches_the_le_backbones_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RecBole's Config read `--epochs=16 --seed=7` of the run's command line into the LE build's
    candidates backbone (inside `run_recbole_lea.py`), under a cache key that says
    le_aug_backbone_epochs and le_seed: every Config takes config_dict and files only."""
    from types import SimpleNamespace

    import torch

    import recbole_lea.quick_start  # noqa: F401  (applies the shims)
    from recbole_lea.le.augment import _recbole_config
    from recbole_lea.le.config import LEConfig

    monkeypatch.setattr(sys, "argv", ["run_recbole_lea.py", "--model=SA2C_LEA", "--epochs=16", "--seed=7"])
    cfg = LEConfig(le_aug_backbone_epochs=2, le_seed=11)
    base = SimpleNamespace(dataset="ml-100k", split={})
    config = _recbole_config(base, tmp_path, cfg, torch.device("cpu"), tmp_path)  # type: ignore[arg-type]
    assert (config["epochs"], config["seed"]) == (2, 11)


def test_a_checkpoint_that_runs_code_is_refused(tmp_path: Path) -> None:
    import torch

    from recbole_lea.quick_start import load_data_and_model

    marker = tmp_path / "pwned"
    path = tmp_path / "model.pth"
    torch.save({"config": _Plant(marker), "state_dict": {}}, path)
    with pytest.raises(ConfigError, match="does not load without running pickled code.*trust_pickle"):
        load_data_and_model(str(path))
    assert not marker.exists()


# ------------------------------------------------------------------ 8: bad values, before any work
BAD_OPTIONS = [
    (["--model=SA2C_LEA", "--le_epochs=abc"], "`le_epochs` expects int"),
    (["--model=SA2C_LEA", "--le_train_fraction=2"], "`le_train_fraction` must be > 0 and <= 1"),
    (["--model=SA2C_LEA", "--le_aug_fraction=-1"], "`le_aug_fraction` must be >= 0"),
    (["--model=SA2C_LEA", "--le_epochs=-1"], "`le_epochs` must be >= 1"),
    (["--model=SA2C_LEA", "--le_state_dim=0"], "`le_state_dim` must be >= 1"),
    (["--model=SA2C_LEA", "--le_profile=nosuch"], "Unknown LE profile 'nosuch'"),
    (["--model=SA2C", "--MAX_ITEM_LIST_LENGTH=0"], "`MAX_ITEM_LIST_LENGTH` must be >= 1"),
    (["--model=SA2C", "--train_batch_size=0"], "`train_batch_size` must be >= 1"),
    (["--model=SA2C", "--epochs=0"], "`epochs` must be >= 1"),
    (["--model=SA2C_LEA", "--w_ah=-1"], "`w_ah` must be >= 0"),
    (["--model=SA2C", "--w_ahh=0.5"], "Unknown option `w_ahh`.*Did you mean `w_ah`"),
    (["--model=SA2C_LEA", "--aug_sv=true"], "`aug_sv`.*renamed `l_ah`"),
    (["--model=SA2C", "--gamma=1.5"], "`gamma` must be >= 0 and <= 1"),
    (["--model=SA2C", "--valid_metric=NDCG@7"], "`valid_metric` is NDCG@7 but `topk`"),
    (["--model=SA2C", "--topk=[5,10,500]"], "`topk` \\[5, 10, 500\\] asks for more items"),
]


@pytest.mark.parametrize("args,message", BAD_OPTIONS, ids=[a[-1].split("=")[0] for a, _ in BAD_OPTIONS])
def test_bad_option_is_one_message_before_any_work(
    args: list[str], message: str, tiny_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = sorted(p.name for p in tiny_root.iterdir())
    cache = tmp_path / "cache"
    code = cli_main([*args, "--dataset=tiny", f"--data_path={tiny_root}", f"--le_cache_dir={cache}", "--no-save"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    import re

    assert re.search(message, err), err
    assert sorted(p.name for p in tiny_root.iterdir()) == before and not cache.exists()  # nothing written


def test_malformed_yaml_names_file_and_line(
    tiny_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochs: 3\nlearning_rate: [0.1\nw_ah: 2\n")
    code = cli_main(["--model=SA2C", "--dataset=tiny", f"--data_path={tiny_root}", "--config_files", str(bad)])
    err = capsys.readouterr().err
    assert code == 2 and "bad.yaml is not valid yaml" in err and "line 3" in err and "Traceback" not in err


# ------------------------------------------------------------------ 12: locked builds, leftovers cleaned
def test_two_builds_at_once_compute_each_stage_once(lea_setup: dict[str, Any]) -> None:
    opts = lea_setup["options"]
    cmd = [
        sys.executable,
        "-m",
        "recbole_lea.le",
        "build",
        "--dataset=tiny",
        f"--data_path={lea_setup['data']}",
        f"--profile={opts['le_profile']}",
        f"--le_model={opts['le_model']}",
        f"--le_cache_dir={opts['le_cache_dir']}",
        *(f"--{k}={json.dumps(v)}" for k, v in TINY_DATASET_KEYS.items()),
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [
        subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) for _ in range(2)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    logs = outs[0][1] + outs[1][1]
    for stage in ("item_tokens", "le_train", "candidates", "featurize", "augment"):
        assert logs.count(f"stage {stage}: computing") == 1, stage
    assert outs[0][0].strip() == outs[1][0].strip()  # the same LE folder


def test_leftovers_of_a_killed_build_are_removed(lea_setup: dict[str, Any]) -> None:
    from recbole_lea.files import remove_stale_tmp

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    parent = lea_setup["tmp"] / "x"
    stale = [parent / f".tiny-lea.tmp-{dead.pid}-abcd1234", parent / f".featurize-0a1b.tmp-{dead.pid}-abcd1234"]
    alive = parent / f".tiny-lea.tmp-{os.getpid()}-abcd1234"
    for p in (*stale, alive):
        p.mkdir(parents=True)
    assert sorted(remove_stale_tmp(parent)) == sorted(stale)
    assert alive.exists() and not any(p.exists() for p in stale)


# ------------------------------------------------------------------ 13: SA2C that never switches says so
def test_sa2c_switch_follows_the_data_and_says_when_it_cannot_happen(
    tiny_config: dict, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = {k: v for k, v in tiny_config.items() if k != "switch_step"}
    # default: after switch_epochs (4) epochs of this data -> reached within 6 epochs
    result = run_recbole_lea("SA2C", "tiny", config_dict=dict(cfg, epochs=6, stopping_step=10), saved=False)
    plan = result["sa2c_switch"]
    assert plan["switch_step"] == 4 * plan["steps_per_epoch"] and plan["reachable"] and plan["reached"]
    assert result["train_losses"][-1]["phase"] == 2.0 and result["train_losses"][0]["phase"] == 1.0
    # the original's 15,000 steps on tiny data: never; the run says so before and after training
    with caplog.at_level("WARNING"):
        result = run_recbole_lea("SA2C", "tiny", config_dict=dict(cfg, epochs=2, switch_step=15000), saved=False)
    assert not result["sa2c_switch"]["reachable"] and not result["sa2c_switch"]["reached"]
    assert "trains as SNQN throughout" in caplog.text and "never reached its advantage phase" in caplog.text


# ------------------------------------------------------------------ item 11 wiring
def test_bad_inter_line_is_named_before_recbole_reads_it(tiny_root: Path, tiny_config: dict, tmp_path: Path) -> None:
    folder = tmp_path / "tiny"
    folder.mkdir()
    lines = (tiny_root / "tiny" / "tiny.inter").read_text().splitlines()
    lines[5] = "\t".join(lines[5].split("\t")[:2])  # a line missing its timestamp
    (folder / "tiny.inter").write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError, match=r"tiny\.inter: line 6"):
        run_recbole_lea("SASRec", "tiny", config_dict=dict(tiny_config, data_path=str(tmp_path)), saved=False)
    assert pd.read_csv(folder / "tiny.inter", sep="\t").shape[0] == len(lines) - 1
