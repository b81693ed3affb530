"""Issue 33, the run and serving side: each probe gave a wrong result with exit 0 (or ran what the
user did not ask for); each now gives the right result or one message."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch

from recbole_lea.cli import main as cli_main
from recbole_lea.errors import ConfigError
from recbole_lea.quick_start import load_data_and_model, run_recbole_lea
from recbole_lea.trainer import NonFiniteLossError, get_trainer


def _reordered_copy(tiny_root: Path, out: Path, extra_rows: list[str] = ()) -> Path:
    """The tiny dataset with its users in reverse order (each user's rows keep their order)."""
    src, dst = tiny_root / "tiny", out / "tiny"
    dst.mkdir(parents=True)
    shutil.copy(src / "tiny.item", dst / "tiny.item")
    lines = (src / "tiny.inter").read_text().splitlines()
    header, rows = lines[0], lines[1:]
    users = list(dict.fromkeys(r.split("\t")[0] for r in rows))
    by_user = {u: [r for r in rows if r.split("\t")[0] == u] for u in users}
    body = [r for u in reversed(users) for r in by_user[u]]
    (dst / "tiny.inter").write_text("\n".join([header, *body, *extra_rows]) + "\n")
    return dst


def _test_metrics(model_file: str, **overrides: str) -> dict[str, float]:
    config, model, _ds, _train, _valid, test = load_data_and_model(model_file, config_dict=overrides)
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    return dict(trainer.evaluate(test, load_best_model=False))


def test_serving_on_reordered_rows_uses_the_trained_ids(tiny_config: dict, tiny_root: Path, tmp_path: Path) -> None:
    result = run_recbole_lea("SASRec", "tiny", config_dict=dict(tiny_config, epochs=3))
    folder = _reordered_copy(tiny_root, tmp_path / "copy")
    again = _test_metrics(result["model_file"], data_path=str(folder))
    for key, value in result["test_result"].items():
        assert again[key] == pytest.approx(value, abs=1e-6), key
    # an item the model never saw is one message, not a silently wrong id
    strange = _reordered_copy(tiny_root, tmp_path / "strange", ["u3\tnever_seen\t99999"])
    with pytest.raises(ConfigError, match=r"item_id value\(s\) of the data are unknown to the trained model"):
        load_data_and_model(result["model_file"], config_dict={"data_path": str(strange)})


def test_reloading_a_crafted_checkpoint_writes_nothing(tiny_config: dict, tmp_path: Path) -> None:
    result = run_recbole_lea("SASRec", "tiny", config_dict=dict(tiny_config, epochs=1))
    state = torch.load(result["model_file"], weights_only=True)
    evil = tmp_path / "evil"
    crafted = tmp_path / "crafted.pth"
    for key, value in (("save_dataloaders", True), ("dataset", "../../x")):
        bad = dict(state, config=dict(state["config"]))
        bad["config"]["final_config_dict"] = {
            **state["config"]["final_config_dict"],
            key: value,
            "checkpoint_dir": str(evil),
        }
        torch.save(bad, crafted)
        with pytest.raises(ConfigError, match=r"save_dataloaders|one folder name"):
            load_data_and_model(str(crafted))
        assert not evil.exists()


@pytest.mark.parametrize(
    ("option", "fix"),
    [
        ("--gamma=.nan", "finite"),
        ("--w_ah=.inf", "finite"),
        ("--learning_rate=.nan", "finite"),
        ("--MAX_ITEM_LIST_LENGTH=100000", "<= 1000"),
        ("--dataset=../x", "one folder name"),
    ],
)
def test_non_finite_and_out_of_range_values_are_one_message(
    option: str, fix: str, tiny_config: dict, capsys: pytest.CaptureFixture[str]
) -> None:
    model = "SA2C_LEA" if "w_ah" in option else "SA2C"
    args = [f"--model={model}", "--dataset=tiny", f"--data_path={tiny_config['data_path']}", "--epochs=1", option]
    assert cli_main(args) == 2
    err = capsys.readouterr().err
    assert fix in err and "Traceback" not in err


def test_a_loss_that_is_no_longer_finite_stops_the_run_naming_the_epoch(tiny_config: dict) -> None:
    cfg = dict(tiny_config, epochs=3, learning_rate=1e30, train_batch_size=16)
    with pytest.raises(NonFiniteLossError, match=r"Training stopped at epoch \d+: the training loss is not finite"):
        run_recbole_lea("SASRec", "tiny", config_dict=cfg, saved=False)


def test_an_rl_loss_names_its_term(tiny_config: dict) -> None:
    cfg = dict(tiny_config, epochs=3, learning_rate=1e30, train_batch_size=16)
    with pytest.raises(NonFiniteLossError, match=r"epoch \d+"):
        run_recbole_lea("SNQN", "tiny", config_dict=cfg, saved=False)


def test_a_split_without_queries_stops_before_training(tmp_path: Path, tiny_config: dict) -> None:
    folder = tmp_path / "short"
    (folder / "short").mkdir(parents=True)
    rows = [f"u{u}\ti{(u + k) % 25}\t{1000 + 10 * u + k}" for u in range(30) for k in range(2)]
    (folder / "short" / "short.inter").write_text("user_id:token\titem_id:token\ttimestamp:float\n" + "\n".join(rows))
    cfg = dict(tiny_config, data_path=str(folder), epochs=1)
    with pytest.raises(ConfigError, match="leaves no (validation|test) query"):
        run_recbole_lea("SASRec", "short", config_dict=cfg, saved=False)


def test_compare_threads_must_be_positive(capsys: pytest.CaptureFixture[str]) -> None:
    from recbole_lea.experiments.cli import compare_main

    assert compare_main(["--models", "SASRec", "--threads", "-1"]) == 2
    assert "`threads` must be >= 1" in capsys.readouterr().err


def test_reordered_rows_are_really_reordered(tiny_root: Path, tmp_path: Path) -> None:
    """The probe's copy has other users first (else the serving test proves nothing)."""
    folder = _reordered_copy(tiny_root, tmp_path / "copy")
    first = pd.read_csv(tiny_root / "tiny" / "tiny.inter", sep="\t").iloc[0, 0]
    assert pd.read_csv(folder / "tiny.inter", sep="\t").iloc[0, 0] != first


def test_an_le_of_other_options_in_this_options_folder_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Copy the LE of le_seed 2024 into the folder of le_seed 7: `le check` and a run with
    le_auto_build False used to say 'up to date' and train on it."""
    from recbole_lea.le.build import build_le, check_le_dataset
    from recbole_lea.le.files import LEDatasetMismatch
    from recbole_lea.le.testing import (
        TINY_DATASET_KEYS,
        TINY_PROFILE,
        save_tiny_llm,
        tiny_lea_options,
        write_tiny_dataset,
    )

    monkeypatch.chdir(tmp_path)
    data = tmp_path / "data"
    write_tiny_dataset(data, n_users=10, max_len=12)
    llm = save_tiny_llm(tmp_path / "llm" / "tiny-llama")
    options = tiny_lea_options(tmp_path, data, llm, epochs=1, hidden_size=8, embedding_size=8, inner_size=8)
    overrides = {**TINY_DATASET_KEYS, "le_model": options["le_model"], "le_cache_dir": options["le_cache_dir"]}
    built = build_le("tiny", data, dict(TINY_PROFILE), {**overrides, "le_seed": 2024})
    with pytest.raises(LEDatasetMismatch):  # never built: the seed-7 folder does not exist
        check_le_dataset(data, "tiny", dict(TINY_PROFILE), {**overrides, "le_seed": 7})
    from recbole_lea.le.config import resolve_config
    from recbole_lea.le.plan import plan_le

    target = plan_le(
        "tiny", data, resolve_config("tiny", dict(TINY_PROFILE), {**overrides, "le_seed": 7}, data)
    ).out_dir
    shutil.copytree(built, target)
    with pytest.raises(LEDatasetMismatch, match=r"le_seed: 2024 -> 7"):
        check_le_dataset(data, "tiny", dict(TINY_PROFILE), {**overrides, "le_seed": 7})
    run_options = {**options, "le_seed": 7, "le_auto_build": False}
    with pytest.raises(ConfigError, match=r"built with other le_seed: 2024 -> 7"):
        run_recbole_lea("SA2C_LEA", "tiny", config_dict=run_options, saved=False)
