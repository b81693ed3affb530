"""Stage 2 of the pipeline: the LLM environment (LE) of LEA -- item tokens, the joint
reward/state LoRA model, streaming featurization and augmentation. See docs/le.md."""

from .build import build_le, check_le_dataset, plan_le
from .config import LEConfig, resolve_config
from .data import LEInputError

__all__ = ["LEConfig", "LEInputError", "build_le", "check_le_dataset", "plan_le", "resolve_config"]
