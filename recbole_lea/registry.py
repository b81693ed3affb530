"""Plugin-first lookup of models, trainers and datasets.

RecBole's own ``get_model`` / ``get_trainer`` / ``create_dataset`` search only ``recbole``'s
modules, and an unknown model name fails with "No module named 'lightgbm'" (the search imports
``exlib_recommender`` on the way). Here our models are looked up first, then RecBole's; an unknown
name gets an error naming the closest matches. Names are checked without importing torch or
RecBole (:func:`check_model` reads RecBole's model files as text), so bad input is reported at once.
"""

from __future__ import annotations

import ast
import difflib
import importlib
import importlib.util
import re
from functools import cache, lru_cache
from pathlib import Path

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
    """Every RecBole built-in model: class name -> submodule, read from the source files (nothing
    is imported, so optional dependencies such as lightgbm, and torch, are never touched)."""
    spec = importlib.util.find_spec("recbole")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("RecBole is not installed: see the install command in README.md.")
    root = Path(next(iter(spec.submodule_search_locations))) / "model"
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


def is_sequential(model_name: str) -> bool:
    """Ours, or one of RecBole's sequential recommenders (read from its source tree, no import)."""
    return model_name in PLUGIN_MODELS or recbole_model_names().get(model_name) == "sequential_recommender"


@cache
def ranks_all_items(model_name: str) -> bool:
    """Ours, or a RecBole model that scores every item at once (``full_sort_predict``, read as
    text): the click-through models DIN and DIEN do not, and keep RecBole's sampled evaluation."""
    sub = recbole_model_names().get(model_name)
    if sub is None:
        return model_name in PLUGIN_MODELS
    return "def full_sort_predict" in _model_file(model_name, sub).read_text(encoding="utf-8")


def _model_file(model_name: str, sub: str) -> Path:
    spec = importlib.util.find_spec("recbole")
    return Path(next(iter(spec.submodule_search_locations))) / "model" / sub / f"{model_name.lower()}.py"  # type: ignore[union-attr]


def check_model(model_name: str) -> None:
    """An :class:`UnknownModelError` naming the closest matches and our models, unless
    ``model_name`` is ours or RecBole's."""
    if model_name in PLUGIN_MODELS or model_name in recbole_model_names():
        return
    close = difflib.get_close_matches(model_name, valid_model_names(), n=3)
    if not close:  # case slips: sasrec -> SASRec
        close = [n for n in valid_model_names() if n.lower() == model_name.lower()]
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise UnknownModelError(
        f"Unknown model '{model_name}'.{hint} Our models: {', '.join(sorted(PLUGIN_MODELS))}; any of RecBole's "
        f"{len(recbole_model_names())} built-ins (SASRec, GRU4Rec, BERT4Rec, ...) runs too: "
        "`python run_recbole_lea.py --list-models` lists them all."
    )


@cache
def missing_packages(model_name: str) -> tuple[str, ...]:
    """The Python packages a RecBole model's file imports (at any depth: KGAT imports ``dgl``
    inside a method) that are not installed: RecBole's optional dependencies (dgl, faiss,
    lightgbm, xgboost), which neither RecBole 1.2.1 nor recbole_lea installs. Read as text."""
    sub = recbole_model_names().get(model_name)
    if sub is None:
        return ()
    tree = ast.parse(_model_file(model_name, sub).read_text(encoding="utf-8"))
    names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {
        n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module and not n.level
    }
    return tuple(sorted(n for n in names if importlib.util.find_spec(n) is None))


def check_dependencies(model_name: str) -> None:
    """One :class:`ConfigError` naming the model and the packages it needs that are not installed."""
    missing = missing_packages(model_name)
    if missing:
        raise ConfigError(
            f"Model {model_name} needs the Python package(s) {', '.join(missing)}, which are not installed "
            f"(RecBole's optional dependencies: neither RecBole 1.2.1 nor recbole_lea installs them). Install "
            f"them (`pip install {' '.join(missing)}`, for dgl see its install page), or choose another model."
        )


def get_model(model_name: str) -> type:
    """Model class for ``model_name``: ours first, then RecBole's built-ins."""
    check_model(model_name)
    if model_name in PLUGIN_MODELS:
        module = importlib.import_module(PLUGIN_MODELS[model_name])
        return getattr(module, model_name)
    sub = recbole_model_names()[model_name]
    module = importlib.import_module(f"recbole.model.{sub}.{model_name.lower()}")
    return getattr(module, model_name)


def create_dataset(config):  # type: ignore[no-untyped-def]
    """Dataset for ``config``: :class:`RLSequentialDataset` for every sequential model (ours and
    RecBole's, so splits are identical across them) but those with a dataset class of their own
    (RecBole's ``DIENDataset``, ``KSRDataset``, ...), RecBole's own choice otherwise; tokens get the
    ids of a checkpoint's maps when the config carries them (:class:`~recbole_lea.data.dataset.TokenMaps`)."""
    from recbole.utils import ModelType

    from recbole_lea.compat import recbole_dataset_class
    from recbole_lea.data.dataset import RLSequentialDataset, with_token_maps

    cls = recbole_dataset_class(config)
    if config["MODEL_TYPE"] == ModelType.SEQUENTIAL and cls.__name__ == "SequentialDataset":
        return RLSequentialDataset(config)  # not the models with a dataset of their own (DIEN, KSR, ...)
    return with_token_maps(cls)(config)
