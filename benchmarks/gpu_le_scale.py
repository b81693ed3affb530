"""The LE at the paper's scale on one GPU: each LLM stage of the LE build timed on ml-100k's rows
with randomly initialised models of Mistral-7B-v0.1's exact configuration and of a 1B-class one
(Llama-3.2-1B's), against the GPU's bf16 dense peak; then the whole build projected for the
paper's LFM and Industry sets on N GPUs.

    python benchmarks/gpu_le_scale.py                       # one GPU, about 2 min on an H200 (measured), no download
    python benchmarks/gpu_le_scale.py --tiny                # CPU, a small config, seconds (tested)
    python benchmarks/gpu_le_scale.py --models 7b --json out.json --peak_tflops 989
    python benchmarks/gpu_le_scale.py --models 7b --industry    # + item tokens on amazon-scientific's sentences
    python benchmarks/gpu_le_scale.py --save_random 1b DIR --tokenizer TOK   # a random le_model folder

Per model and stage it prints the time of the timed steps, the rate (item-token steps/s, LE
training tokens/s, featurized interactions/s), the model FLOPs of those steps and the model FLOP
utilisation (MFU) against ``--peak_tflops`` (default: 989 on H100/H200, the bf16 dense peak),
the peak GPU memory, and, where a stage is below 35% MFU, what bounds it: padding, attention
over explicit masks (no fused causal kernel), host-side batch preparation, or batches too small
to fill the GPU. Model FLOPs count the useful work only: every linear layer on the real tokens,
attention on the attended (query, key) pairs, the LM head on item-token targets; backward passes
compute input gradients only (frozen LLM), i.e. as many linear FLOPs as the forward and twice
its attention FLOPs; LoRA's own FLOPs are left out (< 0.1%).

The weights are random (no download, same arithmetic as trained ones). The candidates stage
(RecBole's SASRec backbone) and writing the LE folder do not run the LLM and are not timed here
(docs/le.md has their measured times). Item sentences are tokenized with a tokenizer found locally
(``--tokenizer``, else the converted SmolLM2 one in the LE cache) with its ids folded into the
model's vocabulary, else with a word-level tokenizer of the dataset's words (fewer tokens per
sentence than a BPE; said in the output).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recbole_lea.le.config import LEConfig, resolve_config  # noqa: E402
from recbole_lea.le.data import item_sentences, load_base, training_item_pool, training_streams  # noqa: E402
from recbole_lea.le.item_tokens import (  # noqa: E402
    encode_sentences,
    init_item_tokens,
    item_token_batches,
    train_item_batch,
)
from recbole_lea.le.model import LEModel, prefix_ids, stream_features, user_chunks  # noqa: E402
from recbole_lea.le.train import epoch_jobs, le_losses  # noqa: E402

#: Mistral-7B-v0.1's config.json (mistralai/Mistral-7B-v0.1, transformers' MistralConfig names)
MISTRAL_7B = {
    "model_type": "mistral",
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "vocab_size": 32000,
    "max_position_embeddings": 32768,
    "rope_theta": 10000.0,
    "sliding_window": 4096,
    "rms_norm_eps": 1e-5,
    "hidden_act": "silu",
    "tie_word_embeddings": False,
    "bos_token_id": 1,
    "eos_token_id": 2,
}
#: Llama-3.2-1B's config.json (meta-llama/Llama-3.2-1B)
LLAMA_1B = {
    "model_type": "llama",
    "hidden_size": 2048,
    "intermediate_size": 8192,
    "num_hidden_layers": 16,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "head_dim": 64,
    "vocab_size": 128256,
    "max_position_embeddings": 131072,
    "rope_theta": 500000.0,
    "rope_scaling": {
        "rope_type": "llama3",
        "factor": 32.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 8192,
    },
    "rms_norm_eps": 1e-5,
    "hidden_act": "silu",
    "tie_word_embeddings": True,
    "bos_token_id": 128000,
    "eos_token_id": 128001,
}
#: --tiny: seconds on a CPU
TINY = {
    "model_type": "llama",
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "vocab_size": 4096,
    "max_position_embeddings": 2048,
    "rms_norm_eps": 1e-5,
    "hidden_act": "silu",
    "tie_word_embeddings": True,
    "bos_token_id": 1,
    "eos_token_id": 2,
}
MODELS = {"7b": ("Mistral-7B-v0.1", MISTRAL_7B), "1b": ("Llama-3.2-1B", LLAMA_1B), "tiny": ("tiny", TINY)}
#: bf16 dense peak TFLOPS by GPU name (H100 SXM and H200: 989.4; A100: 312)
PEAKS = {"H100": 989.4, "H200": 989.4, "A100": 312.0}
#: the paper's datasets (Table 1): items, sequences, interactions
PAPER_SETS = {"LFM": (18_927, 11_073, 146_255), "Industry": (5_814, 10_935, 71_872)}
MFU_TARGET = 0.35


# --- model FLOPs ----------------------------------------------------------------------------------
@dataclass
class Shape:
    """What the FLOP count needs of a causal LM."""

    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    ffn: int
    vocab: int
    params: int

    @classmethod
    def of(cls, cfg: Any, params: int) -> Shape:
        hd = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        return cls(
            cfg.hidden_size,
            cfg.num_hidden_layers,
            cfg.num_attention_heads,
            cfg.num_key_value_heads,
            hd,
            cfg.intermediate_size,
            cfg.vocab_size,
            params,
        )

    @property
    def linear_per_token(self) -> int:
        """Weights of the linear layers one token goes through (q, k, v, o, gate, up, down)."""
        q = self.heads * self.head_dim
        kv = self.kv_heads * self.head_dim
        return self.layers * (self.hidden * (q + 2 * kv) + q * self.hidden + 3 * self.hidden * self.ffn)

    def forward(self, tokens: int, pairs: int, head_targets: int = 0) -> float:
        """Forward FLOPs of ``tokens`` tokens attending to ``pairs`` (query, key) pairs in total."""
        attn = 4 * self.heads * self.head_dim * pairs * self.layers
        return 2.0 * self.linear_per_token * tokens + attn + 2.0 * self.hidden * self.vocab * head_targets

    def input_backward(self, tokens: int, pairs: int, head_targets: int = 0) -> float:
        """Backward FLOPs for input gradients only (frozen weights)."""
        attn = 8 * self.heads * self.head_dim * pairs * self.layers
        return 2.0 * self.linear_per_token * tokens + attn + 2.0 * self.hidden * self.vocab * head_targets


# --- tokenizer --------------------------------------------------------------------------------------
class FoldedTokenizer:
    """A tokenizer whose ids are folded into a smaller vocabulary (random weights: any id will do,
    the token counts are what matter)."""

    def __init__(self, tok: Any, vocab: int, name: str):
        self.tok, self.vocab, self.name = tok, vocab, name

    def _fold(self, i: int | None) -> int | None:
        return None if i is None else int(i) % self.vocab

    @property
    def eos_token_id(self) -> int | None:
        return self._fold(self.tok.eos_token_id)

    @property
    def pad_token_id(self) -> int | None:
        return self._fold(self.tok.pad_token_id)

    @property
    def all_special_ids(self) -> list[int]:
        return [int(i) % self.vocab for i in self.tok.all_special_ids]

    def __call__(self, text: str, add_special_tokens: bool = True) -> dict[str, list[int]]:
        ids = self.tok(text, add_special_tokens=add_special_tokens)["input_ids"]
        return {"input_ids": [int(i) % self.vocab for i in ids]}


def word_tokenizer(texts: list[str]) -> Any:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, "<pad>": 3}
    for text in texts:
        for w in pre_tokenizers.Whitespace().pre_tokenize_str(text):
            vocab.setdefault(w[0], len(vocab))
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    from tokenizers import processors

    tk.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tk, unk_token="<unk>", bos_token="<s>", eos_token="</s>", pad_token="<pad>"
    )


def find_tokenizer(arg: str | None, cfg: LEConfig, texts: list[str]) -> tuple[Any, str]:
    """--tokenizer, else a converted SmolLM2 folder in the LE cache or .cache/le_gpu, else word-level."""
    from transformers import AutoTokenizer

    candidates = [Path(arg)] if arg else []
    candidates += sorted((cfg.cache_dir() / "models").glob("*/tokenizer.json"))
    candidates += [Path(".cache/le_gpu/smol_cfg/tokenizer.json")]
    for c in candidates:
        folder = c if c.is_dir() else c.parent
        if (folder / "tokenizer.json").is_file() or (folder / "tokenizer_config.json").is_file():
            try:
                return AutoTokenizer.from_pretrained(folder, local_files_only=True), f"BPE tokenizer of {folder}"
            except (OSError, ValueError):
                continue
    return word_tokenizer(texts), "word-level tokenizer of the dataset's words (fewer tokens than a BPE)"


# --- measurement ------------------------------------------------------------------------------------
@dataclass
class StageResult:
    stage: str
    seconds: float
    units: float  # item-steps / tokens / interactions in the timed part
    unit: str
    flops: float
    peak_mem_gib: float | None
    real_tokens: int
    padded_tokens: int
    dense_pairs: int  # (query, key) pairs the attention kernel computes with an explicit mask
    useful_pairs: int
    host_share: float | None = None  # wall share outside the LLM's forward (host preparation etc.)
    items: int = 0  # item-token stage: items in the timed batch
    reference_mfu: float | None = None  # a plain causal forward of the same padded shape
    notes: list[str] = field(default_factory=list)

    def rate(self) -> float:
        return self.units / self.seconds if self.seconds > 0 else float("nan")

    def mfu(self, peak: float | None) -> float | None:
        return self.flops / self.seconds / peak if peak and self.seconds > 0 else None

    def bound(self, peak: float | None) -> str:
        """What keeps this stage below the MFU target (largest measured factor first)."""
        parts = []
        pad = 1 - self.real_tokens / self.padded_tokens if self.padded_tokens else 0.0
        mask = 1 - self.useful_pairs / self.dense_pairs if self.dense_pairs else 0.0
        if pad > 0.1:
            parts.append((pad, f"padding ({pad:.0%} of the tokens computed are pad)"))
        if mask > 0.3:
            parts.append(
                (
                    mask * 0.5,
                    f"attention over an explicit 4-D mask ({mask:.0%} of the (query, key) pairs computed are masked)",
                )
            )
        if self.host_share is not None and self.host_share > 0.15:
            parts.append(
                (self.host_share, f"host-side work ({self.host_share:.0%} of the wall time outside the LLM forward)")
            )
        if self.reference_mfu is not None and peak and self.reference_mfu < MFU_TARGET:
            parts.append(
                (
                    1 - self.reference_mfu,
                    f"batch too small to fill the GPU (a plain causal forward of the same shape: {self.reference_mfu:.0%} MFU)",
                )
            )
        parts.sort(key=lambda p: -p[0])
        return "; ".join(p[1] for p in parts) or "not identified (profile it)"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_gib(device: torch.device) -> float | None:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return None


def causal_pairs(n: int) -> int:
    return n * (n + 1) // 2


def chunk_counts(prefix: int, spec: Any) -> tuple[int, int]:
    """(tokens, attended pairs) of one LE chunk: instruction + items causal, branches to their anchor."""
    s = prefix + len(spec.items)
    pairs = causal_pairs(s) + int(sum(prefix + int(a) + 2 for a in spec.branch_anchor))
    return s + len(spec.branch_item), pairs


class ForwardTimer:
    """Wall time spent inside LEModel.hidden (the LLM's forward), synchronised: the rest of a step
    is host-side preparation, the loss, the backward and the optimiser."""

    def __init__(self, device: torch.device):
        self.device, self.seconds, self._orig = device, 0.0, None

    def __enter__(self) -> ForwardTimer:
        self._orig = LEModel.hidden
        orig, timer = self._orig, self

        def timed(model: LEModel, *a: Any, **k: Any) -> torch.Tensor:
            sync(timer.device)
            t0 = time.perf_counter()
            out = orig(model, *a, **k)
            sync(timer.device)
            timer.seconds += time.perf_counter() - t0
            return out

        LEModel.hidden = timed  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: Any) -> None:
        LEModel.hidden = self._orig  # type: ignore[method-assign]


def reference_mfu(
    llm: Any, shape: Shape, batch: int, length: int, device: torch.device, peak: float | None
) -> float | None:
    """MFU of a plain causal forward (no explicit mask, no padding) of a [batch, length] input."""
    if not peak:
        return None
    dtype = llm.get_input_embeddings().weight.dtype
    x = torch.randn(batch, length, shape.hidden, device=device, dtype=dtype)
    with torch.no_grad():
        llm.model(inputs_embeds=x, use_cache=False)
        sync(device)
        t0 = time.perf_counter()
        llm.model(inputs_embeds=x, use_cache=False)
        sync(device)
    dt = time.perf_counter() - t0
    return shape.forward(batch * length, batch * causal_pairs(length)) / dt / peak


def bench_item_tokens(
    llm: Any,
    tok: Any,
    base: Any,
    cfg: LEConfig,
    shape: Shape,
    a: argparse.Namespace,
    device: torch.device,
    peak: float | None,
    stage: str = "item_tokens",
) -> StageResult:
    sents = encode_sentences(tok, item_sentences(base, cfg), cfg)
    table = init_item_tokens(llm, sents, cfg, 0)
    batches = item_token_batches(sents, cfg)
    full = [b for b in batches if len(b) == max(len(x) for x in batches)]
    idx = full[len(full) // 2]  # a full batch of median sentence length (batches are sorted by length)
    lens = [len(sents[j].before) + 1 + len(sents[j].after) for j in idx]
    real, padded = int(sum(lens)), len(idx) * max(lens)
    targets = int(sum(len(sents[j].after) for j in idx))
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    warm = LEConfig(**{**cfg.to_dict(), "le_token_steps": 1, "le_token_eval": False})
    train_item_batch(llm, sents, idx, table, warm, pad, device)  # warm-up: kernels, allocator
    timed = LEConfig(**{**cfg.to_dict(), "le_token_steps": a.token_steps, "le_token_eval": False})
    reset_peak(device)
    sync(device)
    t0 = time.perf_counter()
    train_item_batch(llm, sents, idx, table, timed, pad, device)
    sync(device)
    dt = time.perf_counter() - t0
    pairs = int(sum(causal_pairs(n) for n in lens))
    step = shape.forward(real, pairs, targets) + shape.input_backward(real, pairs, targets)
    res = StageResult(
        stage,
        dt,
        len(idx) * a.token_steps,
        "item-steps",
        step * a.token_steps,
        peak_gib(device),
        real,
        padded,
        len(idx) * max(lens) ** 2,
        pairs,
    )
    res.items = len(idx)
    res.reference_mfu = reference_mfu(llm, shape, len(idx), max(lens), device, peak)
    res.notes.append(f"batch of {len(idx)} items, {real / len(idx):.1f} tokens per sentence, {a.token_steps} steps")
    res.notes.append(f"{len(sents)} items, {len(batches)} batches of le_token_batch {cfg.le_token_batch}")
    if cfg.le_token_micro_batch:
        res.notes.append(f"le_token_micro_batch {cfg.le_token_micro_batch} (forward/backward per micro-batch)")
    return res


def micro_batch_that_fits(shape: Shape, tokens_per_item: float, batch: int, kept: float, room_gib: float) -> int:
    """The largest power-of-two micro-batch (at most ``batch``) whose kept activations fit in
    ``room_gib`` (0: the whole batch fits)."""
    if activation_gib(shape, batch * tokens_per_item, kept) <= room_gib:
        return 0
    micro = 1 << int(math.log2(batch))
    while micro > 1 and activation_gib(shape, micro * tokens_per_item, kept) > room_gib:
        micro //= 2
    return micro


def bench_le_train(
    model: LEModel,
    prefix: list[int],
    streams: list[np.ndarray],
    pool: np.ndarray,
    cfg: LEConfig,
    shape: Shape,
    a: argparse.Namespace,
    device: torch.device,
    peak: float | None,
) -> StageResult:
    rng = np.random.default_rng(0)
    jobs = epoch_jobs(streams, pool, cfg, rng)
    perm = rng.permutation(len(jobs))
    batches = [[jobs[j] for j in perm[i : i + cfg.le_batch_size]] for i in range(0, len(perm), cfg.le_batch_size)]
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=cfg.le_lr)
    model.train()

    def step(batch: list[Any]) -> None:
        terms = le_losses(model, prefix, batch)
        loss = terms["l_rm"] + cfg.le_sm_weight * terms["l_sm"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step(batches[0])  # warm-up
    timed = batches[1 : 1 + a.train_steps] or batches[:1]
    real = padded = pairs = dense = pairs_total = 0
    for b in timed:
        counts = [chunk_counts(len(prefix), spec) for spec, _pos in b]
        real += sum(c[0] for c in counts)
        padded += len(b) * max(c[0] for c in counts)
        dense += len(b) * max(c[0] for c in counts) ** 2
        pairs += sum(c[1] for c in counts)
        pairs_total += int(sum(len(pos) for _s, pos in b))
    reset_peak(device)
    sync(device)
    with ForwardTimer(device) as fwd:
        t0 = time.perf_counter()
        for b in timed:
            step(b)
        sync(device)
        dt = time.perf_counter() - t0
    model.eval()
    flops = shape.forward(real, pairs) + shape.input_backward(real, pairs)
    res = StageResult("le_train", dt, real, "tokens", flops, peak_gib(device), real, padded, dense, pairs)
    # forward ~ 1/3 of a frozen-weight training step; the remainder beyond 2x the forward is host work
    res.host_share = max(0.0, 1 - 3 * fwd.seconds / dt) if dt > 0 else None
    b0 = timed[0]
    res.reference_mfu = reference_mfu(
        model.causal_lm(), shape, len(b0), max(chunk_counts(len(prefix), s)[0] for s, _ in b0), device, peak
    )
    res.notes.append(
        f"{len(timed)} steps of {cfg.le_batch_size} chunks, {real / len(timed):.0f} tokens and {pairs_total / len(timed):.0f} "
        f"reward pairs per step; gradient checkpointing {'on' if cfg.le_grad_checkpointing else 'off'}"
    )
    res.notes.append(f"{real / max(pairs_total, 1):.2f} tokens per reward pair")
    return res


def bench_featurize(
    model: LEModel,
    prefix: list[int],
    streams: list[np.ndarray],
    pool: np.ndarray,
    cfg: LEConfig,
    shape: Shape,
    a: argparse.Namespace,
    device: torch.device,
    peak: float | None,
) -> StageResult:
    rng = np.random.default_rng(0)
    branches = []
    for items in streams:
        n = len(items)
        neg = pool[rng.integers(0, len(pool), size=(n - 1, 1))]
        cand = pool[rng.integers(0, len(pool), size=(n - 1, cfg.le_aug_topk))]  # random in place of SASRec's top-k
        aug = rng.random(n - 1) < cfg.le_aug_fraction
        cand[~aug] = -1
        branches.append(np.concatenate([neg, cand], axis=1))
    warm_users = max(1, min(8, len(streams) // 4))
    stream_features(model, prefix, streams[:warm_users], branches[:warm_users], cfg)
    users, rows = [], 0
    for u in range(warm_users, len(streams)):
        users.append(u)
        rows += len(streams[u])
        if rows >= a.feat_rows:
            break
    s_items, s_br = [streams[u] for u in users], [branches[u] for u in users]
    specs = [spec for it, br in zip(s_items, s_br, strict=True) for spec in user_chunks(it, br, cfg)]
    counts = sorted((chunk_counts(len(prefix), spec) for spec in specs), key=lambda c: -c[0])
    real = sum(c[0] for c in counts)
    pairs = sum(c[1] for c in counts)
    padded = dense = 0
    for i in range(0, len(counts), cfg.le_feat_batch):
        group = counts[i : i + cfg.le_feat_batch]
        padded += len(group) * group[0][0]
        dense += len(group) * group[0][0] ** 2
    reset_peak(device)
    sync(device)
    with ForwardTimer(device) as fwd:
        t0 = time.perf_counter()
        stream_features(model, prefix, s_items, s_br, cfg)
        sync(device)
        dt = time.perf_counter() - t0
    res = StageResult(
        "featurize", dt, rows, "interactions", shape.forward(real, pairs), peak_gib(device), real, padded, dense, pairs
    )
    res.host_share = max(0.0, 1 - fwd.seconds / dt) if dt > 0 else None
    res.reference_mfu = reference_mfu(
        model.causal_lm(), shape, min(cfg.le_feat_batch, len(counts)), counts[0][0], device, peak
    )
    res.notes.append(
        f"{len(users)} users, {rows} interactions, {len(specs)} chunks in forwards of {cfg.le_feat_batch}, "
        f"{real / rows:.2f} tokens per interaction (1 negative + {cfg.le_aug_topk} random candidates per row)"
    )
    return res


# --- projection -------------------------------------------------------------------------------------
def project(
    results: dict[str, StageResult],
    cfg: LEConfig,
    prefix_len: int,
    gpus: list[int],
    sentence_tokens: dict[str, float],
) -> dict[str, Any]:
    """Whole-build LLM-stage time for the paper's sets on N GPUs: each stage's work from the set's
    size (``sentence_tokens``: tokens per item sentence), at the measured per-GPU token rate, divided
    over N processes at the granularity the build splits it (whole item batches, whole groups of 64
    users, the chunks of one training batch)."""
    out: dict[str, Any] = {}
    tr, ft = results.get("le_train"), results.get("featurize")
    for name, (items, seqs, inter) in PAPER_SETS.items():
        it = results.get("item_tokens_industry") if name == "Industry" else None
        it = it or results.get("item_tokens")  # the rate measured on the set's own sentence length, else ml-100k's
        n = inter / seqs  # mean sequence length
        train_rows = inter - 3 * seqs  # first row, valid and test of each sequence are not training targets
        per: dict[str, Any] = {}
        for g in gpus:
            t: dict[str, float] = {}
            if it is not None:
                batches = math.ceil(items / cfg.le_token_batch)
                # measured sentence tokens per second of training (one step over one batch = its real tokens)
                tok_rate = it.real_tokens * (it.units / max(it.items, 1)) / it.seconds
                per_batch = cfg.le_token_steps * cfg.le_token_batch * sentence_tokens[name] / tok_rate
                t["item_tokens"] = math.ceil(batches / g) * per_batch
            if tr is not None:
                pairs = cfg.le_train_fraction * train_rows
                chunk = min(n, cfg.le_chunk_len)
                tok_per_pair = (prefix_len + 2 * chunk - 1) / max(chunk - 1, 1)
                share = math.ceil(cfg.le_batch_size / g) / (cfg.le_batch_size / g)  # the busiest process's rows
                t["le_train"] = cfg.le_epochs * pairs * tok_per_pair / tr.rate() / g * share
            if ft is not None:
                groups = math.ceil(seqs / 64)
                tokens = seqs * (
                    prefix_len * math.ceil(n / cfg.le_chunk_len)
                    + n
                    + (1 + cfg.le_aug_topk * cfg.le_aug_fraction) * (n - 1)
                )
                tok_rate = ft.real_tokens / ft.seconds
                t["featurize"] = tokens / tok_rate / groups * math.ceil(groups / g)
            t["total"] = sum(t.values())
            per[str(g)] = t
        out[name] = per
    return out


def saved_per_token_layer(spec: dict[str, Any]) -> float:
    """Values autograd keeps per token and layer, in units of the hidden size, when the input of a
    frozen LLM of this family needs a gradient (the item-token and LE-training backward): counted
    with saved-tensor hooks on a narrow copy of the architecture (same ratios, hidden 256)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    spec = dict(spec)
    ratio = spec["hidden_size"] / 256
    small = {
        **spec,
        "hidden_size": 256,
        "intermediate_size": int(spec["intermediate_size"] / ratio),
        "num_hidden_layers": 2,
        "vocab_size": 1000,
        "bos_token_id": None,
        "eos_token_id": None,
    }
    if "head_dim" in small:
        small["head_dim"] = max(8, int(small["head_dim"] / ratio))
    small.pop("rope_scaling", None)
    cfg = AutoConfig.for_model(small.pop("model_type"), **small)
    cfg._attn_implementation = "sdpa"
    model = AutoModelForCausalLM.from_config(cfg).eval()
    for prm in model.parameters():
        prm.requires_grad_(False)

    def saved(length: int) -> int:
        x = torch.randn(1, length, 256, requires_grad=True)
        seen: set[int] = set()
        total = [0]

        def pack(t: torch.Tensor) -> torch.Tensor:
            if t.data_ptr() not in seen:
                seen.add(t.data_ptr())
                total[0] += t.numel()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            model.model(inputs_embeds=x, use_cache=False)
        return total[0]

    # saved(T) = c + a T + b T^2: the T^2 part (attention probabilities of the CPU's math kernel) is
    # not kept by the fused GPU kernels, c is shared (rotary tables); a is what every token costs
    lengths = [16, 32, 48, 64]
    _b, a, _c = np.polyfit(lengths, [saved(n) for n in lengths], 2)
    return float(a) / (2 * 256)


def activation_gib(shape: Shape, tokens: float, per_token_layer: float, bytes_per_value: int = 2) -> float:
    """Activations a frozen-weight backward keeps for ``tokens`` tokens (``per_token_layer`` values
    per token and layer in units of the hidden size, :func:`saved_per_token_layer`)."""
    return per_token_layer * shape.hidden * shape.layers * tokens * bytes_per_value / 2**30


def mean_sentence_tokens(data_path: str, dataset: str, tok: Any) -> float | None:
    """Tokens per item sentence of ``dataset`` (its own template), if its atomic files are there."""
    if not (Path(data_path) / dataset / f"{dataset}.item").is_file():
        return None
    cfg = resolve_config(dataset, "paper", {}, data_path)
    base = load_base(data_path, dataset, cfg)
    sents = encode_sentences(tok, item_sentences(base, cfg), cfg)
    return float(np.mean([len(x.before) + 1 + len(x.after) for x in sents]))


# --- work of a whole build (no model run) ----------------------------------------------------------
def count_work(base: Any, cfg: LEConfig, tok: Any, shape: Shape) -> dict[str, dict[str, float]]:
    """Tokens, attended pairs and model FLOPs of each LLM stage of a whole build of ``base`` with
    ``cfg``, from the build's own chunking and sampling (the cost model's work counts)."""
    from recbole_lea.le.item_tokens import trains_nothing
    from recbole_lea.le.train import training_chunks

    p = len(prefix_ids(tok, cfg))
    out: dict[str, dict[str, float]] = {}
    sents = encode_sentences(tok, item_sentences(base, cfg), cfg)
    lens = [len(x.before) + 1 + len(x.after) for x in sents]
    tokens, pairs, targets = sum(lens), sum(causal_pairs(n) for n in lens), sum(len(x.after) for x in sents)
    fwd = shape.forward(tokens, pairs, targets)
    bwd = shape.input_backward(tokens, pairs, targets)
    passes = 0 if trains_nothing(cfg) else int(cfg.le_token_eval or cfg.le_token_steps == 0)
    out["item_tokens"] = {
        "tokens": float(tokens * (cfg.le_token_steps + passes)),
        "flops": cfg.le_token_steps * (fwd + bwd) + passes * fwd,
        "items": float(len(sents)),
    }
    streams = training_streams(base, cfg)
    rng = np.random.default_rng(cfg.le_seed)
    n_users = max(1, int(round(cfg.le_train_fraction * len(streams))))
    chosen = np.sort(rng.choice(len(streams), size=n_users, replace=False))
    train = [streams[i].items for i in chosen]
    if cfg.le_train_max_steps_per_user > 0:
        train = [x[-(cfg.le_train_max_steps_per_user + 1) :] for x in train]
    t = pr = rows = 0
    for items in train:
        for spec, pos in training_chunks(items, np.zeros(len(items) - 1, np.int64), cfg):
            c = chunk_counts(p, spec)
            t, pr, rows = t + c[0], pr + c[1], rows + len(pos)
    out["le_train"] = {
        "tokens": float(t * cfg.le_epochs),
        "flops": cfg.le_epochs * (shape.forward(t, pr) + shape.input_backward(t, pr)),
        "pairs_per_epoch": float(rows),
        "users": float(len(train)),
    }
    rng = np.random.default_rng(cfg.le_seed + 2)
    targets_rows = np.concatenate([x.rows[1:] for x in streams])
    aug = np.zeros(len(base.inter), dtype=bool)
    n_aug = int(round(cfg.le_aug_fraction * len(targets_rows)))
    if n_aug:
        aug[rng.choice(targets_rows, size=n_aug, replace=False)] = True
    t = pr = steps = 0
    for x in streams:
        br = np.zeros((len(x.items) - 1, 1 + cfg.le_aug_topk), dtype=np.int64)
        br[~aug[x.rows[1:]], 1:] = -1
        for spec in user_chunks(x.items, br, cfg):
            c = chunk_counts(p, spec)
            t, pr = t + c[0], pr + c[1]
        steps += len(x.items)
    out["featurize"] = {"tokens": float(t), "flops": shape.forward(t, pr), "steps": float(steps), "prefix": float(p)}
    return out


def run_count(a: argparse.Namespace) -> int:
    """--count: print the work of a whole build (tokens, FLOPs per stage) for a dataset, profile and model."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from recbole_lea.le.llm import converted_folder, model_source

    overrides: dict[str, Any] = dict(kv.split("=", 1) for kv in a.set)
    cfg = resolve_config(a.dataset, a.profile, overrides, a.data_path)
    base = load_base(a.data_path, a.dataset, cfg)
    if a.model in MODELS:
        hf_cfg = hf_config(a.model)
        texts = [" ".join(x) for x in item_sentences(base, cfg)] + [cfg.le_instruction]
        raw, name = find_tokenizer(a.tokenizer, cfg, texts)
        tok: Any = FoldedTokenizer(raw, hf_cfg.vocab_size, name)
    else:
        from transformers import AutoTokenizer

        src = model_source(LEConfig(**{**cfg.to_dict(), "le_model": a.model}))
        folder = converted_folder(src, cfg) if src.kind == "gguf" else src.path
        hf_cfg = AutoConfig.from_pretrained(folder, local_files_only=True)
        tok, name = AutoTokenizer.from_pretrained(folder, local_files_only=True), f"tokenizer of {folder}"
    with torch.device("meta"):
        params = sum(x.numel() for x in AutoModelForCausalLM.from_config(hf_cfg).parameters())
    shape = Shape.of(hf_cfg, params)
    work = count_work(base, cfg, tok, shape)
    print(
        f"{a.dataset}, profile {a.profile} {overrides or ''}, model {a.model} ({params / 1e6:.1f}M parameters, {name})"
    )
    for stage, w in work.items():
        extra = ", ".join(f"{k} {v:.0f}" for k, v in w.items() if k not in ("tokens", "flops"))
        print(f"  {stage:<12} tokens {w['tokens']:>12.0f}  model FLOPs {w['flops']:.3e}  ({extra})")
    if a.json:
        Path(a.json).write_text(json.dumps({"params": params, "work": work}, indent=1))
    return 0


def hf_config(key: str, **changes: Any):  # type: ignore[no-untyped-def]
    """The transformers config of ``MODELS[key]`` with ``changes`` applied."""
    from transformers import AutoConfig

    spec = {**MODELS[key][1], **changes}
    return AutoConfig.for_model(spec.pop("model_type"), **spec)


def save_random(key: str, out: Path, tokenizer: str | None) -> int:
    """--save_random: a randomly initialised causal LM of ``MODELS[key]``'s configuration in bf16,
    its vocabulary cut to the tokenizer's, saved with that tokenizer as an ``le_model`` folder."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not tokenizer:
        raise SystemExit("--save_random needs --tokenizer (a local tokenizer folder)")
    tok = AutoTokenizer.from_pretrained(tokenizer, local_files_only=True)
    hf_cfg = hf_config(key, vocab_size=len(tok), bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    torch.manual_seed(0)
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    with torch.device(dev):
        llm = AutoModelForCausalLM.from_config(hf_cfg, dtype=torch.bfloat16 if dev == "cuda" else torch.float32)
    llm.save_pretrained(out)
    tok.save_pretrained(out)
    print(f"random {MODELS[key][0]} ({sum(p.numel() for p in llm.parameters()) / 1e9:.3g}B) saved to {out}")
    return 0


# --- main -------------------------------------------------------------------------------------------
def run_model(
    key: str,
    base: Any,
    cfg: LEConfig,
    a: argparse.Namespace,
    device: torch.device,
    dtype: torch.dtype,
    peak: float | None,
    deadline: float,
) -> dict[str, Any]:
    from transformers import AutoModelForCausalLM

    label = MODELS[key][0]
    hf_cfg = hf_config(key)
    hf_cfg._attn_implementation = "sdpa"
    texts = [" ".join(p) for p in item_sentences(base, cfg)] + [cfg.le_instruction]
    raw_tok, tok_name = find_tokenizer(a.tokenizer, cfg, texts)
    tok = FoldedTokenizer(raw_tok, hf_cfg.vocab_size, tok_name)
    t0 = time.perf_counter()
    torch.manual_seed(0)
    with torch.device(device):
        llm = AutoModelForCausalLM.from_config(hf_cfg, dtype=dtype)
    llm.eval()
    for p in llm.parameters():
        p.requires_grad_(False)
    sync(device)
    init_s = time.perf_counter() - t0
    params = sum(p.numel() for p in llm.parameters())
    shape = Shape.of(hf_cfg, params)
    print(f"\n== {label}: {params / 1e9:.3g}B parameters ({dtype}, {device}), random init {init_s:.1f} s; {tok_name}")
    streams_all = training_streams(base, cfg)
    pool = training_item_pool(streams_all)
    rng = np.random.default_rng(cfg.le_seed)
    chosen = np.sort(
        rng.choice(len(streams_all), size=max(1, round(cfg.le_train_fraction * len(streams_all))), replace=False)
    )
    train_streams = [streams_all[i].items for i in chosen]
    results: dict[str, StageResult] = {}
    steps: list[tuple[str, Callable[[], StageResult]]] = [
        ("item_tokens", lambda: bench_item_tokens(llm, tok, base, cfg, shape, a, device, peak)),
    ]
    holder: dict[str, Any] = {}

    def le_model() -> tuple[LEModel, list[int]]:
        if "m" not in holder:
            table = torch.randn(base.n_items, shape.hidden) * 0.02  # the tokens' values do not change the cost

            torch.manual_seed(cfg.le_seed)
            holder["m"] = (LEModel(llm, table, cfg).to(device), prefix_ids(tok, cfg))
        return holder["m"]

    steps.append(("le_train", lambda: bench_le_train(*le_model(), train_streams, pool, cfg, shape, a, device, peak)))
    steps.append(
        (
            "featurize",
            lambda: bench_featurize(*le_model(), [s.items for s in streams_all], pool, cfg, shape, a, device, peak),
        )
    )
    kept = saved_per_token_layer(MODELS[key][1])
    industry_folder = Path(a.data_path) / "amazon-scientific"
    if a.industry and (industry_folder / "amazon-scientific.item").is_file():

        def industry_tokens() -> StageResult:
            icfg = resolve_config("amazon-scientific", "paper", a.overrides, a.data_path)
            ibase = load_base(a.data_path, "amazon-scientific", icfg)
            sents = encode_sentences(tok, item_sentences(ibase, icfg), icfg)
            lens = [len(x.before) + 1 + len(x.after) for x in sents]
            longest, mean = max(lens), float(np.mean(lens))
            # 60% of the memory left beside the weights for the kept activations
            room = 0.6 * torch.cuda.mem_get_info(device)[0] / 2**30 if device.type == "cuda" else float("inf")
            micro = icfg.le_token_micro_batch or micro_batch_that_fits(
                shape, (mean + longest) / 2, icfg.le_token_batch, kept, room
            )
            icfg = LEConfig(**{**icfg.to_dict(), "le_token_micro_batch": micro})
            return bench_item_tokens(llm, tok, ibase, icfg, shape, a, device, peak, stage="item_tokens_industry")

        steps.insert(1, ("item_tokens_industry", industry_tokens))
    for stage, fn in steps:
        if time.time() > deadline:
            print(f"  {stage}: skipped (time budget --budget_s spent)")
            continue
        try:
            results[stage] = fn()
        except torch.OutOfMemoryError as err:
            print(f"  {stage}: out of memory ({str(err).splitlines()[0]})")
            torch.cuda.empty_cache()
    print(f"  {'stage':<12}{'time s':>8}{'rate':>24}{'FLOP':>10}{'FLOP/s':>10}{'MFU':>7}{'peak GiB':>10}")
    for r in results.values():
        mfu = r.mfu(peak)
        mem = f"{r.peak_mem_gib:.1f}" if r.peak_mem_gib is not None else "-"
        print(
            f"  {r.stage:<12}{r.seconds:8.2f}{r.rate():>14.1f} {r.unit + '/s':<9}{r.flops:10.3g}"
            f"{r.flops / r.seconds:10.3g}{(f'{mfu:.1%}' if mfu is not None else 'n/a'):>7}{mem:>10}"
        )
        for note in r.notes:
            print(f"      {note}")
        if mfu is not None and mfu < MFU_TARGET:
            print(f"      below {MFU_TARGET:.0%} MFU, bounded by: {r.bound(peak)}")
    prefix_len = len(le_model()[1]) if results else 0
    ml = float(np.mean([len(x) for x in [tok(" ".join(pq))["input_ids"] for pq in item_sentences(base, cfg)]])) + 1
    industry = mean_sentence_tokens(a.data_path, "amazon-scientific", tok)
    sentence_tokens = {"LFM": ml, "Industry": industry or ml}
    print(
        f"  item sentences: {ml:.1f} tokens (ml-100k's, assumed for LFM's title/album/artist); Industry "
        + (f"{industry:.1f} (amazon-scientific's, the same Amazon category)" if industry else "assumed as ml-100k's")
    )
    memory = torch.cuda.get_device_properties(device).total_memory / 2**30 if device.type == "cuda" else None
    print(f"  a frozen-weight backward keeps {kept:.1f} x hidden values per token and layer (saved-tensor count)")
    for name, length in sentence_tokens.items():
        need = activation_gib(shape, cfg.le_token_batch * length, kept)
        fits = (
            f"; le_token_batch {cfg.le_token_batch} does not fit in {memory:.0f} GiB"
            if memory and need > memory
            else ""
        )
        print(f"  {name}: an item-token batch of {cfg.le_token_batch} keeps about {need:.1f} GiB of activations{fits}")
    projection = project(results, cfg, prefix_len, a.gpus, sentence_tokens)
    print("  projected LLM stages of a paper-profile build, seconds (candidates and write not included, docs/le.md):")
    for name, per in projection.items():
        for g, v in per.items():
            print(f"    {name}, {g} GPU(s): " + ", ".join(f"{k} {x:.0f}" for k, x in v.items()))
    holder.clear()  # free the LE model before the next LLM is built
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return {
        "model": label,
        "params": params,
        "init_s": init_s,
        "tokenizer": tok_name,
        "stages": {k: {**vars(v), "rate": v.rate(), "mfu": v.mfu(peak)} for k, v in results.items()},
        "projection_s": projection,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiny", action="store_true", help="small config on CPU (seconds)")
    ap.add_argument("--models", default=None, help="comma list of 7b, 1b (default both; --tiny: tiny)")
    ap.add_argument("--data_path", default="atomic_datasets", help="ml-100k is converted here on first use")
    ap.add_argument("--tokenizer", default=None, help="a local tokenizer folder (default: found in the LE cache)")
    ap.add_argument("--peak_tflops", type=float, default=None, help="bf16 dense peak (default by GPU name)")
    ap.add_argument("--token_steps", type=int, default=None, help="timed item-token steps (default 5; --tiny 2)")
    ap.add_argument("--train_steps", type=int, default=None, help="timed LE training steps (default 8; --tiny 2)")
    ap.add_argument("--feat_rows", type=int, default=None, help="featurized interactions timed (default 6000)")
    ap.add_argument("--gpus", default="1,2,4,8", help="GPU counts of the projection")
    ap.add_argument("--budget_s", type=float, default=540.0, help="skip the remaining stages after this")
    ap.add_argument("--json", default=None, help="write every figure to this file")
    ap.add_argument(
        "--industry",
        action="store_true",
        help="also time item tokens on amazon-scientific's sentences (the Industry set's length), "
        "with the le_token_micro_batch that fits",
    )
    ap.add_argument(
        "--save_random",
        nargs=2,
        metavar=("MODEL", "DIR"),
        default=None,
        help="only write a randomly initialised model (7b, 1b, tiny) with the --tokenizer into DIR "
        "(an le_model folder for an end-to-end build; vocabulary cut to the tokenizer's)",
    )
    ap.add_argument("--count", action="store_true", help="only count a whole build's work (no timing)")
    ap.add_argument("--dataset", default="ml-100k", help="--count: the dataset")
    ap.add_argument("--profile", default="paper", help="--count: the LE profile")
    ap.add_argument("--model", default="7b", help="--count: 7b, 1b, or an le_model value (smollm2, a folder)")
    ap.add_argument("--set", nargs="*", default=[], help="LE options key=value over the paper profile")
    a = ap.parse_args(argv)
    a.set_kv = [kv.split("=", 1) for kv in a.set]
    if a.count:
        return run_count(a)
    if a.save_random:
        return save_random(a.save_random[0], Path(a.save_random[1]), a.tokenizer)
    a.gpus = [int(g) for g in a.gpus.split(",")]
    a.token_steps = a.token_steps or (2 if a.tiny else 5)
    a.train_steps = a.train_steps or (2 if a.tiny else 8)
    a.feat_rows = a.feat_rows or (300 if a.tiny else 6000)
    deadline = time.time() + a.budget_s
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    cuda = torch.cuda.is_available() and not a.tiny
    device = torch.device("cuda") if cuda else torch.device("cpu")
    dtype = torch.bfloat16 if cuda else torch.float32
    peak = a.peak_tflops
    gpu = torch.cuda.get_device_name(0) if cuda else None
    if peak is None and gpu:
        peak = next((v for k, v in PEAKS.items() if k in gpu), None)
    peak = peak * 1e12 if peak else None
    from recbole_lea.datasets.ml100k import ensure_ml100k

    ensure_ml100k(a.data_path)
    overrides: dict[str, Any] = {"le_device": device.type}
    if a.tiny:  # the paper profile's shapes, scaled down
        overrides.update(le_token_batch=16, le_batch_size=4, le_feat_batch=4, le_chunk_len=32, le_train_fraction=0.02)
    overrides.update(dict(a.set_kv))  # e.g. a larger le_feat_batch against the default
    a.overrides = overrides
    cfg = resolve_config("ml-100k", "paper", overrides, a.data_path)
    base = load_base(a.data_path, "ml-100k", cfg)
    print(
        f"LE stages on ml-100k rows ({len(base.inter)} interactions, {base.n_items} items), paper profile {a.set or ''}; device "
        f"{gpu or 'cpu'}; peak {peak / 1e12:.1f} TFLOPS bf16 dense"
        if peak
        else f"LE stages on ml-100k rows "
        f"({len(base.inter)} interactions, {base.n_items} items), paper profile {a.set or ''}; device {gpu or 'cpu'} (no peak: no MFU)"
    )
    keys = a.models.split(",") if a.models else (["tiny"] if a.tiny else ["7b", "1b"])
    out = {
        "device": gpu or "cpu",
        "peak_flops": peak,
        "date": time.strftime("%Y-%m-%d"),
        "loadavg": os.getloadavg(),
        "torch": torch.__version__,
        "set": a.set,
        "models": [run_model(k, base, cfg, a, device, dtype, peak, deadline) for k in keys],
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
    }
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
