"""The LLM environment (LE) of LEA: item tokens, joint reward/state LoRA model, streaming
featurization and the `<dataset>-lea` atomic-file hook.  See docs/le.md."""

from .build import build_le, check_le_dataset
from .config import LEConfig, resolve_config
from .data import LEInputError
from .rows import training_row_mask

__all__ = ["LEConfig", "LEInputError", "build_le", "check_le_dataset", "resolve_config", "training_row_mask"]
