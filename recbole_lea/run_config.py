"""Resolving a run's options, before any heavy import or any work (no torch, no RecBole import).

:func:`resolve_run` merges the option layers and checks every key and value:

    RecBole's own defaults < properties/overall.yaml < run.yaml < properties/sequential.yaml
    (sequential models) < the model's layers (model/rl.yaml, model/SA2C.yaml, model/le.yaml,
    model/<Model>.yaml) < the dataset yaml < --config_files < --key=value

A key that neither RecBole nor a consumer of ours declares is an error with a did-you-mean; a key
another model reads is ignored with a warning. Each consumer (the run, the model classes, the LE
build) reads its own keys: for ``*_LEA`` models the LE build's options resolve into an
:class:`~recbole_lea.le.config.LEConfig`. RecBole's declarations are read from its yaml files and
its ``argument_list.py`` as text, so a bad option is reported in well under a second.
:mod:`recbole_lea.quick_start` runs what this module resolved.
"""

from __future__ import annotations

import ast
import importlib.util
import logging
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from recbole_lea import registry
from recbole_lea.errors import ConfigError
from recbole_lea.model.options import BACKBONES, MODEL_LAYERS
from recbole_lea.options import (
    PROPERTIES,
    OptionSpec,
    build,
    check_dataset_name,
    check_recbole_value,
    check_value,
    dataset_yaml_path,
    opt,
    read_yaml,
    specs_of,
    unknown_key_error,
)

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
        0,
        "torch intra-op threads of the run; 0 leaves torch's setting (one per core, or what the caller set: "
        "run_compare_lea.py and tune give each run --threads, default 1). A lone run on 2 idle cores trains "
        "SA2C_LEA 1.3x faster with 2 threads than 1 (docs/le.md); several runs at once each want 1.",
        ge=0,
    )
    le_profile: str = opt(
        "cpu",
        "LE build profile of *_LEA models: cpu, paper (properties/le/) or the path of a profile yaml.",
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
def recbole_root() -> Path:
    """RecBole's package folder, found without importing it."""
    spec = importlib.util.find_spec("recbole")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("RecBole is not installed: see the install command in README.md.")
    return Path(next(iter(spec.submodule_search_locations)))


def _argument_lists() -> list[str]:
    """The option names of ``recbole/utils/argument_list.py``, read as text (no import)."""
    tree = ast.parse((recbole_root() / "utils" / "argument_list.py").read_text(encoding="utf-8"))
    names: list[str] = []
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.List):
            names += [e.value for e in node.value.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]
    return names


@cache
def recbole_defaults(model: str, dataset: str) -> dict[str, tuple[Any, str]]:
    """Every key RecBole declares for ``model`` on ``dataset``: key -> (default, file). Our RL
    models read the keys of their backbones, RecBole's SASRec and GRU4Rec."""
    root = recbole_root() / "properties"
    models = ("SASRec", "GRU4Rec") if registry.is_plugin_model(model) else (model,)
    files = [root / "overall.yaml", root / "dataset" / "sample.yaml", *(root / "model" / f"{m}.yaml" for m in models)]
    files += [root / "dataset" / f"{dataset}.yaml", *sorted((root / "quick_start_config").glob("*.yaml"))]
    out: dict[str, tuple[Any, str]] = {}
    for f in files:
        if f.is_file():
            for key, value in read_yaml(f, "RecBole's file").items():
                out.setdefault(key, (value, f"RecBole's {f.relative_to(root)}"))
    for key in (*_argument_lists(), *RECBOLE_EXTRA_KEYS):
        out.setdefault(key, (None, "RecBole"))
    return out


def option_layers(model: str) -> tuple[tuple[str, type | None, dict[str, tuple[Any, str]]], ...]:
    """(yaml file stem, options dataclass, default overrides) of each layer of one of our models,
    base first (:data:`recbole_lea.model.options.MODEL_LAYERS`); none for RecBole's models."""
    return MODEL_LAYERS.get(model, ())


def model_specs(model: str) -> dict[str, OptionSpec]:
    specs: dict[str, OptionSpec] = {}
    for _file, options, _overrides in option_layers(model):
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
        out.update(model_specs(name))
    out.update(LE_SPECS)
    return out


@cache
def recbole_model_keys() -> frozenset[str]:
    """Keys of every RecBole built-in model's yaml (known, read by those models only)."""
    keys: set[str] = set()
    for f in (recbole_root() / "properties" / "model").glob("*.yaml"):
        keys.update(read_yaml(f, "RecBole's file"))
    return frozenset(keys)


#: RecBole keys that are counts: an integer only (elsewhere RecBole writes float defaults such as 0)
INTEGER_KEYS = frozenset(
    {"epochs", "train_batch_size", "eval_batch_size", "MAX_ITEM_LIST_LENGTH", "stopping_step", "eval_step", "worker"}
    | {"hidden_size", "embedding_size", "inner_size", "n_layers", "n_heads", "num_layers", "seed", "topk"}
)


def _same_kind(default: Any, value: Any, key: str = "") -> bool:
    if default is None or value is None:
        return True
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, int):  # RecBole writes `dropout_prob: 0` for a float option
        allowed: tuple[type, ...] = (int,) if key in INTEGER_KEYS else (int, float)
        return isinstance(value, allowed) and not isinstance(value, bool)
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
    registry.check_model(model)
    files = [PROPERTIES / "overall.yaml", PROPERTIES / "run.yaml"]
    if registry.is_sequential(model) and registry.ranks_all_items(model):
        files.append(PROPERTIES / "sequential.yaml")
    if model in BACKBONES or registry.is_plugin_model(model):
        files.append(PROPERTIES / "backbones.yaml")
    files += [PROPERTIES / "model" / f"{stem}.yaml" for stem, _o, _v in option_layers(model)]
    for f in files:
        if not f.is_file():
            raise ConfigError(
                f"The installation of recbole_lea lacks its default file {f}: reinstall the package "
                "(`pip install .` from a clone, or `python -m recbole_lea.defaults --write` in a clone)."
            )
    ds_yaml = dataset_yaml_path(base_dataset_name(dataset), data_path)
    return [str(f) for f in files] + ([str(ds_yaml)] if ds_yaml else [])


def implied_options(model: str, dataset: str, merged: dict[str, Any]) -> dict[str, tuple[Any, str]]:
    """RecBole defaults a sequential model needs changed, where no file and no user set the key:
    key -> (value, why). Our RL models draw their own negatives; a RecBole sequential model whose
    loss_type is CE cannot train with RecBole's negative sampling (RecBole 1.2.1 refuses the pair:
    recbole/config/configurator.py, ``_set_default_parameters``); a model with a pairwise loss keeps it."""
    if "train_neg_sample_args" in merged:
        return {}
    if registry.is_plugin_model(model):
        return {"train_neg_sample_args": (None, "recbole_lea: our RL models draw their own negatives")}
    loss = merged.get("loss_type", recbole_defaults(model, dataset).get("loss_type", (None, ""))[0])
    if registry.is_sequential(model) and str(loss).upper() == "CE":
        return {"train_neg_sample_args": (None, "recbole_lea: a CE loss trains over all items, without sampling")}
    return {}


def _file_label(path: str) -> str:
    """A shipped default file as ``properties/...`` (from a checkout and from a wheel alike), any
    other file by its path."""
    p = Path(path)
    try:
        return str(p.relative_to(PROPERTIES.parent))
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
    registry.check_model(model)  # raises with the closest names
    registry.check_dependencies(model)
    dataset = base_dataset_name(check_dataset_name(dataset))
    config_dict = dict(config_dict or {})
    user_files = [str(f) for f in (config_file_list or [])]
    user_layers = [(f"config file {f}", read_yaml(Path(f), "config file (--config_files)")) for f in user_files]
    user_layers.append(("the command line / config_dict", config_dict))
    data_path = _pick_data_path(user_layers)
    files = default_config_files(model, dataset, data_path)
    layers = [(_file_label(f), read_yaml(Path(f))) for f in files] + user_layers
    merged, sources = _merge(model, dataset, layers, {source for source, _values in user_layers})
    for key in PICKLE_OPTIONS:
        if merged.get(key):
            raise ConfigError(
                f"Option `{key}` (from {sources[key]}) is refused: recbole_lea never unpickles RecBole datasets or "
                "dataloaders (a pickle runs code when loaded, and a saved one goes stale when the data change); "
                "remove the option, the data load from the atomic files every run."
            )
    for key, (value, why) in implied_options(model, dataset, merged).items():
        merged[key], sources[key] = value, why
        config_dict.setdefault(key, value)
    _check_metrics(merged, sources)
    run = build(RunOptions, {k: merged[k] for k in RUN_SPECS if k in merged}, "the run options")
    _check_split(run, sources)
    resolved = ResolvedRun(model, dataset, data_path, files + user_files, merged, sources, run, None, config_dict)
    if resolved.lea:
        resolved.le = _resolve_le(resolved)
    return resolved


def _merge(
    model: str, dataset: str, layers: list[tuple[str, dict[str, Any]]], user_sources: set[str]
) -> tuple[dict[str, Any], dict[str, str]]:
    """Every layer's keys checked and merged, later layers winning: (values, where each came from).
    A key nobody declares is an error; a key another model reads is ignored with a warning (so one
    comparison command can carry every model's options)."""
    from recbole_lea.le.config import DATASET_KEYS as LE_DATASET_KEYS
    from recbole_lea.le.config import LE_RENAMED
    from recbole_lea.le.config import SPECS as LE_SPECS

    reads: dict[str, OptionSpec] = {**RUN_SPECS, **model_specs(model)}
    if is_lea_model(model) and registry.is_plugin_model(model):
        reads.update(LE_SPECS)
    declared = {**all_declared_specs(), **reads}
    rb, rb_other = recbole_defaults(model, dataset), recbole_model_keys()
    hints = {old: f"was renamed `{new}`." for old, new in LE_RENAMED.items() if old not in rb}
    merged: dict[str, Any] = {}
    sources: dict[str, str] = {}
    ignored: dict[str, str] = {}
    for source, values in layers:
        for key, value in values.items():
            if key in declared:
                value = check_value(declared[key], value, source)
                if key not in reads and key not in LE_DATASET_KEYS and source in user_sources:
                    ignored[key] = source
            elif key in rb:
                _check_recbole_key(key, value, rb[key], source)
            elif key in rb_other:
                if source in user_sources:
                    ignored[key] = source
            else:
                raise unknown_key_error(key, set(declared) | set(rb) | set(rb_other), source, hints)
            merged[key], sources[key] = value, source
    for key, source in ignored.items():
        owner = declared[key].owner if key in declared else "other RecBole models"
        logging.getLogger(__name__).warning(
            "option `%s` (from %s) is read by %s, not by a %s run: ignored", key, source, owner, model
        )
    return merged, sources


def _check_recbole_key(key: str, value: Any, declared: tuple[Any, str], source: str) -> None:
    """A RecBole key's value has the kind of its default (where RecBole declares one) and its range."""
    default, where = declared
    if not _same_kind(default, value, key):
        raise ConfigError(
            f"Option `{key}` expects {_type_name(default)} (default {default!r} in {where}), got "
            f"{value!r} from {source}: fix that value."
        )
    check_recbole_value(key, value, source)


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

    def row(key: str, value: Any, help_text: str) -> str:
        source = resolved.sources.get(key, "default")
        return f"  {key} = {value!r}    [{source}]\n      {help_text}"

    parts = [f"Options of a {resolved.model} run on {resolved.dataset} (value in force, [where it was set], help)"]
    groups: list[tuple[str, dict[str, OptionSpec], Any]] = [("the run (RunOptions, run.yaml)", RUN_SPECS, None)]
    if registry.is_plugin_model(resolved.model):
        for stem, options, _overrides in option_layers(resolved.model):
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
    root = recbole_root() / "properties"
    helps = {**_yaml_comments(root / "dataset" / "sample.yaml"), **_yaml_comments(root / "overall.yaml")}
    helps.update(_yaml_comments(root / "model" / f"{resolved.model}.yaml"))
    for f in resolved.files:
        helps.update({k: v for k, v in _yaml_comments(Path(f)).items() if k not in all_declared_specs()})
    parts.append("\nRecBole (its own options; help from its yaml files or ours):")
    rb = recbole_defaults(resolved.model, resolved.dataset)
    for key in sorted(rb, key=str.lower):
        if key in all_declared_specs() or key in RECBOLE_EXTRA_KEYS:
            continue
        value = resolved.options.get(key, rb[key][0])
        parts.append(row(key, value, helps.get(key, "(RecBole)")))
    return "\n".join(parts) + "\n"
