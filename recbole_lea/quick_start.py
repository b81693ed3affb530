"""Run any model (ours or RecBole's) on an atomic dataset with one config, and reload it.

``run_recbole_lea`` mirrors ``recbole.quick_start.run_recbole`` with plugin-first lookups, our
properties, clear errors for bad input, the LE build for LEA models, and a plain-dict result.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from logging import getLogger
from pathlib import Path
from typing import Any

import torch
import yaml

from recbole_lea import LOG_FORMAT, compat, registry
from recbole_lea.errors import ConfigError

compat.apply()

from recbole.config import Config  # noqa: E402
from recbole.data import data_preparation  # noqa: E402
from recbole.utils import init_logger, init_seed  # noqa: E402

from recbole_lea.model.rl_base import LE_NEGATIVES, REWARD_TRANSFORMS  # noqa: E402

PACKAGE_ROOT = Path(__file__).resolve().parent
PROPERTIES = Path(os.environ.get("RECBOLE_LEA_PROPERTIES", PACKAGE_ROOT.parent / "properties"))
LEA_SUFFIX = "-lea"
LE_PROFILES = ("cpu", "paper")
EVAL_PROTOCOLS = ("loo", "sequence")
#: ``le_*`` options read by the models, not by the LE build
MODEL_ONLY_LE_KEYS = (
    "le_profile",
    "le_reward",
    "le_state",
    "le_reward_transform",
    "le_reward_scale",
    "le_state_norm",
    "le_negatives",
    "le_auto_build",
    "le_serving",
)


# ---------------------------------------------------------------------------- config
def _read_yaml(path: Path) -> dict[str, Any]:
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f) or {}


def _recbole_defaults() -> dict[str, Any]:
    import recbole

    return _read_yaml(Path(recbole.__file__).parent / "properties" / "overall.yaml")


def is_lea_model(model: str) -> bool:
    return model.endswith("_LEA")


def base_dataset_name(dataset: str) -> str:
    return dataset[: -len(LEA_SUFFIX)] if dataset.endswith(LEA_SUFFIX) else dataset


def default_config_files(model: str, dataset: str) -> list[str]:
    files = [PROPERTIES / "overall.yaml", PROPERTIES / "model" / f"{model}.yaml"]
    files.append(PROPERTIES / "dataset" / f"{base_dataset_name(dataset)}.yaml")
    return [str(f) for f in files if f.is_file()]


def _type_name(value: Any) -> str:
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "a mapping",
    }.get(type(value), type(value).__name__)


def _type_ok(default: Any, value: Any) -> bool:
    if default is None or value is None:
        return True
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, (list, tuple)):
        return isinstance(value, (list, tuple))
    if isinstance(default, dict):
        return isinstance(value, dict)
    if isinstance(default, str):
        return isinstance(value, str)
    return True


def validate_options(options: dict[str, Any], files: list[str], where: str) -> None:
    """Type-check user options against the defaults of our yaml files and RecBole's overall.yaml."""
    defaults: dict[str, tuple[Any, str]] = {k: (v, "RecBole overall.yaml") for k, v in _recbole_defaults().items()}
    for f in files:
        for k, v in _read_yaml(Path(f)).items():
            if v is not None:
                defaults[k] = (v, f)
    for key, value in options.items():
        if key in defaults and not _type_ok(defaults[key][0], value):
            default, source = defaults[key]
            raise ConfigError(
                f"Option `{key}` expects {_type_name(default)} (default {default!r} in {source}), "
                f"got {value!r} from {where}: fix that value."
            )


def _check_choice(options: dict[str, Any], key: str, choices: tuple[str, ...] | list[str]) -> None:
    value = options.get(key)
    if value is not None and value not in choices:
        raise ConfigError(f"Unknown value {value!r} for option `{key}`: choose one of {', '.join(choices)}.")


def check_dataset_files(dataset: str, data_path: str) -> Path:
    """Path of ``<data_path>/<dataset>/<dataset>.inter``; converts ml-100k on first use."""
    folder = Path(data_path) / dataset
    inter = folder / f"{dataset}.inter"
    if not inter.is_file() and dataset == "ml-100k":
        from recbole_lea.datasets.ml100k import ensure_ml100k

        ensure_ml100k(data_path)
    if not inter.is_file():
        raise ConfigError(
            f"No atomic files for dataset '{dataset}': expected {inter}. Convert your data first "
            "(`python -m recbole_lea.datasets --help`, see atomic_datasets/README.md), or point "
            "--data_path at the folder that holds <dataset>/<dataset>.inter."
        )
    return inter


@contextmanager
def _no_argv() -> Iterator[None]:
    # RecBole's Config parses sys.argv itself; our CLI has already turned it into config_dict.
    saved = sys.argv
    sys.argv = sys.argv[:1]
    try:
        yield
    finally:
        sys.argv = saved


def build_config(
    model: str,
    dataset: str,
    config_file_list: list[str] | None = None,
    config_dict: dict[str, Any] | None = None,
) -> Config:
    """Resolved RecBole ``Config`` for ``model`` on ``dataset`` (LEA models read ``<dataset>-lea``)."""
    model_class = registry.get_model(model)  # raises with the list of valid names
    config_dict = dict(config_dict or {})
    user_files = [str(f) for f in (config_file_list or [])]
    for f in user_files:
        if not Path(f).is_file():
            raise ConfigError(f"Config file {f} does not exist (given in --config_files).")
    files = default_config_files(model, dataset) + user_files
    user_file_options: dict[str, Any] = {}
    for f in user_files:
        user_file_options.update(_read_yaml(Path(f)))
    validate_options(user_file_options, files[: len(files) - len(user_files)], "your config files")
    validate_options(config_dict, files, "the command line / config_dict")
    merged = {}
    for f in files:
        merged.update(_read_yaml(Path(f)))
    merged.update(config_dict)
    _check_choice(merged, "backbone", ("SASRec", "GRU4Rec"))
    _check_choice(merged, "eval_protocol", EVAL_PROTOCOLS)
    _check_choice(merged, "le_profile", LE_PROFILES)
    _check_choice(merged, "le_reward_transform", REWARD_TRANSFORMS)
    _check_choice(merged, "le_negatives", LE_NEGATIVES)
    if merged.get("variant") is not None and registry.is_plugin_model(model) and is_lea_model(model):
        from recbole_lea.model.rl_base import resolve_variant

        if merged["variant"] != "custom":
            try:
                config_dict["variant"] = resolve_variant(merged["variant"])
            except ValueError as e:
                raise ConfigError(str(e)) from None

    if is_lea_model(model) and merged.get("eval_protocol") == "sequence":
        raise ConfigError(
            "Option `eval_protocol: sequence` is not supported for *_LEA models yet: the LE is built "
            "from the leave-one-out training rows, so sequences held out by the sequence split would "
            "leak into LE training. Use eval_protocol=loo for LEA runs."
        )
    data_path = str(merged.get("data_path") or "atomic_datasets/")
    run_dataset = dataset
    if is_lea_model(model):
        run_dataset = dataset if dataset.endswith(LEA_SUFFIX) else dataset + LEA_SUFFIX
        check_dataset_files(base_dataset_name(dataset), data_path)
        lea_inter = Path(data_path) / run_dataset / f"{run_dataset}.inter"
        if lea_inter.is_file():
            with open(lea_inter, encoding="utf-8") as f:
                header = [c.split(":")[0] for c in f.readline().rstrip("\n").split("\t")]
            load_col = dict(merged.get("load_col") or {})
            load_col["inter"] = header  # the LE file's columns; other files as for the base dataset
            config_dict.setdefault("load_col", load_col)
            config_dict.setdefault("alias_of_item_id", [c for c in ("le_neg_id", "le_aug_id") if c in header])
    else:
        check_dataset_files(dataset, data_path)
    config_dict.setdefault("data_path", data_path)
    with _no_argv():
        config = Config(model=model_class, dataset=run_dataset, config_file_list=files, config_dict=config_dict)
    return config


def atomic_root(config: Config) -> str:
    """The folder holding every ``<dataset>/`` (RecBole appends the dataset name to ``data_path``)."""
    return str(Path(config["data_path"]).parent)


# ---------------------------------------------------------------------------- LE
@contextmanager
def le_build_logging() -> Iterator[None]:
    """Print the LE build's log lines (stage timings, LE epoch accuracy and margin) to stderr when
    nothing has configured logging yet: a plain ``run_recbole_lea.py`` run sets RecBole's logger up
    only after the build, so without this they would be dropped."""
    lea_logger = logging.getLogger("recbole_lea")
    if logging.getLogger().handlers or lea_logger.handlers:
        yield
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    level = lea_logger.level
    lea_logger.addHandler(handler)
    lea_logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        lea_logger.removeHandler(handler)
        lea_logger.setLevel(level)


def ensure_le(dataset: str, config: Config | dict[str, Any]) -> Path:
    """Build (or reuse, when every stage's fingerprint matches) the LE atomic files of ``dataset``."""
    from recbole_lea.le.build import build_le

    get = config.__getitem__ if isinstance(config, Config) else config.get
    data_path = atomic_root(config) if isinstance(config, Config) else str(get("data_path") or "atomic_datasets/")
    base = base_dataset_name(dataset)
    check_dataset_files(base, data_path)
    overrides: dict[str, Any] = {}
    source = config.final_config_dict if isinstance(config, Config) else config
    for key, value in source.items():
        if key.startswith("le_") and key not in MODEL_ONLY_LE_KEYS and value is not None:
            overrides[key] = value
    with le_build_logging():
        return Path(build_le(base, data_path, get("le_profile") or "cpu", overrides))


def require_le_files(dataset: str, data_path: str) -> Path:
    lea = base_dataset_name(dataset) + LEA_SUFFIX
    inter = Path(data_path) / lea / f"{lea}.inter"
    if not inter.is_file():
        raise ConfigError(
            f"No LE atomic files for dataset '{base_dataset_name(dataset)}': expected {inter}. Build "
            f"them with `python run_recbole_lea.py --build-le --dataset={base_dataset_name(dataset)}` "
            "(or leave `le_auto_build` on)."
        )
    return inter


# ---------------------------------------------------------------------------- run
def run_recbole_lea(
    model: str,
    dataset: str,
    config_file_list: list[str] | None = None,
    config_dict: dict[str, Any] | None = None,
    saved: bool = True,
    callback_fn: Callable[[int, float, dict], None] | None = None,
) -> dict[str, Any]:
    """Train and evaluate ``model`` on ``dataset`` with RecBole's trainer and evaluator."""
    if is_lea_model(model):
        pre = build_config(model, dataset, config_file_list, config_dict)
        if pre["le_auto_build"] is False:
            require_le_files(dataset, atomic_root(pre))
        else:
            ensure_le(dataset, pre)
    config = build_config(model, dataset, config_file_list, config_dict)
    if config["torch_threads"]:
        torch.set_num_threads(int(config["torch_threads"]))
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    logger = getLogger()
    logger.info(config)

    dataset_obj = registry.create_dataset(config)
    logger.info(dataset_obj)
    train_data, valid_data, test_data = data_preparation(config, dataset_obj)

    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    model_obj = registry.get_model(config["model"])(config, train_data._dataset).to(config["device"])
    logger.info(model_obj)
    trainer = registry.get_trainer(config["MODEL_TYPE"], config["model"])(config, model_obj)

    cb = None
    if callback_fn is not None:

        def cb(epoch_idx: int, valid_score: float) -> None:
            callback_fn(epoch_idx, valid_score, dict(trainer.valid_history[-1]))

    start = time.perf_counter()
    best_valid_score, best_valid_result = trainer.fit(
        train_data, valid_data, saved=saved, show_progress=config["show_progress"], callback_fn=cb
    )
    test_result = trainer.evaluate(test_data, load_best_model=saved, show_progress=config["show_progress"])
    logger.info(f"best valid : {best_valid_result}")
    logger.info(f"test result: {test_result}")
    return {
        "model": model,
        "dataset": dataset,
        "best_valid_score": float(best_valid_score),
        "valid_score_bigger": bool(config["valid_metric_bigger"]),
        "best_valid_result": {k: float(v) for k, v in (best_valid_result or {}).items()},
        "test_result": {k: float(v) for k, v in (test_result or {}).items()},
        "model_file": trainer.saved_model_file if saved else None,
        "config": {k: v for k, v in config.final_config_dict.items() if _plain(v)},
        "epoch_times": list(trainer.epoch_times),
        "train_losses": list(trainer.loss_history),
        "valid_history": list(trainer.valid_history),
        "wall_time": time.perf_counter() - start,
    }


def _plain(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool, list, dict, tuple))


def load_data_and_model(model_file: str, config_dict: dict[str, Any] | None = None):  # type: ignore[no-untyped-def]
    """Reload a checkpoint written by a run: ``(config, model, dataset, train, valid, test)``.

    Works on torch>=2.6 without environment hacks (see :func:`recbole_lea.compat.torch_load`).
    ``config_dict`` overrides saved options (e.g. ``data_path`` on another machine).
    """
    checkpoint = compat.torch_load(model_file, map_location="cpu")
    config = compat.unpickled_config(checkpoint["config"])
    for key, value in (config_dict or {}).items():
        config[key] = value
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    dataset = registry.create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    init_seed(config["seed"], config["reproducibility"])
    model = registry.get_model(config["model"])(config, train_data._dataset).to(config["device"])
    model.load_state_dict(checkpoint["state_dict"])
    model.load_other_parameter(checkpoint.get("other_parameter"))
    model.eval()
    return config, model, dataset, train_data, valid_data, test_data


def load_for_serving(model_file: str):  # type: ignore[no-untyped-def]
    """Reload a trained model on its BASE dataset, without any LE file or LE package.

    Ranking uses only the backbone and the supervised head, so a ``*_LEA`` checkpoint ranks the
    base dataset's users exactly as it ranked the LE dataset's (same rows, same item ids).
    Returns ``(config, model, dataset, train, valid, test)`` like :func:`load_data_and_model`.
    """
    checkpoint = compat.torch_load(model_file, map_location="cpu")
    config = checkpoint["config"]
    dataset = config["dataset"]
    if not dataset.endswith(LEA_SUFFIX):
        return load_data_and_model(model_file)
    base = base_dataset_name(dataset)
    root = Path(config["data_path"]).parent
    overrides = {
        "dataset": base,
        "data_path": str(root / base),
        "le_serving": True,
        "load_col": {
            **config["load_col"],
            "inter": [config["USER_ID_FIELD"], config["ITEM_ID_FIELD"], config["TIME_FIELD"]],
        },
        "alias_of_item_id": None,
    }
    return load_data_and_model(model_file, config_dict=overrides)
