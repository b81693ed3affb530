"""Items as titles (``le_item_repr: titles``, the paper's -IT ablation of Fig. 5b): the title
encoding, streaming == naive in titles mode, the cache keys, and a whole tiny LE built that way."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from test_le_stream import assert_streaming_equals_naive

from recbole_lea.le.build import build_le
from recbole_lea.le.cache import StageCache
from recbole_lea.le.config import STAGES, LEConfig, resolve_config
from recbole_lea.le.item_tokens import encode_titles, title_mean_table
from recbole_lea.le.model import LEModel, prefix_ids, stream_features
from recbole_lea.le.plan import plan_le
from recbole_lea.le.testing import TINY_DATASET_KEYS, TINY_PROFILE, save_tiny_llm, tiny_llm, write_tiny_dataset
from recbole_lea.le.train import train_le

K = 4  # word slots per item in these tests


def _titles(n_items: int, k: int, vocab: int, seed: int = 0) -> torch.Tensor:
    """Random titles of 1..k words (-1 in the pad slots); item 0 fills all k slots, item 1 one."""
    rng = np.random.default_rng(seed)
    out = torch.full((n_items, k), -1, dtype=torch.long)
    for i in range(n_items):
        n = k if i == 0 else 1 if i == 1 else int(rng.integers(1, k + 1))
        out[i, :n] = torch.from_numpy(rng.integers(4, vocab, size=n))
    return out


def _model(cfg: LEConfig, n_items: int = 20, arch: str = "llama") -> tuple[LEModel, list[int]]:
    llm, tok = tiny_llm(arch=arch)
    titles = _titles(n_items, cfg.le_title_tokens, len(tok))
    torch.manual_seed(1)
    model = LEModel(llm, title_mean_table(llm, titles), cfg, titles=titles)
    for name, p in model.named_parameters():
        if "lora_B" in name:  # make the adapter non-trivial
            p.data.normal_(0, 0.1)
    return model.eval(), prefix_ids(tok, cfg)


def _cfg(**extra: object) -> LEConfig:
    return LEConfig(
        le_history_len=3, le_chunk_len=8, le_item_noun="movie", le_item_repr="titles", le_title_tokens=K, **extra
    )


@pytest.mark.parametrize("arch", ["llama", "gemma3"])
@pytest.mark.parametrize("lengths", [(2, 5, 7), (13, 17, 30)])
def test_title_streaming_equals_naive(lengths: tuple[int, ...], arch: str) -> None:
    """The streaming pass (spans of K slots, pad slots masked, branches after the stream) gives
    the states and rewards of one plain causal prompt of the titles' words per interaction."""
    cfg = _cfg()
    model, prefix = _model(cfg, arch=arch)
    assert_streaming_equals_naive(model, prefix, cfg, lengths)


def test_title_candidate_equal_to_next_item_matches_positive_reward() -> None:
    cfg = LEConfig(le_history_len=2, le_chunk_len=5, le_item_repr="titles", le_title_tokens=K)
    model, prefix = _model(cfg)
    items = np.arange(12) % 20
    got = stream_features(model, prefix, [items], [items[1:, None].copy()], cfg)[0]
    np.testing.assert_allclose(got["branch_reward"][:, 0], got["pos_reward"], atol=1e-5)


def test_pad_slots_change_nothing() -> None:
    """The same titles in wider spans (three more pad slots each) give the same features."""
    cfg = _cfg()
    model, prefix = _model(cfg)
    assert model.titles is not None
    rng = np.random.default_rng(3)
    streams = [rng.integers(0, 20, size=n) for n in (6, 11)]
    branches = [rng.integers(-1, 20, size=(n - 1, 2)) for n in (6, 11)]
    narrow = stream_features(model, prefix, streams, branches, cfg)
    model.titles = torch.cat([model.titles, torch.full((len(model.titles), 3), -1, dtype=torch.long)], dim=1)
    wide = stream_features(model, prefix, streams, branches, cfg)
    for x, y in zip(narrow, wide, strict=True):
        for key in ("states", "pos_reward", "branch_reward"):
            np.testing.assert_allclose(x[key], y[key], atol=1e-5, rtol=0)


def test_title_training_moves_adapter_and_head_not_the_item_vectors() -> None:
    cfg = _cfg(le_epochs=1, le_batch_size=2, le_lr=1e-2)
    model, prefix = _model(cfg)
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    rng = np.random.default_rng(0)
    hist = train_le(model, prefix, [rng.integers(0, 20, size=n) for n in (6, 9)], np.arange(20), cfg, seed=0)
    assert np.isfinite(hist[0]["loss"])
    after = dict(model.named_parameters())
    changed = {k for k in before if not torch.equal(before[k], after[k].detach())}
    assert any("lora_B" in k for k in changed) and "score_head.weight" in changed
    assert "item_tokens" not in changed and not model.item_tokens.requires_grad


def test_encode_titles_cuts_pads_and_means() -> None:
    llm, tok = tiny_llm()
    ids, cut = encode_titles(tok, ["a b c d e f", "movie", ""], 4)
    words = [tok.convert_tokens_to_ids(w) for w in "a b c d".split()]
    assert ids[0].tolist() == words and cut == 1
    assert ids[1].tolist() == [tok.convert_tokens_to_ids("movie"), -1, -1, -1]
    assert ids[2].tolist() == [tok.eos_token_id, -1, -1, -1]  # an empty text: one EOS to read at
    table = title_mean_table(llm, ids)
    emb = llm.get_input_embeddings().weight.detach()
    torch.testing.assert_close(table[0], emb[words].mean(0))
    torch.testing.assert_close(table[1], emb[int(ids[1, 0])])


def test_tokens_and_titles_get_different_keys(tmp_path: Path) -> None:
    data = tmp_path / "data"
    write_tiny_dataset(data, n_users=4)
    base = {**TINY_DATASET_KEYS, "le_model": str(save_tiny_llm(tmp_path / "llm")), "le_cache_dir": str(tmp_path)}

    def plan(**extra: object):  # type: ignore[no-untyped-def]
        return plan_le("tiny", data, resolve_config("tiny", dict(TINY_PROFILE), {**base, **extra}, data))

    tokens, titles = plan(), plan(le_item_repr="titles")
    assert tokens.fingerprint != titles.fingerprint
    assert {s for s in STAGES if tokens.fps[s] != titles.fps[s]} == set(STAGES) - {"candidates"}
    # the span width keys the titles LE; with item tokens it changes nothing, nor any key
    assert plan(le_item_repr="titles", le_title_tokens=5).fingerprint != titles.fingerprint
    assert plan(le_title_tokens=5).fps == tokens.fps


@pytest.fixture(scope="module")
def two_builds(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("titles")
    data = root / "data"
    write_tiny_dataset(data, n_users=12)
    llm = save_tiny_llm(root / "llm")
    ov = {**TINY_DATASET_KEYS, "le_model": str(llm), "le_cache_dir": str(root / "cache"), "le_title_tokens": 6}
    return {
        "tokens": build_le("tiny", data, dict(TINY_PROFILE), ov),
        "titles": build_le("tiny", data, dict(TINY_PROFILE), {**ov, "le_item_repr": "titles"}),
        "cache": root / "cache",
    }


def _le_columns(out: Path) -> dict[str, np.ndarray]:
    df = pd.read_csv(out / "tiny-lea.inter", sep="\t", dtype=str)
    df.columns = [c.split(":")[0] for c in df.columns]
    train = df["le_train"].astype(float).to_numpy() == 1
    cols = {c: df[c].astype(float).to_numpy()[train] for c in ("le_reward", "le_neg_reward", "le_aug_reward")}
    for c in ("le_state", "le_next_state"):
        cols[c] = np.array([[float(x) for x in s.split()] for s in df[c]])[train]
    return cols


def test_titles_le_builds_end_to_end(two_builds: dict) -> None:
    """A whole tiny LE with items as titles: every LE number finite, not the tokens LE's numbers;
    its item_tokens stage kept the titles (no item tokens learned), and the written item vectors
    are the frozen means of their titles' word embeddings."""
    tokens, titles = _le_columns(two_builds["tokens"]), _le_columns(two_builds["titles"])
    for name, values in titles.items():
        assert values.size and np.isfinite(values).all(), name
        assert not np.allclose(values, tokens[name]), name
    man = json.loads((two_builds["titles"] / "manifest.json").read_text())
    assert man["config"]["le_item_repr"] == "titles"
    report = man["reports"]["item_tokens"]
    assert report["representation"] == "titles" and report["title_tokens"] == 6
    stage = StageCache(two_builds["cache"]).path("item_tokens", man["stages"]["item_tokens"])
    ids = torch.load(stage / "item_titles.pt", weights_only=True)
    assert ids.shape == (report["items"], 6) and (ids[:, 0] >= 0).all()
    written = torch.load(two_builds["titles"] / "le_item_tokens.pt", weights_only=True)["item_tokens"]
    torch.testing.assert_close(written, torch.load(stage / "item_tokens.pt", weights_only=True))
