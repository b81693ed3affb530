"""Plugin-first lookup of models, trainers and datasets.

RecBole's own ``get_model`` / ``get_trainer`` / ``create_dataset`` search only ``recbole``'s
modules, and an unknown model name fails with "No module named 'lightgbm'" (the search imports
``exlib_recommender`` on the way). Here our models are looked up first, then RecBole's, and an
unknown name gets an error listing every valid one.
"""

from __future__ import annotations

import difflib
import importlib
import re
from functools import cache, lru_cache
from pathlib import Path

from recbole.utils import ModelType

from recbole_lea.compat import CompatTrainerMixin
from recbole_lea.errors import ConfigError

#: our models: name -> module under recbole_lea.model
PLUGIN_MODELS: dict[str, str] = {
    "SNQN": "recbole_lea.model.snqn",
    "SA2C": "recbole_lea.model.sa2c",
    "SNQN_LEA": "recbole_lea.model.snqn_lea",
    "SA2C_LEA": "recbole_lea.model.sa2c_lea",
}

_RECBOLE_SUBMODULES = (
    "general_recommender",
    "context_aware_recommender",
    "sequential_recommender",
    "knowledge_aware_recommender",
    "exlib_recommender",
)


class UnknownModelError(ConfigError):
    """Raised for a model name that is neither ours nor RecBole's."""


@lru_cache(maxsize=1)
def recbole_model_names() -> dict[str, str]:
    """Every RecBole built-in model: class name -> submodule, read from the source files
    (no import, so optional dependencies such as lightgbm are never touched)."""
    import recbole.model

    root = Path(recbole.model.__file__).parent
    names: dict[str, str] = {}
    for sub in _RECBOLE_SUBMODULES:
        for file in sorted((root / sub).glob("*.py")):
            if file.stem.startswith("_"):
                continue
            text = file.read_text(encoding="utf-8", errors="ignore")
            for cls in re.findall(r"^class (\w+)\(", text, flags=re.M):
                if cls.lower() == file.stem:
                    names[cls] = sub
    return names


def valid_model_names() -> list[str]:
    return sorted(PLUGIN_MODELS) + sorted(recbole_model_names())


def is_plugin_model(name: str) -> bool:
    return name in PLUGIN_MODELS


def get_model(model_name: str) -> type:
    """Model class for ``model_name``: ours first, then RecBole's built-ins."""
    if model_name in PLUGIN_MODELS:
        module = importlib.import_module(PLUGIN_MODELS[model_name])
        return getattr(module, model_name)
    builtins = recbole_model_names()
    if model_name in builtins:
        sub = builtins[model_name]
        module = importlib.import_module(f"recbole.model.{sub}.{model_name.lower()}")
        return getattr(module, model_name)
    close = difflib.get_close_matches(model_name, valid_model_names(), n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise UnknownModelError(
        f"Unknown model '{model_name}'.{hint} Valid models: ours "
        f"{', '.join(sorted(PLUGIN_MODELS))}; RecBole's {', '.join(sorted(recbole_model_names()))}."
    )


@cache
def _compat_trainer(base: type) -> type:
    return type(base.__name__, (CompatTrainerMixin, base), {"__module__": __name__})


def get_trainer(model_type: ModelType, model_name: str) -> type:
    """Trainer class: ours for our models, RecBole's otherwise; always with the compat mixin."""
    if model_name in PLUGIN_MODELS:
        from recbole_lea.trainer import RLTrainer

        return RLTrainer
    from recbole.utils import get_trainer as recbole_get_trainer

    return _compat_trainer(recbole_get_trainer(model_type, model_name))


def create_dataset(config):  # type: ignore[no-untyped-def]
    """Dataset for ``config``: :class:`RLSequentialDataset` for every sequential model (ours and
    RecBole's, so splits are identical across them), RecBole's own choice otherwise."""
    if config["MODEL_TYPE"] == ModelType.SEQUENTIAL:
        from recbole_lea.data.dataset import RLSequentialDataset

        return RLSequentialDataset(config)
    from recbole.data import create_dataset as recbole_create_dataset

    return recbole_create_dataset(config)
