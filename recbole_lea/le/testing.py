"""Tiny offline fixtures for LE tests: a random Llama + word-level tokenizer, small atomic datasets."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import numpy as np
import torch

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
    n_users: int = 40,
    n_items: int = 30,
    min_len: int = 5,
    max_len: int = 11,
    unique_holdout: bool = False,
    seed: int = 0,
):  # type: ignore[no-untyped-def]
    """Atomic ``<name>.inter`` / ``<name>.item`` under ``data_path/<name>/``; returns the rows as a
    DataFrame (user_id, item_id, timestamp; file order).

    Users walk through the items with a drift (item k is mostly followed by k or k+1), so next-item
    prediction is learnable. The file order is shuffled (not time order), one user has a single
    row, one has three, and one pair of a user's rows shares a timestamp (resolved by file order).
    With ``unique_holdout`` every valid/test target is an item used nowhere else (ids
    ``hold<k>``), so a leakage test can look for them."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    folder = Path(data_path) / name
    folder.mkdir(parents=True, exist_ok=True)
    genres = ["comedy", "drama", "action", "horror", "romance", "thriller"]
    items = [f"i{k}" for k in range(1, n_items + 1)]
    rows = []
    holdout_items: list[str] = []
    t = 1000
    for u in range(n_users):
        n = 1 if u == 0 else 3 if u == 1 else int(rng.integers(min_len, max_len + 1))
        cur = int(rng.integers(0, n_items))
        seq = []
        for _ in range(n):
            seq.append(items[cur])
            cur = (cur + int(rng.integers(0, 2))) % n_items
        if unique_holdout and n >= 3:
            for j in range(n - (2 if n >= 4 else 1), n):
                seq[j] = f"hold{len(holdout_items)}"
                holdout_items.append(seq[j])
        times = list(range(t, t + n))
        if n >= 3:
            times[1] = times[0]  # a tie resolved by file order
        t += n
        rows += [(f"u{u}", it, float(tm)) for it, tm in zip(seq, times, strict=True)]
    df = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])
    df = df.iloc[rng.permutation(len(df))].reset_index(drop=True)  # file order is not time order
    with open(folder / f"{name}.inter", "w") as fh:
        fh.write("user_id:token\titem_id:token\ttimestamp:float\trating:float\n")
        for u, it, tm in df.itertuples(index=False):
            fh.write(f"{u}\t{it}\t{tm:.0f}\t5\n")
    with open(folder / f"{name}.item", "w") as fh:
        fh.write("item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n")
        for k, it in enumerate(items + holdout_items):
            title = " ".join(rng.choice(list("abcdefghij"), size=int(rng.integers(1, 4))))
            fh.write(f"{it}\t{title}\t{1990 + k % 10}\t{genres[k % 6]} {genres[(k + 1) % 6]}\n")
    return df


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


def seal_le_dir(folder: Path, note: str = "test fixture") -> Path:
    """Give a hand-made LE folder (fake LE fields, no LLM) the manifest the LE build writes, with
    the sha256 of its files, so runs accept it through ``le_dir``."""
    import json

    from recbole_lea.files import folder_checksums
    from recbole_lea.le.files import MANIFEST

    folder = Path(folder)
    manifest = {"dataset": folder.name.removesuffix("-lea"), "fingerprint": note, "note": note}
    manifest["checksums"] = folder_checksums(folder, skip=(MANIFEST,))
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=1))
    return folder


def launched_build(spec_path: str) -> int:
    """One process of a launched test build (``accelerate launch ... -m recbole_lea.le.testing
    spec.json``). The spec (JSON) holds ``dataset``, ``data_path``, ``profile`` (a dict), ``overrides``,
    optionally ``rank_overrides`` ({rank: {option: value}}: a process given other options),
    ``record`` (a folder: each process appends its stage hook events to ``events-<rank>.jsonl``) and
    ``kill`` ({"rank", "stage", "at"}: that process kills itself with SIGKILL at that hook event, as
    a killed build would die). Prints the LE folder (process 0) or the error, as the CLI does."""
    from recbole_lea.errors import ConfigError
    from recbole_lea.le.build import build_le

    spec = json.loads(Path(spec_path).read_text())
    rank = int(os.environ.get("RANK", "0"))
    overrides = {**spec.get("overrides", {}), **spec.get("rank_overrides", {}).get(str(rank), {})}
    record = Path(spec["record"]) / f"events-{rank}.jsonl" if spec.get("record") else None
    kill = spec.get("kill") or {}

    def hook(stage: str, i: int) -> None:
        if record is not None:
            with open(record, "a", encoding="utf-8") as fh:
                fh.write(json.dumps({"stage": stage, "i": i}) + "\n")
        if kill.get("rank") == rank and kill.get("stage") == stage and kill.get("at") == i:
            os.kill(os.getpid(), signal.SIGKILL)

    try:
        out = build_le(spec["dataset"], spec["data_path"], spec["profile"], overrides, _stage_hook=hook)
    except ConfigError as err:
        if rank == 0:
            print(f"error: {err}", file=sys.stderr)
        return 2
    if rank == 0:
        print(out)
    return 0


if __name__ == "__main__":
    sys.exit(launched_build(sys.argv[1]))


def tiny_lea_options(root: Path, data: Path, llm: Path, **extra: object) -> dict:
    """The options of a tiny ``*_LEA`` run that builds its LE with the tiny LLM and the tiny
    profile (written to ``root/tiny-profile.yaml``), its cache and checkpoints under ``root``."""
    import yaml

    profile = Path(root) / "tiny-profile.yaml"
    profile.write_text(yaml.safe_dump(dict(TINY_PROFILE)))
    return {
        **TINY_DATASET_KEYS,
        "epochs": 1,
        "hidden_size": 8,
        "embedding_size": 8,
        "inner_size": 8,
        "train_batch_size": 64,
        "data_path": str(data),
        "le_profile": str(profile),
        "le_model": str(llm),
        "le_cache_dir": str(Path(root) / "cache"),
        "le_state_dim": TINY_PROFILE["le_state_dim"],
        "checkpoint_dir": str(Path(root) / "saved"),
        **extra,
    }
