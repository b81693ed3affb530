"""Stage 2 of the pipeline: the LLM environment (LE) of LEA -- item tokens, the joint
reward/state LoRA model, streaming featurization and augmentation. See docs/le.md.

The names below import torch and transformers on first use only, so that reading the LE's
option declarations (:mod:`recbole_lea.le.config`) stays light."""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "build_le": "build",
    "check_le_dataset": "build",
    "plan_le": "build",
    "LEConfig": "config",
    "resolve_config": "config",
    "LEInputError": "data",
}
__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
