"""RecBole's built-ins through our command run as they run in RecBole (issue 35): our defaults keep
RecBole's negative sampling and loss for them, the graph models' scipy break is shimmed, the
non-neural models' checkpoints load without pickles, and a run gives RecBole's own numbers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from recbole_lea import registry
from recbole_lea.checkpoint import parameters_from_plain, parameters_to_plain
from recbole_lea.errors import ConfigError
from recbole_lea.quick_start import load_data_and_model, run_recbole_lea
from recbole_lea.run_config import resolve_run
from recbole_lea.trainer import get_trainer

#: the built-ins of the tiny check: general (pairwise loss, non-neural, graph) and sequential (CE, BPR-only)
FAST = ["BPR", "ItemKNN", "LightGCN", "SASRec", "FPMC"]


def _tiny(tiny_config: dict, **extra: Any) -> dict:
    cfg = {k: v for k, v in tiny_config.items() if k not in ("le_dir", "switch_step", "le_state_dim")}
    return {**cfg, **extra}


def _recbole_own(model: str, cfg: dict) -> dict[str, float]:
    """RecBole's own run_recbole with the same files and options (our compat shims applied, as
    today's numpy and torch need them), evaluated on the last epoch's model as ours is below."""
    from recbole.quick_start import run_recbole

    resolved = resolve_run(model, "tiny", None, cfg)
    out = run_recbole(
        model=model, dataset="tiny", config_file_list=resolved.files, config_dict=resolved.config_dict, saved=False
    )
    return {k: float(v) for k, v in out["test_result"].items()}


@pytest.mark.parametrize("model", FAST)
def test_a_builtin_gives_recboles_own_numbers(model: str, tiny_config: dict) -> None:
    cfg = _tiny(tiny_config, epochs=2)
    ours = run_recbole_lea(model, "tiny", config_dict=cfg, saved=False)["test_result"]
    theirs = _recbole_own(model, cfg)
    assert ours.keys() == theirs.keys() and ours
    for key, value in theirs.items():
        assert ours[key] == pytest.approx(value, abs=1e-9), key


def test_recbole_defaults_hold_for_builtins_and_sequential_ce_trains_without_sampling() -> None:
    bpr = resolve_run("BPR", "tiny", None, {})
    assert "train_neg_sample_args" not in bpr.options and "loss_type" not in bpr.options  # RecBole's own
    fpmc = resolve_run("FPMC", "tiny", None, {})
    assert "train_neg_sample_args" not in fpmc.options  # BPR-only: keeps RecBole's sampling
    sasrec = resolve_run("SASRec", "tiny", None, {})
    assert sasrec.options["train_neg_sample_args"] is None and sasrec.config_dict["train_neg_sample_args"] is None
    assert resolve_run("SA2C", "tiny", None, {}).config_dict["train_neg_sample_args"] is None
    given = resolve_run("SASRec", "tiny", None, {"train_neg_sample_args": {"distribution": "uniform", "sample_num": 1}})
    assert given.config_dict["train_neg_sample_args"] == {"distribution": "uniform", "sample_num": 1}
    # the paper's sequential setting is for sequential models only
    assert sasrec.options["MAX_ITEM_LIST_LENGTH"] == 10 and "MAX_ITEM_LIST_LENGTH" not in bpr.options


@pytest.mark.parametrize("model", ["ItemKNN", "EASE", "Pop"])
def test_non_neural_checkpoints_reload_without_pickles(model: str, tiny_config: dict) -> None:
    result = run_recbole_lea(model, "tiny", config_dict=_tiny(tiny_config))
    state = torch.load(result["model_file"], weights_only=True)  # nothing in it runs code
    assert state["other_parameter"] is not None
    config, reloaded, _ds, _tr, _va, test = load_data_and_model(result["model_file"])
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, reloaded)
    again = trainer.evaluate(test, load_best_model=False)
    for key, value in result["test_result"].items():
        assert again[key] == pytest.approx(value, abs=1e-6), key


def test_plain_parameters_round_trip_sparse_and_dense() -> None:
    csr = sp.random(5, 7, density=0.3, format="csr", random_state=0, dtype=np.float32)
    params = {"w": csr, "sim": np.arange(6.0).reshape(2, 3), "n": np.int64(3), "t": torch.ones(2), "lst": [csr.tocoo()]}
    back = parameters_from_plain(parameters_to_plain(params))
    assert back["w"].format == "csr" and (back["w"] != csr).nnz == 0
    assert np.array_equal(back["sim"], params["sim"]) and back["n"] == 3 and torch.equal(back["t"], params["t"])
    assert back["lst"][0].format == "coo"
    with pytest.raises(ConfigError, match="cannot be saved"):
        parameters_to_plain({"f": object()})


def test_dok_matrix_update_shim_fills_the_matrix() -> None:
    from recbole_lea import compat

    compat.apply()
    a = sp.dok_matrix((3, 3), dtype=np.float32)
    a._update({(0, 1): 1, (2, 2): 1})
    assert a.toarray().tolist() == [[0, 1, 0], [0, 0, 0], [0, 0, 1]]


def test_a_model_whose_package_is_missing_is_one_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "missing_packages", lambda name: ("dgl",) if name == "KGAT" else ())
    with pytest.raises(ConfigError, match=r"Model KGAT needs the Python package\(s\) dgl"):
        resolve_run("KGAT", "tiny", None, {})


def test_missing_packages_reads_imports_at_any_depth(tmp_path: Path) -> None:
    # KGAT imports dgl inside a method; NCL imports faiss inside one
    found = {m: registry.missing_packages(m) for m in ("KGAT", "NCL", "LightGBM", "BPR")}
    for model, pkg in (("KGAT", "dgl"), ("NCL", "faiss"), ("LightGBM", "lightgbm")):
        import importlib.util

        assert (pkg in found[model]) == (importlib.util.find_spec(pkg) is None), model
    assert found["BPR"] == ()


def test_our_sequential_settings_apply_only_where_the_model_supports_them() -> None:
    sasrec = resolve_run("SASRec", "tiny", None, {})
    assert sasrec.options["n_layers"] == 1 and sasrec.sources["n_layers"] == "properties/backbones.yaml"
    fearec = resolve_run("FEARec", "tiny", None, {})  # its own sizes: n_layers 1 divides by zero in FEARec
    assert "n_layers" not in fearec.options and fearec.options["MAX_ITEM_LIST_LENGTH"] == 10
    din = resolve_run("DIN", "tiny", None, {})  # no full-sort ranking: RecBole's sampled evaluation holds
    assert "eval_args" not in din.options and "metrics" not in din.options
    # RecBole writes `dropout_prob: 0` for GRU4RecCPR's float option: a float value is accepted ...
    assert resolve_run("GRU4RecCPR", "tiny", None, {"dropout_prob": 0.2}).options["dropout_prob"] == 0.2
    # ... but a count stays an integer
    with pytest.raises(ConfigError, match="Option `epochs` expects an integer"):
        resolve_run("SASRec", "tiny", None, {"epochs": 1.5})
