"""Stage 4 of the pipeline: run any model (ours or RecBole's) on an atomic dataset with one config,
and reload it.

The options are resolved and checked by :mod:`recbole_lea.run_config` before anything heavy is
imported; this module builds or locates the LE of a ``*_LEA`` run (:func:`ensure_le`, verified),
makes RecBole's ``Config`` and runs RecBole's trainer and evaluator.
:func:`run_recbole_lea` mirrors ``recbole.quick_start.run_recbole`` with plugin-first lookups and
a plain-dict result.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from logging import getLogger
from pathlib import Path
from typing import Any

import torch

from recbole_lea import LOG_DATEFMT, LOG_FORMAT, compat, registry
from recbole_lea.checkpoint import torch_load
from recbole_lea.errors import ConfigError
from recbole_lea.run_config import (  # noqa: F401 -- re-exported: the public API of a run
    EVAL_PROTOCOLS,
    LEA_SUFFIX,
    PICKLE_OPTIONS,
    ResolvedRun,
    RunOptions,
    all_declared_specs,
    base_dataset_name,
    default_config_files,
    describe_options,
    is_lea_model,
    option_layers,
    resolve_run,
    split_of,
)
from recbole_lea.trainer import get_trainer

compat.apply()

from recbole.config import Config  # noqa: E402
from recbole.data import data_preparation  # noqa: E402
from recbole.utils import init_logger, init_seed  # noqa: E402


def check_dataset_files(dataset: str, data_path: str, options: dict[str, Any] | None = None) -> Path:
    """Path of ``<data_path>/<dataset>/<dataset>.inter`` after checking every line of the fields a
    run loads (:func:`recbole_lea.datasets.validate.check_run_inter`; converts ml-100k on first use)
    and the field sizes of its ``.item`` (RecBole's reader stops at 131072 characters)."""
    from recbole_lea.datasets.validate import check_field_sizes, check_run_inter

    inter = check_run_inter(dataset, data_path, options)
    item = inter.with_suffix(".item")
    if item.is_file():
        check_field_sizes(item)
    return inter


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
    handler.setFormatter(logging.Formatter(LOG_FORMAT, LOG_DATEFMT))
    level = lea_logger.level
    lea_logger.addHandler(handler)
    lea_logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        lea_logger.removeHandler(handler)
        lea_logger.setLevel(level)


def le_dir_of(resolved: ResolvedRun) -> Path:
    """The LE folder a ``*_LEA`` run reads, verified; it must exist (see :func:`ensure_le`)."""
    from recbole_lea.le.files import LEDatasetMismatch, verify_le_dir
    from recbole_lea.le.plan import plan_le

    if resolved.run.le_dir:
        folder = Path(resolved.run.le_dir).expanduser()
        expected = f"{resolved.dataset}{LEA_SUFFIX}"
        if folder.name != expected:
            raise ConfigError(
                f"Option `le_dir` must name a folder called {expected}/ (the LE of {resolved.dataset}), got {folder}."
            )
        manifest = verify_le_dir(folder, f"rebuild it, or fix `le_dir` ({folder})")
        built, asked = manifest.get("split"), split_of(resolved.run)
        if built is not None and built != asked:
            raise ConfigError(
                f"The LE in `le_dir` {folder} was built for the split {built}, but this run uses {asked}: the LE may "
                "have trained on sequences this run holds out. Run with the split it was built for "
                "(eval_protocol, sequence_split_ratios, split_seed), or build the LE of this split."
            )
        return folder
    from recbole_lea.le.build import verified_le_dir

    check_dataset_files(resolved.dataset, resolved.data_path, resolved.options)
    plan = plan_le(resolved.dataset, resolved.data_path, resolved.le, split_of(resolved.run))
    try:
        return verified_le_dir(plan)
    except LEDatasetMismatch as err:
        raise LEDatasetMismatch(f"{err} (or leave `le_auto_build` on).") from None


def ensure_le(resolved: ResolvedRun) -> Path:
    """Build (or reuse, when every stage's fingerprint matches and verifies) the LE folder of a
    resolved ``*_LEA`` run; with ``le_dir`` or ``le_auto_build: False`` only locate and verify it."""
    if resolved.run.le_dir or not resolved.run.le_auto_build:
        return le_dir_of(resolved)
    from recbole_lea.le.build import build_le

    check_dataset_files(resolved.dataset, resolved.data_path, resolved.options)
    with le_build_logging():
        return Path(build_le(resolved.dataset, resolved.data_path, cfg=resolved.le, split=split_of(resolved.run)))


# ---------------------------------------------------------------------------- RecBole config
def recbole_config(resolved: ResolvedRun, le_dir: Path | None = None) -> Config:
    """The RecBole ``Config`` of a resolved run (LEA runs read the LE folder ``le_dir``)."""
    config_dict = dict(resolved.config_dict)
    run_dataset = resolved.dataset
    if resolved.lea:
        assert le_dir is not None
        run_dataset = le_dir.name
        with open(le_dir / f"{le_dir.name}.inter", encoding="utf-8") as f:
            header = [c.split(":")[0] for c in f.readline().rstrip("\n").split("\t")]
        from recbole_lea.data.le_fields import LE_ITEM_FIELDS

        load_col = dict(resolved.options.get("load_col") or {})
        load_col["inter"] = header  # the LE file's columns; other files as for the base dataset
        config_dict["load_col"] = load_col
        config_dict["alias_of_item_id"] = [c for c in LE_ITEM_FIELDS if c in header]
        config_dict["data_path"] = str(le_dir.parent)
        from recbole_lea.le.files import read_manifest

        built = read_manifest(le_dir).get("config") or {}
        for key in ("le_state_dim",):  # LE options the model reads: the values the LE was built with
            config_dict[key] = built.get(key, getattr(resolved.le, key))
    else:
        check_dataset_files(resolved.dataset, resolved.data_path, resolved.options)
        config_dict["data_path"] = resolved.data_path
    config = Config(  # reads no sys.argv (compat._no_command_line_options)
        model=registry.get_model(resolved.model),
        dataset=run_dataset,
        config_file_list=resolved.files,
        config_dict=config_dict,
    )
    config["use_gpu"] = config["device"].type == "cuda"  # the printed config shows the device used
    return config


def build_config(
    model: str,
    dataset: str,
    config_file_list: list[str] | None = None,
    config_dict: dict[str, Any] | None = None,
) -> Config:
    """Resolved RecBole ``Config`` for ``model`` on ``dataset`` (LEA models read their LE folder,
    which must exist)."""
    resolved = resolve_run(model, dataset, config_file_list, config_dict)
    return recbole_config(resolved, le_dir_of(resolved) if resolved.lea else None)


# ---------------------------------------------------------------------------- run
def _check_topk(config: Config, n_items: int) -> None:
    topk = config["topk"]
    ks = topk if isinstance(topk, list) else [topk]
    if max(ks) > n_items:
        raise ConfigError(
            f"Option `topk` {topk} asks for more items than dataset '{config['dataset']}' has ({n_items}): "
            f"use cut-offs of at most {n_items}."
        )


def _check_feature_files(config: Config) -> None:
    """The additional feature files a model reads (RecBole's KSR and GRU4RecKG read pretrained entity
    embeddings, ``<dataset>.ent``) exist: one message before loading, not RecBole's traceback."""
    for suffix in config["additional_feat_suffix"] or []:
        path = Path(config["data_path"]) / f"{config['dataset']}.{suffix}"
        if not path.is_file():
            raise ConfigError(
                f"Model {config['model']} reads the additional feature file {path} (`additional_feat_suffix: "
                f"{suffix}`), which dataset '{config['dataset']}' does not have: add it (RecBole's KSR and "
                "GRU4RecKG read pretrained entity embeddings, .ent), or choose another model."
            )


def _check_queries(config: Config, valid_data: Any, test_data: Any) -> None:
    """Stop before training when the split leaves no validation or no test query."""
    for part, data in (("validation", valid_data), ("test", test_data)):
        if data is not None and len(data._dataset) == 0:
            raise ConfigError(
                f"The split of dataset '{config['dataset']}' leaves no {part} query: every user has too few "
                "interactions (leave-one-out needs 3 or more per user for one validation and one test query). "
                "Keep longer sequences (the converters' --min-inter, RecBole's user_inter_num_interval), or use "
                "--eval_protocol=sequence, which holds out whole users."
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
    return run_resolved(resolve_run(model, dataset, config_file_list, config_dict), saved, callback_fn)


def run_resolved(
    resolved: ResolvedRun, saved: bool = True, callback_fn: Callable[[int, float, dict], None] | None = None
) -> dict[str, Any]:
    """Run what :func:`resolve_run` resolved: build or locate the LE, load the data, train,
    evaluate; returns a plain dict (docs/architecture.md, "Runs")."""
    t_start = time.perf_counter()
    times: dict[str, float] = {}
    le_dir, le_built = None, False
    with le_build_logging():  # RecBole's logger is set up only after these steps
        if resolved.lea:
            from recbole_lea.le.cache import StageCache

            computed_before = len(StageCache.computed_log)
            le_dir = ensure_le(resolved)
            le_built = len(StageCache.computed_log) > computed_before
            times["le"] = time.perf_counter() - t_start
        config = recbole_config(resolved, le_dir)
    if config["torch_threads"]:
        torch.set_num_threads(int(config["torch_threads"]))
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    getLogger().info(config)
    t0 = time.perf_counter()
    _check_feature_files(config)
    dataset_obj = registry.create_dataset(config)
    getLogger().info(dataset_obj)
    _check_topk(config, dataset_obj.item_num - 1)
    train_data, valid_data, test_data = data_preparation(config, dataset_obj)
    _check_queries(config, valid_data, test_data)
    times["data"] = time.perf_counter() - t0
    result = _train_and_test(config, dataset_obj, (train_data, valid_data, test_data), saved, callback_fn, times)
    times["total"] = time.perf_counter() - t_start
    result.update(model=resolved.model, dataset=resolved.dataset, le_dir=str(le_dir) if le_dir else None)
    result.update(le_built=le_built, log_file=_log_file())
    return result


def _train_and_test(
    config: Config,
    dataset_obj: Any,
    data: tuple[Any, Any, Any],
    saved: bool,
    callback_fn: Callable[[int, float, dict], None] | None,
    times: dict[str, float],
) -> dict[str, Any]:
    """Build the model and its trainer, train, test; the run's result, less what the caller adds."""
    train_data, valid_data, test_data = data
    logger = getLogger()
    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    model_obj = registry.get_model(config["model"])(config, train_data._dataset).to(config["device"])
    logger.info(model_obj)
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model_obj)
    trainer.data_record = data_record(config, dataset_obj)
    cb = None
    if callback_fn is not None:

        def cb(epoch_idx: int, valid_score: float) -> None:
            callback_fn(epoch_idx, valid_score, dict(trainer.valid_history[-1]))

    start = time.perf_counter()
    best_valid_score, best_valid_result = trainer.fit(
        train_data, valid_data, saved=saved, show_progress=config["show_progress"], callback_fn=cb
    )
    times["train"] = time.perf_counter() - start
    t0 = time.perf_counter()
    test_result = trainer.evaluate(test_data, load_best_model=saved, show_progress=config["show_progress"])
    times["test"] = time.perf_counter() - t0
    logger.info(f"best valid : {best_valid_result}")
    logger.info(f"test result: {test_result}")
    result = {
        "best_valid_score": float(best_valid_score),
        "valid_score_bigger": bool(config["valid_metric_bigger"]),
        "best_valid_result": {k: float(v) for k, v in (best_valid_result or {}).items()},
        "test_result": {k: float(v) for k, v in (test_result or {}).items()},
        "model_file": trainer.saved_model_file if saved else None,
        "config": {k: v for k, v in config.final_config_dict.items() if _is_plain_value(v)},
        "epoch_times": list(trainer.epoch_times),
        "train_losses": list(trainer.loss_history),
        "valid_history": list(trainer.valid_history),
        "wall_time": times["train"] + times["test"],
        "n_queries": {"valid": len(valid_data._dataset), "test": len(test_data._dataset)},
        "times_s": times,
    }
    result.update(getattr(trainer, "run_notes", {}))
    return result


def data_record(config: Config, dataset: Any) -> dict[str, Any]:
    """What a checkpoint keeps of its training data: the token -> id maps and the .inter's sha256."""
    from recbole_lea.data.dataset import token_maps
    from recbole_lea.files import sha256_file

    folder = Path(config["data_path"])
    inter = folder / f"{config['dataset']}.inter"
    record = {"token_maps": token_maps(dataset), "inter_sha256": sha256_file(inter) if inter.is_file() else None}
    if str(config["dataset"]).endswith(LEA_SUFFIX):  # served on the base dataset: its digest, from the LE manifest
        from recbole_lea.le.files import read_manifest

        record["base_inter_sha256"] = ((read_manifest(folder).get("files") or {}).get("inter") or {}).get("sha256")
    return record


def _log_file() -> str | None:
    """The log file RecBole's ``init_logger`` opened for this run."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            return str(Path(handler.baseFilename))
    return None


def _is_plain_value(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool | list | dict | tuple)


# ---------------------------------------------------------------------------- reload
def load_data_and_model(model_file: str, config_dict: dict[str, Any] | None = None, trust_pickle: bool = False):  # type: ignore[no-untyped-def]
    """Reload a checkpoint written by a run: ``(config, model, dataset, train, valid, test)``.

    The checkpoint loads with ``torch.load(weights_only=True)`` (see
    :func:`recbole_lea.checkpoint.torch_load`); ``config_dict`` overrides saved options (e.g.
    ``data_path`` on another machine). The data are read through the token -> id maps the model
    was trained with (rows in another order give the same ids; a user or item it never saw is an
    error), its stored options are checked as a run checks them, and nothing is written (no log
    file, no pickled dataset). ``trust_pickle``: load a checkpoint of an older version that pickled
    RecBole's Config (only for files you wrote)."""
    from recbole_lea.data.dataset import TOKEN_MAPS

    checkpoint = torch_load(model_file, map_location="cpu", trust_pickle=trust_pickle)
    config = checkpoint["config"]
    for key, value in (config_dict or {}).items():
        config[key] = value
    _check_loaded_options(config, model_file)
    record = checkpoint.get("data") or {}
    init_seed(config["seed"], config["reproducibility"])
    config[TOKEN_MAPS] = record.get("token_maps")
    try:
        dataset = registry.create_dataset(config)
    finally:
        config.final_config_dict.pop(TOKEN_MAPS, None)
    _note_other_data(config, record, model_file)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    init_seed(config["seed"], config["reproducibility"])
    model = registry.get_model(config["model"])(config, train_data._dataset).to(config["device"])
    model.load_state_dict(checkpoint["state_dict"])
    model.load_other_parameter(checkpoint.get("other_parameter"))
    model.eval()
    return config, model, dataset, train_data, valid_data, test_data


def _check_loaded_options(config: Config, model_file: str) -> None:
    """The options stored in a checkpoint, checked as a run's: its model and dataset names, every
    declared option's type and range, RecBole's ranges, and no option that saves pickles."""
    from recbole_lea.options import check_dataset_name, check_recbole_value, check_value

    source = f"checkpoint {model_file}"
    registry.check_model(str(config["model"]))
    check_dataset_name(str(config["dataset"]), source)
    declared = all_declared_specs()
    for key, value in config.final_config_dict.items():
        if key in PICKLE_OPTIONS and value:
            raise ConfigError(
                f"{source} sets `{key}`: reloading never writes or reads pickled datasets or dataloaders; "
                "it was not written by recbole_lea, or was edited."
            )
        if key in declared and _is_plain_value(value):
            check_value(declared[key], value, source)
        elif _is_plain_value(value):
            check_recbole_value(key, value, source)


def _note_other_data(config: Config, record: dict[str, Any], model_file: str) -> None:
    """A warning when the data read now are not the rows the model was trained on."""
    from recbole_lea.files import sha256_file

    inter = Path(config["data_path"]) / f"{config['dataset']}.inter"
    trained = record.get("base_inter_sha256" if config["le_serving"] else "inter_sha256")
    if not record:
        getLogger(__name__).warning(
            "%s stores no token maps (written by an older recbole_lea): ids follow the order of the rows of %s, "
            "as in training only if the file is the same",
            model_file,
            inter,
        )
    elif trained and inter.is_file() and sha256_file(inter) != trained:
        getLogger(__name__).warning(
            "%s differs from the data %s was trained on: its users and items keep their trained ids",
            inter,
            model_file,
        )


def load_for_serving(model_file: str, data_path: str | None = None, trust_pickle: bool = False):  # type: ignore[no-untyped-def]
    """Reload a trained model on its BASE dataset, without any LE file or LE package.

    Ranking uses only the backbone and the supervised head, so a ``*_LEA`` checkpoint ranks the
    base dataset's users exactly as it ranked the LE dataset's (same rows, same item ids).
    ``data_path``: the folder holding ``<base dataset>/`` (default: the run's).
    Returns ``(config, model, dataset, train, valid, test)`` like :func:`load_data_and_model`.
    """
    checkpoint = torch_load(model_file, map_location="cpu", trust_pickle=trust_pickle)
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
