"""Stage 4 of the pipeline: run any model (ours or RecBole's) on an atomic dataset with one config,
and reload it.

:func:`resolve_run` merges the option layers and checks every key and value before any work:

    RecBole's own defaults < recbole_lea/properties/overall.yaml < run.yaml < the model's layers
    (model/rl.yaml, model/SA2C.yaml, model/le.yaml, model/<Model>.yaml) < the dataset yaml
    < --config_files < --key=value

A key that neither RecBole nor a consumer of this run declares is an error with a did-you-mean;
each consumer (the run, the model classes, the LE build) reads its own keys. For ``*_LEA`` models
the LE build's options resolve into an :class:`~recbole_lea.le.config.LEConfig`, whose fingerprint
names the LE folder the run reads (:func:`ensure_le` builds or reuses it, verified).
:func:`run_recbole_lea` mirrors ``recbole.quick_start.run_recbole`` with plugin-first lookups and a
plain-dict result.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from logging import getLogger
from pathlib import Path
from typing import Any

import torch

from recbole_lea import LOG_FORMAT, compat, registry
from recbole_lea.errors import ConfigError
from recbole_lea.options import (
    PROPERTIES,
    OptionSpec,
    build,
    check_recbole_value,
    check_value,
    dataset_yaml_path,
    opt,
    read_yaml,
    specs_of,
    unknown_key_error,
)

compat.apply()

from recbole.config import Config  # noqa: E402
from recbole.data import data_preparation  # noqa: E402
from recbole.utils import init_logger, init_seed  # noqa: E402

LEA_SUFFIX = "-lea"
EVAL_PROTOCOLS = ("loo", "sequence")
#: RecBole keys that would save or load pickled datasets/dataloaders (they run code when loaded
#: and go stale when the data change): refused
PICKLE_OPTIONS = ("save_dataset", "dataset_save_path", "save_dataloaders", "dataloaders_save_path")
#: RecBole keys read by its distributed launcher, not listed in its yaml files
RECBOLE_EXTRA_KEYS = ("nproc", "world_size", "offset", "ip", "port", "local_rank", "single_spec", "model", "dataset")


@dataclass
class RunOptions:
    """Options of a run itself (read by this module and the RL dataset)."""

    eval_protocol: str = opt(
        "loo",
        "`loo` (RecBole leave-one-out) or `sequence` (original SA2C: whole sequences split, every interaction of a "
        "held-out sequence is a query).",
        choices=EVAL_PROTOCOLS,
    )
    sequence_split_ratios: list = opt(
        [0.8, 0.1, 0.1], "Train/valid/test shares of whole sequences under eval_protocol=sequence (each > 0)."
    )
    split_seed: int = opt(
        2020,
        "Seed of the sequence split: which whole sequences are train/valid/test. A property of the data, not of "
        "the run: every model seed of a comparison and the LE see the same split.",
    )
    torch_threads: int = opt(
        1,
        "torch intra-op threads of the run (0: torch's default, one per core); these small models gain little "
        "from more, and several stall when the cores are shared.",
        ge=0,
    )
    le_profile: str = opt(
        "cpu",
        "LE build profile of *_LEA models: cpu, paper (recbole_lea/properties/le/) or the path of a profile yaml.",
    )
    le_auto_build: bool = opt(
        True, "*_LEA models: build (or reuse) the LE of this config before training; False: it must exist already."
    )
    le_dir: str | None = opt(
        None,
        "*_LEA models: use the LE folder <name>-lea/ given here as it is (verified against its manifest), e.g. one "
        "built on another machine, instead of the LE of this config.",
    )


# ---------------------------------------------------------------------------- names
def is_lea_model(model: str) -> bool:
    return model.endswith("_LEA")


def base_dataset_name(dataset: str) -> str:
    return dataset[: -len(LEA_SUFFIX)] if dataset.endswith(LEA_SUFFIX) else dataset


# ---------------------------------------------------------------------------- declarations
@cache
def recbole_defaults(model: str, dataset: str) -> dict[str, tuple[Any, str]]:
    """Every key RecBole declares for ``model`` on ``dataset``: key -> (default, file). Our RL
    models read the keys of their backbones, RecBole's SASRec and GRU4Rec."""
    import recbole

    root = Path(recbole.__file__).parent / "properties"
    models = ("SASRec", "GRU4Rec") if registry.is_plugin_model(model) else (model,)
    files = [root / "overall.yaml", root / "dataset" / "sample.yaml", *(root / "model" / f"{m}.yaml" for m in models)]
    files += [root / "dataset" / f"{dataset}.yaml", *sorted((root / "quick_start_config").glob("*.yaml"))]
    out: dict[str, tuple[Any, str]] = {}
    for f in files:
        if f.is_file():
            for key, value in read_yaml(f, "RecBole's file").items():
                out.setdefault(key, (value, f"RecBole's {f.relative_to(root)}"))
    from recbole.utils.argument_list import (
        dataset_arguments,
        evaluation_arguments,
        general_arguments,
        training_arguments,
    )

    for key in (
        *general_arguments,
        *training_arguments,
        *evaluation_arguments,
        *dataset_arguments,
        *RECBOLE_EXTRA_KEYS,
    ):
        out.setdefault(key, (None, "RecBole"))
    return out


def option_layers(model_class: type) -> list[tuple[str, type | None, dict[str, tuple[Any, str]]]]:
    """(yaml file stem, options dataclass, default overrides) of each class of a plugin model that
    declares options, base classes first."""
    layers = []
    for cls in reversed(model_class.__mro__):
        if "options_file" in cls.__dict__:
            layers.append(
                (cls.__dict__["options_file"], cls.__dict__.get("options"), cls.__dict__.get("option_overrides", {}))
            )
    return layers


def model_specs(model_class: type) -> dict[str, OptionSpec]:
    specs: dict[str, OptionSpec] = {}
    for _file, options, _overrides in option_layers(model_class):
        if options is not None:
            specs.update(specs_of(options))
    return specs


RUN_SPECS = specs_of(RunOptions)


@cache
def all_declared_specs() -> dict[str, OptionSpec]:
    """Every option any consumer of ours declares (run, models, LE build)."""
    from recbole_lea.le.config import SPECS as LE_SPECS

    out = dict(RUN_SPECS)
    for name in registry.PLUGIN_MODELS:
        out.update(model_specs(registry.get_model(name)))
    out.update(LE_SPECS)
    return out


@cache
def recbole_model_keys() -> frozenset[str]:
    """Keys of every RecBole built-in model's yaml (known, read by those models only)."""
    import recbole

    keys: set[str] = set()
    for f in (Path(recbole.__file__).parent / "properties" / "model").glob("*.yaml"):
        keys.update(read_yaml(f, "RecBole's file"))
    return frozenset(keys)


def _type_ok(default: Any, value: Any) -> bool:
    if default is None or value is None:
        return True
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, int | float) and not isinstance(value, bool)
    if isinstance(default, list | tuple):
        return isinstance(value, list | tuple)
    if isinstance(default, dict):
        return isinstance(value, dict)
    if isinstance(default, str):
        return isinstance(value, str)
    return True


def _type_name(value: Any) -> str:
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "a mapping",
    }.get(type(value), type(value).__name__)


# ---------------------------------------------------------------------------- resolution
@dataclass
class ResolvedRun:
    """A run's options, checked: what :func:`build_config` and the LE build read."""

    model: str
    model_class: type
    dataset: str  # the base dataset (without -lea)
    data_path: str
    files: list[str]  # config files RecBole reads, ours first
    options: dict[str, Any]  # merged values of every layer above RecBole's own defaults
    sources: dict[str, str]  # key -> the layer its value came from
    run: RunOptions
    le: Any = None  # LEConfig of *_LEA models
    config_dict: dict[str, Any] = field(default_factory=dict)  # the user's --key=value options

    @property
    def lea(self) -> bool:
        return is_lea_model(self.model) and registry.is_plugin_model(self.model)


def default_config_files(model: str, dataset: str, data_path: str | None = None) -> list[str]:
    """Our default layers for ``model`` on ``dataset``; a missing shipped file is an error."""
    model_class = registry.get_model(model)
    files = [PROPERTIES / "overall.yaml", PROPERTIES / "run.yaml"]
    if registry.is_plugin_model(model):
        files += [PROPERTIES / "model" / f"{stem}.yaml" for stem, _o, _v in option_layers(model_class)]
    for f in files:
        if not f.is_file():
            raise ConfigError(
                f"The installation of recbole_lea lacks its default file {f}: reinstall the package "
                "(`pip install .` from a clone, or `python -m recbole_lea.options --write` in a clone)."
            )
    ds_yaml = dataset_yaml_path(base_dataset_name(dataset), data_path)
    return [str(f) for f in files] + ([str(ds_yaml)] if ds_yaml else [])


def _file_label(path: str) -> str:
    """A shipped default file by its place in the package, any other file by its path."""
    p = Path(path)
    try:
        return str(p.relative_to(PROPERTIES.parent.parent))
    except ValueError:
        return str(p)


def _pick_data_path(layers: list[tuple[str, dict[str, Any]]]) -> str:
    value = "atomic_datasets/"
    for _source, values in layers:
        if values.get("data_path"):
            value = str(values["data_path"])
    return value


def resolve_run(
    model: str,
    dataset: str,
    config_file_list: list[str] | None = None,
    config_dict: dict[str, Any] | None = None,
) -> ResolvedRun:
    """Merge and check every option of a run; nothing is trained or built."""
    model_class = registry.get_model(model)  # raises with the closest names
    dataset = base_dataset_name(dataset)
    config_dict = dict(config_dict or {})
    user_files = [str(f) for f in (config_file_list or [])]
    user_layers = [(f"config file {f}", read_yaml(Path(f), "config file (--config_files)")) for f in user_files]
    user_layers.append(("the command line / config_dict", config_dict))
    data_path = _pick_data_path(user_layers)
    files = default_config_files(model, dataset, data_path)
    layers = [(_file_label(f), read_yaml(Path(f))) for f in files] + user_layers

    lea = is_lea_model(model) and registry.is_plugin_model(model)
    from recbole_lea.le.config import DATASET_KEYS as LE_DATASET_KEYS
    from recbole_lea.le.config import LE_RENAMED
    from recbole_lea.le.config import SPECS as LE_SPECS

    # what this run reads, and what any consumer declares (a key of another model is ignored
    # with a warning, so one comparison command can carry every model's options)
    reads: dict[str, OptionSpec] = dict(RUN_SPECS)
    if registry.is_plugin_model(model):
        reads.update(model_specs(model_class))
    if lea:
        reads.update(LE_SPECS)
    declared = {**all_declared_specs(), **reads}
    rb = recbole_defaults(model_class.__name__, dataset)
    rb_other = recbole_model_keys()
    hints = {old: f"was renamed `{new}`." for old, new in LE_RENAMED.items() if old not in rb}

    merged: dict[str, Any] = {}
    sources: dict[str, str] = {}
    ignored: dict[str, str] = {}
    user_sources = {source for source, _values in user_layers}
    for source, values in layers:
        for key, value in values.items():
            if key in declared:
                value = check_value(declared[key], value, source)
                if key not in reads and key not in LE_DATASET_KEYS and source in user_sources:
                    ignored[key] = source
            elif key in rb:
                default, where = rb[key]
                if not _type_ok(default, value):
                    raise ConfigError(
                        f"Option `{key}` expects {_type_name(default)} (default {default!r} in {where}), got "
                        f"{value!r} from {source}: fix that value."
                    )
                check_recbole_value(key, value, source)
            elif key in rb_other:
                if source in user_sources:
                    ignored[key] = source
            else:
                raise unknown_key_error(key, set(declared) | set(rb) | set(rb_other), source, hints)
            merged[key] = value
            sources[key] = source
    for key, source in ignored.items():
        owner = declared[key].owner if key in declared else "other RecBole models"
        logging.getLogger(__name__).warning(
            "option `%s` (from %s) is read by %s, not by a %s run: ignored", key, source, owner, model
        )
    for key in PICKLE_OPTIONS:
        if merged.get(key):
            raise ConfigError(
                f"Option `{key}` (from {sources[key]}) is refused: recbole_lea never unpickles RecBole datasets or "
                "dataloaders (a pickle runs code when loaded, and a saved one goes stale when the data change); "
                "remove the option, the data load from the atomic files every run."
            )
    _check_metrics(merged, sources)
    run = build(RunOptions, {k: merged[k] for k in RUN_SPECS if k in merged}, "the run options")
    _check_split(run, sources)
    resolved = ResolvedRun(
        model, model_class, dataset, data_path, files + user_files, merged, sources, run, None, config_dict
    )
    if lea:
        resolved.le = _resolve_le(resolved)
    return resolved


def _check_split(run: RunOptions, sources: dict[str, str]) -> None:
    """Three positive numeric shares of the sequence split (valid and test must not be empty)."""
    ratios = run.sequence_split_ratios
    ok = len(ratios) == 3 and all(isinstance(r, int | float) and not isinstance(r, bool) and r > 0 for r in ratios)
    if run.eval_protocol == "sequence" and not ok:
        raise ConfigError(
            f"Option `sequence_split_ratios` must be three positive shares (train, valid, test), got {ratios} "
            f"from {sources.get('sequence_split_ratios', 'run.yaml')}: an empty valid or test part leaves nothing "
            "to select or evaluate on; e.g. --sequence_split_ratios=[0.8,0.1,0.1]."
        )


def split_of(run: RunOptions) -> dict[str, Any]:
    """The split a run trains on, as the LE build's key records it."""
    if run.eval_protocol == "sequence":
        return {
            "protocol": "sequence",
            "ratios": [float(r) for r in run.sequence_split_ratios],
            "split_seed": run.split_seed,
        }
    return {"protocol": "loo"}


def _check_metrics(merged: dict[str, Any], sources: dict[str, str]) -> None:
    """``valid_metric`` must be one of the metrics at one of the cut-offs."""
    metric = merged.get("valid_metric")
    if not isinstance(metric, str) or "@" not in metric:
        return
    name, _, k = metric.partition("@")
    metrics = [m.lower() for m in (merged.get("metrics") or [])]
    topk = merged.get("topk")
    ks = topk if isinstance(topk, list) else [topk]
    if metrics and name.lower() not in metrics:
        raise ConfigError(
            f"Option `valid_metric` is {metric} but `metrics` is {merged.get('metrics')}: add {name} or pick one of them."
        )
    if k.isdigit() and int(k) not in ks:
        raise ConfigError(
            f"Option `valid_metric` is {metric} but `topk` is {topk}: add {k} to topk or pick one of them."
        )


def _resolve_le(resolved: ResolvedRun) -> Any:
    """The LE build's config: its declared defaults < the profile < the dataset yaml < every
    LE option given in our files, the user's files or the command line."""
    from recbole_lea.le.config import SPECS, profile_names, resolve_config

    profile = resolved.run.le_profile
    if not Path(profile).suffix and profile not in profile_names():
        raise ConfigError(
            f"Unknown LE profile {profile!r} (option `le_profile`): choose one of {', '.join(profile_names())}, "
            "or give the path of a yaml file."
        )
    overrides = {k: v for k, v in resolved.options.items() if k in SPECS}
    return resolve_config(resolved.dataset, profile, overrides, resolved.data_path)


# ---------------------------------------------------------------------------- data files
def check_dataset_files(dataset: str, data_path: str, options: dict[str, Any] | None = None) -> Path:
    """Path of ``<data_path>/<dataset>/<dataset>.inter`` after checking every line of the fields a
    run loads (:func:`recbole_lea.datasets.validate.check_atomic_inter`); converts ml-100k on
    first use. ``options``: the run's merged options (field names, ``load_col``, separator)."""
    from recbole_lea.datasets.validate import check_atomic_inter, read_atomic_header

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
    options = options or {}
    sep = str(options.get("field_separator") or "\t")
    needed = {
        str(options.get("USER_ID_FIELD") or "user_id"): "token",
        str(options.get("ITEM_ID_FIELD") or "item_id"): "token",
        str(options.get("TIME_FIELD") or "timestamp"): "float",
    }
    loaded = (options.get("load_col") or {}).get("inter") or []
    header = read_atomic_header(inter, sep=sep)
    for name in loaded:
        if name not in needed and name in header:
            needed[name] = header[name]
    check_atomic_inter(inter, needed, sep=sep)
    return inter


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


def le_folder(resolved: ResolvedRun) -> Path:
    """The LE folder a ``*_LEA`` run reads, verified; it must exist (see :func:`ensure_le`)."""
    from recbole_lea.le.build import plan_le
    from recbole_lea.le_files.check import LEDatasetMismatch, verify_le_dir

    if resolved.run.le_dir:
        folder = Path(resolved.run.le_dir).expanduser()
        expected = f"{resolved.dataset}{LEA_SUFFIX}"
        if folder.name != expected:
            raise ConfigError(
                f"Option `le_dir` must name a folder called {expected}/ (the LE of {resolved.dataset}), got {folder}."
            )
        verify_le_dir(folder, f"rebuild it, or fix `le_dir` ({folder})")
        return folder
    check_dataset_files(resolved.dataset, resolved.data_path, resolved.options)
    plan = plan_le(resolved.dataset, resolved.data_path, resolved.le, split_of(resolved.run))
    if not plan.out_dir.exists():
        from recbole_lea.le.build import missing_le_message

        raise LEDatasetMismatch(f"{missing_le_message(plan)} (or leave `le_auto_build` on).")
    verify_le_dir(plan.out_dir, plan.fix())
    return plan.out_dir


def ensure_le(resolved: ResolvedRun) -> Path:
    """Build (or reuse, when every stage's fingerprint matches and verifies) the LE folder of a
    resolved ``*_LEA`` run; with ``le_dir`` or ``le_auto_build: False`` only locate and verify it."""
    if resolved.run.le_dir or not resolved.run.le_auto_build:
        return le_folder(resolved)
    from recbole_lea.le.build import build_le

    check_dataset_files(resolved.dataset, resolved.data_path, resolved.options)
    with le_build_logging():
        return Path(build_le(resolved.dataset, resolved.data_path, cfg=resolved.le, split=split_of(resolved.run)))


# ---------------------------------------------------------------------------- RecBole config
@contextmanager
def _no_argv() -> Iterator[None]:
    # RecBole's Config parses sys.argv itself; our CLI has already turned it into config_dict.
    saved = sys.argv
    sys.argv = sys.argv[:1]
    try:
        yield
    finally:
        sys.argv = saved


def recbole_config(resolved: ResolvedRun, le_dir: Path | None = None) -> Config:
    """The RecBole ``Config`` of a resolved run (LEA runs read the LE folder ``le_dir``)."""
    config_dict = dict(resolved.config_dict)
    run_dataset = resolved.dataset
    if resolved.lea:
        assert le_dir is not None
        run_dataset = le_dir.name
        with open(le_dir / f"{le_dir.name}.inter", encoding="utf-8") as f:
            header = [c.split(":")[0] for c in f.readline().rstrip("\n").split("\t")]
        from recbole_lea.le_files.fields import LE_ITEM_FIELDS

        load_col = dict(resolved.options.get("load_col") or {})
        load_col["inter"] = header  # the LE file's columns; other files as for the base dataset
        config_dict["load_col"] = load_col
        config_dict["alias_of_item_id"] = [c for c in LE_ITEM_FIELDS if c in header]
        config_dict["data_path"] = str(le_dir.parent)
        for key in ("le_state_dim",):  # LE options the model reads: the values the LE was built with
            config_dict[key] = getattr(resolved.le, key)
    else:
        check_dataset_files(resolved.dataset, resolved.data_path, resolved.options)
        config_dict["data_path"] = resolved.data_path
    with _no_argv():
        return Config(
            model=resolved.model_class, dataset=run_dataset, config_file_list=resolved.files, config_dict=config_dict
        )


def build_config(
    model: str,
    dataset: str,
    config_file_list: list[str] | None = None,
    config_dict: dict[str, Any] | None = None,
) -> Config:
    """Resolved RecBole ``Config`` for ``model`` on ``dataset`` (LEA models read their LE folder,
    which must exist)."""
    resolved = resolve_run(model, dataset, config_file_list, config_dict)
    return recbole_config(resolved, le_folder(resolved) if resolved.lea else None)


def atomic_root(config: Config) -> str:
    """The folder holding every ``<dataset>/`` (RecBole appends the dataset name to ``data_path``)."""
    return str(Path(config["data_path"]).parent)


# ---------------------------------------------------------------------------- run
def _check_topk(config: Config, n_items: int) -> None:
    topk = config["topk"]
    ks = topk if isinstance(topk, list) else [topk]
    if max(ks) > n_items:
        raise ConfigError(
            f"Option `topk` {topk} asks for more items than dataset '{config['dataset']}' has ({n_items}): "
            f"use cut-offs of at most {n_items}."
        )


def run_recbole_lea(
    model: str,
    dataset: str,
    config_file_list: list[str] | None = None,
    config_dict: dict[str, Any] | None = None,
    saved: bool = True,
    callback_fn: Callable[[int, float, dict], None] | None = None,
) -> dict[str, Any]:
    """Train and evaluate ``model`` on ``dataset`` with RecBole's trainer and evaluator."""
    resolved = resolve_run(model, dataset, config_file_list, config_dict)
    le_dir = ensure_le(resolved) if resolved.lea else None
    config = recbole_config(resolved, le_dir)
    if config["torch_threads"]:
        torch.set_num_threads(int(config["torch_threads"]))
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    logger = getLogger()
    logger.info(config)

    dataset_obj = registry.create_dataset(config)
    logger.info(dataset_obj)
    _check_topk(config, dataset_obj.item_num - 1)
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
    result = {
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
        "le_dir": str(le_dir) if le_dir else None,
        "n_queries": {"valid": len(valid_data._dataset), "test": len(test_data._dataset)},
    }
    result.update(getattr(trainer, "run_notes", {}))
    return result


def _plain(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool | list | dict | tuple)


# ---------------------------------------------------------------------------- reload
def load_data_and_model(model_file: str, config_dict: dict[str, Any] | None = None, trust_pickle: bool = False):  # type: ignore[no-untyped-def]
    """Reload a checkpoint written by a run: ``(config, model, dataset, train, valid, test)``.

    The checkpoint loads with ``torch.load(weights_only=True)`` (see
    :func:`recbole_lea.compat.torch_load`); ``config_dict`` overrides saved options (e.g.
    ``data_path`` on another machine). ``trust_pickle``: load a checkpoint of an older version
    that pickled RecBole's Config (only for files you wrote)."""
    checkpoint = compat.torch_load(model_file, map_location="cpu", trust_pickle=trust_pickle)
    config = checkpoint["config"]
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


def load_for_serving(model_file: str, data_path: str | None = None, trust_pickle: bool = False):  # type: ignore[no-untyped-def]
    """Reload a trained model on its BASE dataset, without any LE file or LE package.

    Ranking uses only the backbone and the supervised head, so a ``*_LEA`` checkpoint ranks the
    base dataset's users exactly as it ranked the LE dataset's (same rows, same item ids).
    ``data_path``: the folder holding ``<base dataset>/`` (default: the run's).
    Returns ``(config, model, dataset, train, valid, test)`` like :func:`load_data_and_model`.
    """
    checkpoint = compat.torch_load(model_file, map_location="cpu", trust_pickle=trust_pickle)
    config = checkpoint["config"]
    dataset = config["dataset"]
    if not dataset.endswith(LEA_SUFFIX):
        return load_data_and_model(model_file, trust_pickle=trust_pickle)
    base = base_dataset_name(dataset)
    if data_path is None:
        # the run read <data_path>/lea/<base>-<fp>/<base>-lea; the base dataset is <data_path>/<base>
        lea_parent = Path(config["data_path"]).parent
        data_path = str(lea_parent.parent.parent) if lea_parent.parent.name == "lea" else str(lea_parent)
    overrides = {
        "dataset": base,
        "data_path": str(Path(data_path) / base),
        "le_serving": True,
        "load_col": {
            **config["load_col"],
            "inter": [config["USER_ID_FIELD"], config["ITEM_ID_FIELD"], config["TIME_FIELD"]],
        },
        "alias_of_item_id": None,
    }
    return load_data_and_model(model_file, config_dict=overrides, trust_pickle=trust_pickle)


# ---------------------------------------------------------------------------- --help-options
def _yaml_comments(path: Path) -> dict[str, str]:
    """``key: value  # help`` lines of a yaml file -> {key: help}."""
    out: dict[str, str] = {}
    if not path.is_file():
        return out
    for line in path.read_text(encoding="utf-8").splitlines():
        if line[:1].isspace() or line.startswith("#") or ":" not in line or "#" not in line:
            continue
        out[line.split(":", 1)[0].strip()] = line.split("#", 1)[1].strip()
    return out


def describe_options(resolved: ResolvedRun) -> str:
    """Every option the run reads, grouped by who reads it, with its value in force, where that
    value came from, and its help."""
    import recbole

    def row(key: str, value: Any, help_text: str) -> str:
        source = resolved.sources.get(key, "default")
        return f"  {key} = {value!r}    [{source}]\n      {help_text}"

    parts = [f"Options of a {resolved.model} run on {resolved.dataset} (value in force, [where it was set], help)"]
    groups: list[tuple[str, dict[str, OptionSpec], Any]] = [("the run (RunOptions, run.yaml)", RUN_SPECS, None)]
    if registry.is_plugin_model(resolved.model):
        for stem, options, _overrides in option_layers(resolved.model_class):
            if options is not None:
                groups.append((f"{options.__name__} (model/{stem}.yaml)", specs_of(options), None))
    if resolved.le is not None:
        from recbole_lea.le.config import SPECS as LE_SPECS

        groups.append((f"the LE build (LEConfig, profile {resolved.run.le_profile!r})", LE_SPECS, resolved.le))
    for title, specs, values in groups:
        parts.append(f"\n{title}:")
        for name, spec in specs.items():
            value = getattr(values, name) if values is not None else resolved.options.get(name, spec.default)
            extra = f" Cache stages: {', '.join(spec.stages)}." if spec.stages else ""
            parts.append(row(name, value, f"({spec.type_name()}) {spec.help}{extra}"))
    root = Path(recbole.__file__).parent / "properties"
    helps = {**_yaml_comments(root / "dataset" / "sample.yaml"), **_yaml_comments(root / "overall.yaml")}
    helps.update(_yaml_comments(root / "model" / f"{resolved.model_class.__name__}.yaml"))
    for f in resolved.files:
        helps.update({k: v for k, v in _yaml_comments(Path(f)).items() if k not in all_declared_specs()})
    parts.append("\nRecBole (its own options; help from its yaml files or ours):")
    rb = recbole_defaults(resolved.model_class.__name__, resolved.dataset)
    for key in sorted(rb, key=str.lower):
        if key in all_declared_specs() or key in RECBOLE_EXTRA_KEYS:
            continue
        value = resolved.options.get(key, rb[key][0])
        parts.append(row(key, value, helps.get(key, "(RecBole)")))
    return "\n".join(parts) + "\n"
