"""benchmarks/gpu_le_scale.py: the model configurations are the published ones (their parameter
counts), the FLOP count adds up, and ``--tiny`` runs every stage and the projection on a CPU."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import benchmark_module


@pytest.fixture(scope="module")
def bench():  # type: ignore[no-untyped-def]
    with benchmark_module("gpu_le_scale") as module:
        yield module


@pytest.mark.parametrize(("key", "params"), [("7b", 7_241_732_096), ("1b", 1_235_814_400)])
def test_model_configurations_have_the_published_sizes(bench, key: str, params: int) -> None:  # type: ignore[no-untyped-def]
    from transformers import AutoModelForCausalLM

    cfg = bench.hf_config(key)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(cfg)
    assert sum(p.numel() for p in model.parameters()) == params  # Mistral-7B-v0.1 / Llama-3.2-1B
    shape = bench.Shape.of(cfg, params)
    # the linear layers one token passes are every weight but the embeddings and the LM head
    embeddings = cfg.vocab_size * cfg.hidden_size * (1 if cfg.tie_word_embeddings else 2)
    norms = (2 * cfg.num_hidden_layers + 1) * cfg.hidden_size
    assert shape.linear_per_token == params - embeddings - norms
    assert shape.forward(10, 55) == 2 * shape.linear_per_token * 10 + 4 * cfg.hidden_size * 55 * cfg.num_hidden_layers


def test_tiny_run_times_every_stage_and_projects(bench, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "bench.json"
    assert bench.main(["--tiny", "--data_path", str(tmp_path / "data"), "--json", str(out), "--feat_rows", "200"]) == 0
    printed = capsys.readouterr().out
    for stage in ("item_tokens", "le_train", "featurize"):
        assert stage in printed
    assert "LFM, 8 GPU(s)" in printed and "Industry, 1 GPU(s)" in printed
    result = json.loads(out.read_text())
    (model,) = result["models"]
    for stage in ("item_tokens", "le_train", "featurize"):
        st = model["stages"][stage]
        assert st["seconds"] > 0 and st["rate"] > 0 and st["flops"] > 0 and st["mfu"] is None  # no peak on a CPU
    proj = model["projection_s"]["LFM"]
    assert proj["1"]["total"] >= proj["2"]["total"] >= proj["8"]["total"] > 0


def test_micro_batch_is_the_largest_that_fits(bench) -> None:  # type: ignore[no-untyped-def]
    shape = bench.Shape.of(bench.hf_config("7b"), 7_241_732_096)
    # Industry's sentences with the 7B: 512 x 140 tokens keep ~275 GiB, 128 x 140 ~69 GiB
    assert bench.micro_batch_that_fits(shape, 140, 512, 15.7, room_gib=75.0) == 128
    assert bench.micro_batch_that_fits(shape, 140, 512, 15.7, room_gib=300.0) == 0
    assert bench.micro_batch_that_fits(shape, 140, 512, 15.7, room_gib=0.1) == 1


def test_save_random_writes_an_le_model_folder(bench, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from recbole_lea.le.testing import save_tiny_llm

    tok_dir = save_tiny_llm(tmp_path / "tok")
    assert bench.main(["--save_random", "tiny", str(tmp_path / "rand"), "--tokenizer", str(tok_dir)]) == 0
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "rand")
    assert model.config.vocab_size == len(AutoTokenizer.from_pretrained(tmp_path / "rand"))
    assert model.config.num_hidden_layers == bench.MODELS["tiny"][1]["num_hidden_layers"]
