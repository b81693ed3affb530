"""LE network: streaming == naive featurization, chunk contexts, what training updates, row mask."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from recbole_lea.data.split import training_row_mask
from recbole_lea.le.config import LEConfig
from recbole_lea.le.model import LEModel, naive_stream_features, plan_chunks, prefix_ids, stream_features
from recbole_lea.le.testing import tiny_llm
from recbole_lea.le.train import train_le


def _model(cfg: LEConfig, n_items: int = 20, seed: int = 1, arch: str = "llama") -> tuple[LEModel, list[int]]:
    llm, tok = tiny_llm(arch=arch)
    torch.manual_seed(seed)
    model = LEModel(llm, torch.randn(n_items, 32) * 0.5, cfg)
    for name, p in model.named_parameters():
        if "lora_B" in name:  # make the adapter non-trivial
            p.data.normal_(0, 0.1)
    return model.eval(), prefix_ids(tok, cfg)


@pytest.mark.parametrize("arch", ["llama", "gemma3"])
@pytest.mark.parametrize("lengths", [(2, 5, 7), (13, 17, 30)])
def test_streaming_equals_naive(lengths: tuple[int, ...], arch: str) -> None:
    cfg = LEConfig(le_history_len=3, le_chunk_len=8, le_item_noun="movie")
    model, prefix = _model(cfg, arch=arch)
    assert_streaming_equals_naive(model, prefix, cfg, lengths)


def assert_streaming_equals_naive(model: LEModel, prefix: list[int], cfg: LEConfig, lengths: tuple[int, ...]) -> None:
    """Random streams (items 0..19, 3 branches per step, -1: none) give the naive prompts' states
    and rewards through the streaming pass."""
    rng = np.random.default_rng(0)
    streams = [rng.integers(0, 20, size=n) for n in lengths]
    branches = [rng.integers(-1, 20, size=(n - 1, 3)) for n in lengths]
    got = stream_features(model, prefix, streams, branches, cfg, batch_chunks=3)
    for s, b, g in zip(streams, branches, got, strict=True):
        ref = naive_stream_features(model, prefix, s, b, cfg)
        assert g["states"].shape == (len(s), 32)
        np.testing.assert_allclose(g["states"], ref["states"], atol=1e-4, rtol=0)
        np.testing.assert_allclose(g["pos_reward"], ref["pos_reward"], atol=1e-4, rtol=0)
        np.testing.assert_allclose(g["branch_reward"], ref["branch_reward"], atol=1e-4, rtol=0)


def test_candidate_equal_to_next_item_matches_positive_reward() -> None:
    cfg = LEConfig(le_history_len=2, le_chunk_len=5)
    model, prefix = _model(cfg)
    items = np.arange(12) % 20
    branches = items[1:, None].copy()  # branch = the true next item
    got = stream_features(model, prefix, [items], [branches], cfg)[0]
    np.testing.assert_allclose(got["branch_reward"][:, 0], got["pos_reward"], atol=1e-5)


@pytest.mark.parametrize("n", [1, 2, 5, 11, 12, 40, 101])
def test_chunk_plan_contexts(n: int) -> None:
    C, L = 11, 4
    chunks = plan_chunks(n, C, L)
    owned = np.zeros(n, dtype=int)
    for start, end, lo, hi in chunks:
        assert end - start <= C
        owned[lo:hi] += 1
        for t in range(lo, hi):
            assert t - start + 1 >= min(L, t + 1)  # sees at least its last L items
            if t < n - 1:
                assert t + 1 < end  # the positive is read in the same chunk
    assert (owned == 1).all()


def test_training_changes_adapter_head_tokens_not_base() -> None:
    cfg = LEConfig(le_history_len=3, le_chunk_len=8, le_epochs=2, le_batch_size=2, le_lr=1e-2)
    model, prefix = _model(cfg)
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    rng = np.random.default_rng(0)
    streams = [rng.integers(0, 20, size=n) for n in (6, 9, 14)]
    hist = train_le(model, prefix, streams, np.arange(20), cfg, seed=0)
    assert len(hist) == 2 and {"loss", "l_rm", "l_sm", "accuracy", "margin"} <= set(hist[0])
    after = dict(model.named_parameters())
    changed = {k for k in before if not torch.equal(before[k], after[k].detach())}
    assert any("lora_A" in k for k in changed) and any("lora_B" in k for k in changed)
    assert "score_head.weight" in changed and "item_tokens" in changed
    frozen = [k for k in before if "lora_" not in k and not k.startswith(("score_head", "item_tokens", "state_proj"))]
    assert frozen and not (set(frozen) & changed)
    assert not any(after[k].requires_grad for k in frozen)


def test_training_row_mask_matches_recbole_rules() -> None:
    rows = []
    for u, n in (("a", 1), ("b", 2), ("c", 3), ("d", 4), ("e", 6)):
        rows += [(u, f"i{k}", 100 + k) for k in range(n)]
    rows.append(("e", "tie", 100))  # same time as e's first row, later in the file
    df = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"]).sample(frac=1, random_state=0)
    mask = training_row_mask(df, "user_id", "timestamp")
    got = set(df.loc[mask, ["user_id", "item_id"]].itertuples(index=False, name=None))
    expected = {("b", "i1"), ("c", "i1"), ("d", "i1"), ("e", "tie"), ("e", "i1"), ("e", "i2"), ("e", "i3")}
    assert got == expected


def test_item_tokens_learn_their_sentence() -> None:
    from recbole_lea.le.item_tokens import train_item_tokens

    llm, tok = tiny_llm()
    sents = [("", " movie is titled a b c , released 1 9 9 5"), ("", " movie is titled d e , genres : drama")]
    cfg0 = LEConfig(le_token_steps=0, le_token_batch=1)
    table0, rep0 = train_item_tokens(llm, tok, sents, cfg0)
    cfg = LEConfig(le_token_steps=150, le_token_lr=5e-2, le_token_batch=1)
    table, rep = train_item_tokens(llm, tok, sents, cfg)
    assert rep["final_loss"] < rep0["final_loss"] and rep["token_accuracy"] > rep0["token_accuracy"]
    assert table.shape == table0.shape == (2, 32)
    assert all(p.grad is None and not p.requires_grad for p in llm.parameters())  # LLM frozen


def test_item_tokens_without_steps_or_report_run_no_llm_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    """The cpu profile trains no token steps and asks for no accuracy: the initial table is the
    result and the LLM never runs (it took minutes for every item's sentence)."""
    from recbole_lea.le import item_tokens

    llm, tok = tiny_llm()
    sents = [("", " movie is titled a b c"), ("", " movie is titled d e")]
    with_report, _ = item_tokens.train_item_tokens(llm, tok, sents, LEConfig(le_token_steps=0, le_token_eval=True))

    def boom(*a, **k):  # type: ignore[no-untyped-def]
        raise AssertionError("the LLM ran")

    monkeypatch.setattr(item_tokens, "_loss_acc", boom)
    table, report = item_tokens.train_item_tokens(llm, tok, sents, LEConfig(le_token_steps=0, le_token_eval=False))
    assert torch.equal(table, with_report) and report["token_accuracy"] is None


def test_item_token_micro_batches_give_the_whole_batchs_tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    """le_token_micro_batch splits each item batch's forward/backward (memory) and accumulates the
    gradient: the trained tokens, accuracy and loss are the whole batch's within rounding."""
    from recbole_lea.le import item_tokens

    llm, tok = tiny_llm()
    sents = [("", f" movie is titled {' '.join('abcdefg'[: 2 + i % 5])} , released 19{90 + i}") for i in range(7)]
    cfg = LEConfig(le_token_steps=20, le_token_lr=5e-2, le_token_batch=7)
    whole, rep = item_tokens.train_item_tokens(llm, tok, sents, cfg)
    seen: list[int] = []
    orig = item_tokens._loss_acc

    def counting(llm_, vecs, batch, n):  # type: ignore[no-untyped-def]
        seen.append(int(vecs.shape[0]))
        return orig(llm_, vecs, batch, n)

    monkeypatch.setattr(item_tokens, "_loss_acc", counting)
    micro, rep_m = item_tokens.train_item_tokens(
        llm, tok, sents, LEConfig(**{**cfg.to_dict(), "le_token_micro_batch": 3})
    )
    assert max(seen) == 3 and len(seen) == 3 * 21  # 3 micro-batches (3, 3, 1) per step and the eval pass
    assert not torch.equal(whole, item_tokens.train_item_tokens(llm, tok, sents, LEConfig(le_token_steps=0))[0])
    torch.testing.assert_close(micro, whole, rtol=1e-4, atol=1e-5)
    assert rep_m["token_accuracy"] == rep["token_accuracy"]
    assert rep_m["final_loss"] == pytest.approx(rep["final_loss"], rel=1e-5)


@pytest.mark.parametrize("arch", ["llama", "gemma3"])
def test_item_tokens_start_on_the_embedding_modules_scale(arch: str) -> None:
    """Gemma's embedding module multiplies its table by sqrt(hidden); an item token replaces a module
    output, so its mean init must be on that scale (on the raw table it would be 5.7x too small here)."""
    from recbole_lea.le.item_tokens import encode_sentences, init_item_tokens

    llm, tok = tiny_llm(arch=arch)
    sents = encode_sentences(tok, [("", " movie is titled a b c"), ("", " movie is titled d e")], LEConfig())
    table = init_item_tokens(llm, sents, LEConfig(le_token_init="mean"), seed=0)
    module = llm.get_input_embeddings()
    for row, s in zip(table, sents, strict=True):
        ids = torch.tensor(s.text)
        torch.testing.assert_close(row, module(ids).mean(0).detach())
    scale = float(getattr(module, "embed_scale", 1.0))
    assert scale == pytest.approx(1.0 if arch == "llama" else 32**0.5)
    rand = init_item_tokens(llm, sents, LEConfig(le_token_init="random"), seed=0)
    assert 0.5 < rand.std().item() / module(torch.arange(len(tok))).std().item() < 2.0


def test_sequence_longer_than_a_sliding_window_is_refused() -> None:
    """Explicit 4D masks replace the LLM's own, so a sliding window would silently not apply."""
    from recbole_lea.le.data import LEInputError

    cfg = LEConfig(le_history_len=3, le_chunk_len=8)
    model, prefix = _model(cfg, arch="gemma3")
    model.body_config().sliding_window = len(prefix) + 4
    rng = np.random.default_rng(0)
    with pytest.raises(LEInputError, match="sliding window.*le_chunk_len"):
        stream_features(model, prefix, [rng.integers(0, 20, size=12)], [rng.integers(-1, 20, size=(11, 3))], cfg)
