"""Item tokenization (paper 3.2): one trainable input-embedding vector per item, LLM frozen, trained
so that the LLM generates the item's sentence ("[item] movie is titled ...") after it.

With ``le_item_repr: titles`` nothing is learned: :func:`title_items` encodes each item's text as
its title ids and takes the mean of their word embeddings as the frozen item vector."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from .config import LEConfig

logger = logging.getLogger(__name__)


@dataclass
class ItemSentence:
    before: list[int]  # tokens before the item slot (BOS etc.)
    after: list[int]  # target tokens after the item slot (truncated; EOS when not truncated)
    text: list[int]  # all text tokens of the untruncated sentence (for the mean init)


def encode_sentences(tokenizer, sentences: list[tuple[str, str]], cfg: LEConfig) -> list[ItemSentence]:
    eos = tokenizer.eos_token_id
    out = []
    for before, after in sentences:
        b = (
            list(tokenizer(before, add_special_tokens=True)["input_ids"])
            if before.strip()
            else list(tokenizer("", add_special_tokens=True)["input_ids"])
        )
        a = list(tokenizer(after, add_special_tokens=False)["input_ids"])
        text = [t for t in b + a if t not in tokenizer.all_special_ids] or a or b
        if cfg.le_token_max_len and len(a) > cfg.le_token_max_len:
            a = a[: cfg.le_token_max_len]  # cut sentence: no EOS (the sentence did not end)
        elif eos is not None:
            a = a + [eos]
        out.append(ItemSentence(b, a, text))
    return out


def init_item_tokens(llm: nn.Module, sents: list[ItemSentence], cfg: LEConfig, seed: int) -> torch.Tensor:
    """Item tokens on the scale the LLM's embedding *module* outputs: some LLMs (Gemma) multiply the
    table by sqrt(hidden) in the module, and item tokens replace module outputs in the input."""
    module = llm.get_input_embeddings()
    dev = module.weight.device

    @torch.no_grad()
    def words(ids: list[int] | torch.Tensor) -> torch.Tensor:  # [n H]
        return module(torch.as_tensor(ids, dtype=torch.long, device=dev)).float().cpu()

    if cfg.le_token_init == "random":
        g = torch.Generator().manual_seed(seed)
        out = torch.randn(len(sents), module.weight.shape[1], generator=g)
        sample = torch.randint(0, module.weight.shape[0], (4096,), generator=torch.Generator().manual_seed(seed))
        return out * words(sample).std().item()
    if cfg.le_token_init != "mean":
        raise ValueError(f"le_token_init must be mean|random, got {cfg.le_token_init!r}")
    return torch.stack([words(s.text).mean(0) for s in sents])


def _batch(sents: list[ItemSentence], pad_id: int, device) -> tuple[torch.Tensor, ...]:
    lens = [len(s.before) + 1 + len(s.after) for s in sents]
    B, T = len(sents), max(lens)
    ids = torch.full((B, T), pad_id, dtype=torch.long)
    attn = torch.zeros(B, T, dtype=torch.long)
    slot = torch.zeros(B, dtype=torch.long)
    labels = torch.full((B, T), -100, dtype=torch.long)
    for i, s in enumerate(sents):
        nb = len(s.before)
        ids[i, :nb] = torch.tensor(s.before, dtype=torch.long)
        slot[i] = nb
        ids[i, nb + 1 : lens[i]] = torch.tensor(s.after, dtype=torch.long)
        attn[i, : lens[i]] = 1
        # position j predicts token j+1: targets are the tokens after the slot
        labels[i, nb : lens[i] - 1] = torch.tensor(s.after, dtype=torch.long)
    return ids.to(device), attn.to(device), slot.to(device), labels.to(device)


def _loss_acc(
    llm: nn.Module, vecs: torch.Tensor, batch: tuple[torch.Tensor, ...], n_targets: int
) -> tuple[torch.Tensor, int, int]:
    """Cross-entropy of the batch's target tokens summed and divided by ``n_targets`` (the target
    count of the whole item batch, so that micro-batches' losses add up to the batch's mean)."""
    ids, attn, slot, labels = batch
    embeds = llm.get_input_embeddings()(ids)
    rows = torch.arange(ids.shape[0], device=ids.device)
    embeds = embeds.index_put((rows, slot), vecs.to(embeds.dtype))
    hidden = llm.model(inputs_embeds=embeds, attention_mask=attn, use_cache=False).last_hidden_state
    sel = labels >= 0
    logits = llm.lm_head(hidden[sel]).float()  # only target positions (the 49k-wide logits dominate)
    tgt = labels[sel]
    loss = nn.functional.cross_entropy(logits, tgt, reduction="sum") / n_targets
    correct = int((logits.argmax(-1) == tgt).sum())
    return loss, correct, int(tgt.numel())


def _batch_pass(
    llm: nn.Module,
    vec: torch.Tensor,
    micro: list[tuple[slice, tuple[torch.Tensor, ...]]],
    n_targets: int,
    backward: bool,
) -> tuple[float, int]:
    """One pass over an item batch in its micro-batches: the mean loss over the batch's targets and
    the correct count; with ``backward`` each micro-batch's share of the gradient is accumulated
    into ``vec.grad`` (every item's vector gets gradient from its own sentence only, so the
    accumulated gradient is the whole batch's)."""
    loss_sum, correct = 0.0, 0
    for rows, tensors in micro:
        loss, c, _ = _loss_acc(llm, vec[rows], tensors, n_targets)
        if backward:
            loss.backward()
        loss_sum += float(loss.detach())
        correct += c
    return loss_sum, correct


@dataclass
class ItemBatchResult:
    """One item batch's trained vectors and its accuracy counts (the unit a multi-process build
    assigns whole to one process and caches as one shard)."""

    idx: np.ndarray  # item indices of the batch
    vec: torch.Tensor  # [len(idx), H] float32, cpu
    correct0: int  # teacher-forced correct tokens at the first step (or of the init with 0 steps)
    total0: int
    correct1: int  # after the last step (or at the last step without le_token_eval)
    total1: int
    loss: float  # loss of the last pass


def item_token_batches(sents: list[ItemSentence], cfg: LEConfig) -> list[np.ndarray]:
    """The item batches, in the order one process trains them: sentences of similar length
    together (small padding), ``le_token_batch`` items each."""
    order = np.argsort([len(s.after) for s in sents], kind="stable")
    bs = max(1, cfg.le_token_batch)
    return [order[i : i + bs] for i in range(0, len(sents), bs)]


def train_item_batch(
    llm: nn.Module,
    sents: list[ItemSentence],
    idx: np.ndarray,
    table: torch.Tensor,
    cfg: LEConfig,
    pad: int,
    device: torch.device,
    bar=None,  # type: ignore[no-untyped-def]
) -> ItemBatchResult:
    """Train the item tokens of one batch from their rows of ``table`` (the initial vectors), in
    micro-batches of ``le_token_micro_batch`` items when set (less activation memory, the same
    gradient: see :func:`_batch_pass`)."""
    size = cfg.le_token_micro_batch or len(idx)
    micro = [
        (slice(i, i + size), _batch([sents[j] for j in idx[i : i + size]], pad, device))
        for i in range(0, len(idx), size)
    ]
    t = int(sum(len(sents[j].after) for j in idx))  # target tokens of the whole batch
    # a fresh parameter per batch: Adam state on a shared table would move rows without gradient
    vec = nn.Parameter(table[idx].clone().to(device))
    opt = torch.optim.Adam([vec], lr=cfg.le_token_lr)
    correct0 = total0 = 0
    loss, c = None, 0
    for step in range(cfg.le_token_steps):
        opt.zero_grad(set_to_none=True)
        loss, c = _batch_pass(llm, vec, micro, t, backward=True)
        if step == 0:
            correct0, total0 = c, t
        opt.step()
        if bar is not None:
            bar.update(len(idx))
    if cfg.le_token_eval or cfg.le_token_steps == 0:
        with torch.no_grad():
            loss, c = _batch_pass(llm, vec, micro, t, backward=False)
        if cfg.le_token_steps == 0:
            correct0, total0 = c, t
            if bar is not None:
                bar.update(len(idx))
    assert loss is not None
    return ItemBatchResult(idx, vec.detach().float().cpu(), correct0, total0, c, t, loss)


def item_token_report(results: list[ItemBatchResult], n: int, cfg: LEConfig) -> dict[str, float]:
    """The stage report of the item-token batches ``results`` (in batch order)."""
    correct0 = total0 = correct1 = total1 = 0
    loss_sum, n_batches = 0.0, 0
    for r in results:
        correct0, total0 = correct0 + r.correct0, total0 + r.total0
        correct1, total1 = correct1 + r.correct1, total1 + r.total1
        loss_sum += r.loss
        n_batches += 1
    report = {
        "token_accuracy_init": correct0 / max(total0, 1),
        "token_accuracy": correct1 / max(total1, 1),
        "final_loss": loss_sum / max(n_batches, 1),
        "items": n,
        "steps": cfg.le_token_steps,
        "accuracy_is_after_last_step": bool(cfg.le_token_eval or cfg.le_token_steps == 0),
    }
    logger.info(
        "item tokens: teacher-forced token accuracy %.3f (init %.3f), loss %.3f over %d items",
        report["token_accuracy"],
        report["token_accuracy_init"],
        report["final_loss"],
        n,
    )
    return report


def prepare_item_tokens(
    llm: nn.Module, tokenizer, sentences: list[tuple[str, str]], cfg: LEConfig, seed: int = 0
) -> tuple[list[ItemSentence], torch.Tensor]:
    """Freeze the LLM, encode the item sentences and initialise the table (every process of a
    multi-process build does this identically)."""
    for p in llm.parameters():
        p.requires_grad_(False)
    sents = encode_sentences(tokenizer, sentences, cfg)
    return sents, init_item_tokens(llm, sents, cfg, seed)


def pad_id(tokenizer) -> int:  # type: ignore[no-untyped-def]
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0


def trains_nothing(cfg: LEConfig) -> bool:
    """No steps and no accuracy pass: the initial table is the stage's result."""
    return cfg.le_token_steps == 0 and not cfg.le_token_eval


def train_item_tokens(
    llm: nn.Module, tokenizer, sentences: list[tuple[str, str]], cfg: LEConfig, seed: int = 0
) -> tuple[torch.Tensor, dict[str, float]]:
    """Return (item token table [n_items, H] float32, report)."""
    device = next(llm.parameters()).device
    sents, table = prepare_item_tokens(llm, tokenizer, sentences, cfg, seed)
    n = len(sents)
    if trains_nothing(cfg):
        # nothing to train and no report asked for: the initial table is the result, and the
        # teacher-forced pass over every item's sentence (minutes on a CPU) is skipped
        logger.info("item tokens: %d items initialised (%s), no training steps, no accuracy pass", n, cfg.le_token_init)
        return table, {"items": n, "steps": 0, "token_accuracy": None, "token_accuracy_init": None}
    pad = pad_id(tokenizer)
    results = []
    bar = tqdm(total=n * max(cfg.le_token_steps, 1), desc="item tokens", unit="item-step", mininterval=5)
    for idx in item_token_batches(sents, cfg):
        res = train_item_batch(llm, sents, idx, table, cfg, pad, device, bar)
        results.append(res)
        table[idx] = res.vec
    bar.close()
    return table, item_token_report(results, n, cfg)


# --- items as titles (le_item_repr: titles; paper Fig. 5b, -IT) ------------------------------------
def encode_titles(tokenizer, titles: list[str], k: int) -> tuple[torch.Tensor, int]:  # type: ignore[no-untyped-def]
    """([n_items, k] word-token ids of each item's text cut to ``k`` tokens, -1 in the pad slots;
    the number of texts that were cut).

    The text is encoded as it would follow other text (a leading space, no special tokens, as the
    item sentence's part after the [item] slot is); a first token that is only that space is
    dropped. An empty text becomes one EOS token (an item needs a last token to be read at)."""
    fallback = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else pad_id(tokenizer)
    out = torch.full((len(titles), k), -1, dtype=torch.long)
    cut = 0
    for i, text in enumerate(titles):
        ids = list(tokenizer(" " + text, add_special_tokens=False)["input_ids"]) if text.strip() else []
        if len(ids) > 1 and not tokenizer.decode(ids[:1]).strip():
            ids = ids[1:]
        cut += len(ids) > k
        ids = ids[:k] or [fallback]
        out[i, : len(ids)] = torch.tensor(ids, dtype=torch.long)
    return out, cut


@torch.no_grad()
def title_mean_table(llm: nn.Module, titles: torch.Tensor, batch: int = 1024) -> torch.Tensor:
    """[n_items, H] float32: the mean of each title's word embeddings (as the embedding module
    outputs them); the frozen item vector of titles mode, read only where the state model's loss
    compares a state with items, and written as the LE folder's item tokens."""
    module = llm.get_input_embeddings()
    parts = []
    for i in range(0, len(titles), batch):
        ids = titles[i : i + batch]
        real = (ids >= 0).unsqueeze(-1)
        words = module(ids.clamp(min=0).to(module.weight.device)).float().cpu()  # [b k H]
        parts.append((words * real).sum(1) / real.sum(1).clamp(min=1))
    return torch.cat(parts) if parts else torch.zeros(0, module.weight.shape[1])


def title_items(
    llm: nn.Module, tokenizer, titles: list[str], cfg: LEConfig
) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
    """The item_tokens stage in titles mode, no optimisation: (title ids [n, k] with -1 pads,
    the frozen mean table [n, H], report)."""
    for p in llm.parameters():
        p.requires_grad_(False)
    ids, cut = encode_titles(tokenizer, titles, cfg.le_title_tokens)
    table = title_mean_table(llm, ids)
    mean_len = float((ids >= 0).sum(1).float().mean()) if len(titles) else 0.0
    report = {
        "items": len(titles),
        "representation": "titles",
        "title_tokens": cfg.le_title_tokens,
        "mean_title_tokens": mean_len,
        "titles_cut": cut,
    }
    logger.info(
        "item titles: %d items as at most %d word tokens (mean %.1f, %d cut), no item tokens learned",
        len(titles),
        cfg.le_title_tokens,
        mean_len,
        cut,
    )
    return ids, table, report
