"""Tiny offline fixtures for LE tests: a random Llama + word-level tokenizer, small atomic datasets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

#: the LE atomic .inter file's columns, in order, for a base file user_id/item_id/timestamp
#: (the contract of docs/architecture.md, "LE atomic files")
LEA_INTER_HEADER = (
    "user_id:token",
    "item_id:token",
    "timestamp:float",
    "le_train:float",
    "le_reward:float",
    "le_neg_id:token",
    "le_neg_reward:float",
    "le_aug_id:token",
    "le_aug_reward:float",
    "le_aug_mask:float",
    "le_state:float_seq",
    "le_next_state:float_seq",
)

WORDS = (
    "the user has watched these movies in chronological order rate how likely last is to be "
    "next choice movie titled released genres comedy drama action horror romance thriller "
    "film year a b c d e f g h i j k l m n o p q r s t u v w x y z 0 1 2 3 4 5 6 7 8 9 , : ."
).split()


def tiny_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, "<pad>": 3}
    for w in WORDS:
        vocab.setdefault(w, len(vocab))
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Whitespace()])
    return PreTrainedTokenizerFast(
        tokenizer_object=tk, unk_token="<unk>", bos_token="<s>", eos_token="</s>", pad_token="<pad>"
    )


def tiny_llm(seed: int = 0, vocab_size: int | None = None, arch: str = "llama"):
    """A random causal LM with hidden size 32.  arch: 'llama' (SmolLM2's architecture) or 'gemma3'
    (gemma3-270m's: scaled word embeddings, sliding-window layers)."""
    tok = tiny_tokenizer()
    torch.manual_seed(seed)
    sizes = dict(
        vocab_size=vocab_size or len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=3,
        tie_word_embeddings=True,
    )
    if arch == "llama":
        from transformers import LlamaConfig, LlamaForCausalLM

        model = LlamaForCausalLM(LlamaConfig(**sizes))
    elif arch == "gemma3":
        from transformers import Gemma3ForCausalLM, Gemma3TextConfig

        layers = ["sliding_attention", "full_attention"]
        model = Gemma3ForCausalLM(Gemma3TextConfig(**sizes, head_dim=8, sliding_window=512, layer_types=layers))
    else:
        raise ValueError(f"arch must be llama|gemma3, got {arch!r}")
    model.config._attn_implementation = "sdpa"
    return model.eval(), tok


def save_tiny_llm(folder: Path, seed: int = 0) -> Path:
    model, tok = tiny_llm(seed)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def write_tiny_dataset(
    data_path: Path,
    name: str = "tiny",
    n_users: int = 12,
    n_items: int = 30,
    min_len: int = 2,
    max_len: int = 40,
    unique_holdout: bool = False,
    seed: int = 0,
) -> Path:
    """Atomic .inter/.item.  With unique_holdout, every valid/test target is an item used nowhere else
    (ids 'hold<k>') so a leakage test can look for them."""
    rng = np.random.default_rng(seed)
    folder = Path(data_path) / name
    folder.mkdir(parents=True, exist_ok=True)
    genres = ["comedy", "drama", "action", "horror", "romance", "thriller"]
    items = [f"i{k}" for k in range(n_items)]
    rows = []
    hold = 0
    holdout_items = []
    for u in range(n_users):
        n = int(rng.integers(min_len, max_len + 1)) if u > 1 else (1 if u == 0 else 3)
        seq = list(rng.choice(items, size=n))
        if unique_holdout and n >= 3:
            k = 2 if n >= 4 else 1
            for j in range(n - k, n):
                seq[j] = f"hold{hold}"
                holdout_items.append(seq[j])
                hold += 1
        times = np.sort(rng.integers(1000, 2000, size=n))
        times[min(1, n - 1)] = times[0]  # a tie resolved by file order
        rows += [(f"u{u}", it, float(t)) for it, t in zip(seq, times, strict=True)]
    order = rng.permutation(len(rows))  # file order is not sorted
    with open(folder / f"{name}.inter", "w") as fh:
        fh.write("user_id:token\titem_id:token\ttimestamp:float\trating:float\n")
        for i in order:
            u, it, t = rows[i]
            fh.write(f"{u}\t{it}\t{t:.0f}\t5\n")
    with open(folder / f"{name}.item", "w") as fh:
        fh.write("item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n")
        for k, it in enumerate(items + holdout_items):
            title = " ".join(rng.choice(list("abcdefghij"), size=int(rng.integers(1, 4))))
            fh.write(f"{it}\t{title}\t{1990 + k % 10}\t{genres[k % 6]} {genres[(k + 1) % 6]}\n")
    return folder


TINY_DATASET_KEYS = {
    "item_text_fields": ["movie_title", "release_year", "class"],
    "le_item_template": "[item] movie is titled {movie_title} , released {release_year} , genres : {class}",
    "le_item_noun": "movie",
}

TINY_PROFILE = {
    "le_device": "cpu",
    "le_token_steps": 3,
    "le_token_batch": 16,
    "le_token_lr": 5e-3,
    "le_train_fraction": 0.5,
    "le_epochs": 1,
    "le_batch_size": 4,
    "le_lr": 1e-3,
    "le_history_len": 3,
    "le_chunk_len": 8,
    "le_feat_batch": 4,
    "le_aug_fraction": 1.0,
    "le_aug_backbone_epochs": 1,
    "le_aug_backbone_config": {
        "hidden_size": 16,
        "inner_size": 32,
        "n_layers": 1,
        "n_heads": 1,
        "train_batch_size": 64,
    },
    "le_state_dim": 4,
}
