"""benchmarks/gpu_le_scale.py: the model configurations are the published ones (their parameter
counts), the FLOP count adds up, and ``--tiny`` runs every stage and the projection on a CPU."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def bench():  # type: ignore[no-untyped-def]
    sys.path.insert(0, str(BENCH))
    try:
        import gpu_le_scale

        yield gpu_le_scale
    finally:
        sys.path.remove(str(BENCH))


@pytest.mark.parametrize(("key", "params"), [("7b", 7_241_732_096), ("1b", 1_235_814_400)])
def test_model_configurations_have_the_published_sizes(bench, key: str, params: int) -> None:  # type: ignore[no-untyped-def]
    from transformers import AutoConfig, AutoModelForCausalLM

    spec = dict(bench.MODELS[key][1])
    cfg = AutoConfig.for_model(spec.pop("model_type"), **spec)
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
