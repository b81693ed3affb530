"""What the LE reads of its LLM is what it trusts (issue 33): every file the loading reads enters
the ``--le_model`` folder's fingerprint, the converted copy of a GGUF model is checked against the
sha256 recorded at conversion, and no code or pickle from a model folder is ever run."""

from __future__ import annotations

import ast
import json
import logging
from pathlib import Path

import pytest
import torch

import recbole_lea
from recbole_lea.errors import ConfigError
from recbole_lea.files import sha256_file
from recbole_lea.le import llm as le_llm
from recbole_lea.le.config import LEConfig, resolve_config
from recbole_lea.le.data import LEInputError
from recbole_lea.le.plan import plan_le
from recbole_lea.le.testing import TINY_DATASET_KEYS, TINY_PROFILE, save_tiny_llm, tiny_llm, write_tiny_dataset


@pytest.fixture()
def llm_dir(tmp_path: Path) -> Path:
    return save_tiny_llm(tmp_path / "tiny-llama")


def _cfg(model: Path | str, cache: Path) -> LEConfig:
    return LEConfig(le_model=str(model), le_cache_dir=str(cache), le_device="cpu")


# --- 1. the fingerprint covers every file the loading reads ----------------------------------------
def test_tokenizer_and_every_loaded_file_change_the_fingerprint(llm_dir: Path, tmp_path: Path) -> None:
    """Changing tokenizer.json changes the model's fingerprint and so the LE's (the build is not
    "up to date"); so do the other files transformers reads (tokenizer config, generation config,
    chat template, sentencepiece model, files in a subfolder); a README, a hidden file or a lock
    file does not."""
    data = tmp_path / "data"
    write_tiny_dataset(data, n_users=4)
    ov = {**TINY_DATASET_KEYS, "le_model": str(llm_dir), "le_cache_dir": str(tmp_path / "c"), "le_device": "cpu"}
    cfg = resolve_config("tiny", dict(TINY_PROFILE), ov, data)
    fp0, le0 = le_llm.model_source(cfg).fingerprint, plan_le("tiny", data, cfg).fingerprint
    tok = json.loads((llm_dir / "tokenizer.json").read_text())
    tok["model"]["vocab"]["zebra"] = len(tok["model"]["vocab"])
    (llm_dir / "tokenizer.json").write_text(json.dumps(tok))
    fp1 = le_llm.model_source(cfg).fingerprint
    assert fp1 != fp0
    assert plan_le("tiny", data, cfg).fingerprint != le0
    seen = {fp0, fp1}
    for rel, text in [
        ("tokenizer_config.json", '{"model_max_length": 7}'),
        ("special_tokens_map.json", '{"eos_token": "."}'),
        ("generation_config.json", '{"do_sample": true}'),
        ("chat_template.jinja", "{{ messages }}"),
        ("tokenizer.model", "sentencepiece bytes"),
        ("merges.txt", "a b"),
        ("sub/extra.json", "{}"),
    ]:
        (llm_dir / rel).parent.mkdir(exist_ok=True)
        (llm_dir / rel).write_text(text)
        fp = le_llm.model_source(cfg).fingerprint
        assert fp not in seen, f"{rel} changed nothing"
        seen.add(fp)
    for rel in ("README.md", ".gitattributes", ".cache/huggingface/download/x.metadata", "model.safetensors.lock"):
        (llm_dir / rel).parent.mkdir(parents=True, exist_ok=True)
        (llm_dir / rel).write_text("irrelevant")
        assert le_llm.model_source(cfg).fingerprint == fp, f"{rel} changed the fingerprint"


# --- 2. the converted copy of a GGUF model is checked on use ---------------------------------------
@pytest.fixture()
def fake_gguf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    """A GGUF source whose conversion is the tiny Llama: transformers' GGUF readers are replaced
    (making a real GGUF in a test is impractical), the rest of the conversion (strip the quantizer,
    save, record, rename) runs as it does for a real one. ``calls`` counts conversions."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    calls: list[str] = []
    orig_model, orig_tok = AutoModelForCausalLM.from_pretrained, AutoTokenizer.from_pretrained

    def model_from(cls, *a, **k):  # type: ignore[no-untyped-def]
        if "gguf_file" not in k:
            return orig_model(*a, **k)
        calls.append(k["gguf_file"])
        return tiny_llm(0)[0]

    def tok_from(cls, *a, **k):  # type: ignore[no-untyped-def]
        return tiny_llm(0)[1] if "gguf_file" in k else orig_tok(*a, **k)

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", classmethod(model_from))
    monkeypatch.setattr(AutoTokenizer, "from_pretrained", classmethod(tok_from))
    gguf = tmp_path / "m" / "tiny.gguf"
    gguf.parent.mkdir()
    gguf.write_bytes(b"GGUF fake weights")
    cfg = _cfg(gguf, tmp_path / "cache")
    return {"cfg": cfg, "src": le_llm.model_source(cfg), "calls": calls}


def test_converted_gguf_folder_records_and_verifies_its_files(
    fake_gguf: dict, caplog: pytest.LogCaptureFixture
) -> None:
    """done.json records the sha256 of every converted file; a converted copy whose weights were
    overwritten is converted again (a warning names the file) instead of being used with the
    GGUF's fingerprint; an intact one is reused without converting."""
    cfg, src, calls = fake_gguf["cfg"], fake_gguf["src"], fake_gguf["calls"]
    folder = le_llm.converted_folder(src, cfg)
    assert calls == ["tiny.gguf"]
    done = json.loads((folder / "done.json").read_text())
    weights = folder / "model.safetensors"
    assert done["checksums"]["model.safetensors"] == sha256_file(weights)
    assert {"config.json", "tokenizer.json"} <= set(done["checksums"])
    good = sha256_file(weights)
    assert le_llm.converted_folder(src, cfg) == folder and len(calls) == 1  # intact: reused
    with open(weights, "r+b") as fh:  # overwrite up to 1 MiB of the weights in place
        size = weights.stat().st_size
        fh.seek(size // 4)
        fh.write(b"\x7f" * min(1 << 20, size // 2))
    with caplog.at_level(logging.WARNING, logger=le_llm.logger.name):
        assert le_llm.converted_folder(src, cfg) == folder
    assert len(calls) == 2, "a modified converted copy was used as it is"
    assert sha256_file(weights) == good
    assert any("model.safetensors" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    model, tok, *_ = le_llm.load_llm(cfg, src)  # the repaired copy loads
    assert isinstance(model, torch.nn.Module) and len(tok) > 0


def test_converted_gguf_folder_without_checksums_or_with_a_missing_file_is_reconverted(fake_gguf: dict) -> None:
    """A converted folder of an older version (done.json without checksums), one that lost a file
    and one given a file the conversion did not write are never trusted: each is converted again."""
    cfg, src, calls = fake_gguf["cfg"], fake_gguf["src"], fake_gguf["calls"]
    folder = le_llm.converted_folder(src, cfg)
    (folder / "done.json").write_text(json.dumps({"source": str(src.path), "sha256": src.fingerprint}))
    le_llm.converted_folder(src, cfg)
    assert len(calls) == 2
    (folder / "tokenizer.json").unlink()
    le_llm.converted_folder(src, cfg)
    assert len(calls) == 3 and (folder / "tokenizer.json").is_file()
    (folder / "extra.py").write_text("x = 1\n")  # a file the conversion did not write
    le_llm.converted_folder(src, cfg)
    assert len(calls) == 4 and not (folder / "extra.py").exists()


# --- 3. no code from a model folder -------------------------------------------------------------
@pytest.mark.parametrize("declared_in", ["config.json", "tokenizer_config.json"])
def test_folder_with_custom_code_is_refused_before_loading(llm_dir: Path, tmp_path: Path, declared_in: str) -> None:
    """A folder whose config.json (or tokenizer_config.json) declares auto_map is one LEInputError
    (a ConfigError: exit 2) naming the folder, before anything is loaded; its code never runs."""
    marker = tmp_path / "ran"
    (llm_dir / "modeling_evil.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    path = llm_dir / declared_in
    conf = json.loads(path.read_text()) if path.exists() else {}
    conf["auto_map"] = {"AutoModelForCausalLM": "modeling_evil.EvilForCausalLM", "AutoTokenizer": ["modeling_evil.T"]}
    path.write_text(json.dumps(conf))
    cfg = _cfg(llm_dir, tmp_path / "c")
    with pytest.raises(LEInputError, match=rf"{llm_dir.name}.*{declared_in} declares auto_map.*never runs code") as err:
        le_llm.model_source(cfg)
    assert isinstance(err.value, ConfigError)
    with pytest.raises(LEInputError, match="auto_map"):
        le_llm.load_llm(cfg)
    assert not marker.exists()


def test_every_transformers_load_passes_trust_remote_code_false() -> None:
    """Every from_pretrained / from_config call in the package says trust_remote_code=False (never
    transformers' default, which asks "[y/N]" for a folder with custom code)."""
    root = Path(recbole_lea.__file__).parent
    calls, missing = 0, []
    for py in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(py.read_text(encoding="utf-8"))):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            if node.func.attr not in ("from_pretrained", "from_config"):
                continue
            calls += 1
            kw = {k.arg: k.value for k in node.keywords}
            value = kw.get("trust_remote_code")
            if not (isinstance(value, ast.Constant) and value.value is False):
                missing.append(f"{py.relative_to(root)}:{node.lineno}")
    assert calls >= 6
    assert missing == []


# --- 4. no pickled weights ----------------------------------------------------------------------
@pytest.mark.parametrize("name", ["pytorch_model.bin", "model.pt", "weights.pth", "last.ckpt"])
def test_pickled_weights_are_one_message_naming_the_file(llm_dir: Path, tmp_path: Path, name: str) -> None:
    """A folder with pickled weights and no safetensors is one LEInputError naming the file and the
    conversion to safetensors, raised before loading (no torch.load traceback)."""
    weights = llm_dir / "model.safetensors"
    torch.save(tiny_llm(0)[0].state_dict(), llm_dir / name)
    weights.unlink()
    cfg = _cfg(llm_dir, tmp_path / "c")
    with pytest.raises(LEInputError, match=rf"{name}.*pickle.*safetensors.*save_pretrained") as err:
        le_llm.model_source(cfg)
    assert isinstance(err.value, ConfigError)
    with pytest.raises(LEInputError, match=name):
        le_llm.load_llm(cfg)


def test_pickled_file_beside_safetensors_weights_is_accepted(llm_dir: Path, tmp_path: Path) -> None:
    """transformers reads the safetensors weights when both are there: no refusal."""
    torch.save({"step": 1}, llm_dir / "training_args.bin")
    src = le_llm.model_source(_cfg(llm_dir, tmp_path / "c"))
    assert src.kind == "hf"
