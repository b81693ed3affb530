"""One training run in its own folder: the piece shared by sweeps and comparison tables.

Every run gets its own ``checkpoint_dir`` (so two runs started in the same second never write the
same ``<model>-<time>.pth``), collects validation results per epoch through ``callback_fn``,
records epoch times and named training losses, and draws its learning curves next to its results.
Shared caches (the converted dataset, the LE) are prepared by the DRIVER, once, under a file lock,
before any run starts.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import os
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from recbole_lea.datasets.ml100k import ensure_bundled
from recbole_lea.files import atomic_write_text, sha256_file

RunFn = Callable[..., dict[str, Any]]
ValidCallback = Callable[[int, float, dict[str, Any]], None]

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DATA_PATH = "atomic_datasets"
LOCK_TIMEOUT_S = 6 * 3600


def resolve_run_fn() -> RunFn:
    """The run function every experiment uses: :func:`recbole_lea.quick_start.run_recbole_lea`."""
    from recbole_lea.quick_start import run_recbole_lea

    return run_recbole_lea


# ---------------------------------------------------------------------------------------------
# paths, hashing, JSON


def to_jsonable(value: Any) -> Any:
    """Plain JSON types: dict/list recursion, numpy/torch scalars to numbers, the rest to str."""
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if hasattr(value, "item") and callable(value.item):
        try:
            return to_jsonable(value.item())
        except (ValueError, RuntimeError):
            pass
    return str(value)


def write_json_atomic(path: str | Path, payload: Any) -> None:
    """Write JSON to a temporary file in the same folder and rename it into place."""
    atomic_write_text(path, json.dumps(to_jsonable(payload), indent=2, sort_keys=True))


def record_digest(record: Mapping[str, Any]) -> str:
    """The sha256 a stored record carries of its own content (all but ``sha256`` and ``cached``):
    a record whose content no longer matches it was modified and is not trusted."""
    body = {k: v for k, v in record.items() if k not in ("sha256", "cached")}
    return hashlib.sha256(json.dumps(to_jsonable(body), sort_keys=True).encode()).hexdigest()


PACKAGE_ROOT = Path(__file__).resolve().parents[1]

#: the modules of the package that CANNOT change a run's numbers, with why; every other
#: ``recbole_lea/**/*.py`` enters the run key (:func:`run_code_files`), so new code is keyed by
#: default. A test keeps every name here an existing module, none imported by a run.
NOT_RUN_CODE: dict[str, str] = {
    "__main__.py": "`python -m recbole_lea`: calls cli.py",
    "cli.py": "the command line of one run: its options reach the run (and its key) as options",
    "defaults.py": "renders the shipped yaml files, whose CONTENTS enter the key",
    "datasets/__main__.py": "the converters' command line",
    "datasets/cli.py": "the converters' command line; the converted files enter the key by sha256",
    "datasets/stats.py": "dataset statistics (Table 1): a report, read by no run",
    "experiments/cli.py": "command lines of the sweeps and tables",
    "experiments/compare.py": "drives runs and renders tables; a run's options enter its key as options",
    "experiments/parallel.py": "schedules comparison runs on Ray; a run's options enter its key as options",
    "experiments/params.py": "reads params files; a trial's values reach it as options",
    "experiments/plots.py": "draws pictures after a run",
    "experiments/ray_runtime.py": "starts and stops Ray for sweeps and comparisons",
    "experiments/stats.py": "the paired t-test of tables and figures, computed after the runs",
    "experiments/tune.py": "drives Ray Tune trials; a trial's values reach it as options",
    "experiments/tuning.py": "drives the tuning before a comparison; the chosen values reach a run as options",
    "le/__main__.py": "the LE build's command line",
    "le/testing.py": "test fixtures",
}


def run_code_files(root: Path | None = None) -> list[Path]:
    """Every module of the package (``root``, default the installed one) but :data:`NOT_RUN_CODE`:
    the code a run imports, directly or through the LE build, that can change its numbers."""
    root = root or PACKAGE_ROOT
    return sorted(p for p in root.rglob("*.py") if p.relative_to(root).as_posix() not in NOT_RUN_CODE)


def source_digest(root: Path | None = None) -> str:
    """Digest of the code that decides a run's numbers (:func:`run_code_files`), keyed by path
    relative to the package: the syntax trees without comments, docstrings or log lines, so such
    edits keep cached results; the shipped option files enter run keys through their contents."""
    root = root or PACKAGE_ROOT
    h = hashlib.sha256()
    for f in run_code_files(root):
        stat = f.stat()
        h.update(f.relative_to(root).as_posix().encode())
        h.update(_module_fingerprint(str(f), stat.st_mtime_ns, stat.st_size).encode())
    return h.hexdigest()[:16]


@functools.lru_cache(maxsize=1024)
def _module_fingerprint(path: str, mtime_ns: int, size: int) -> str:
    """:func:`~recbole_lea.le.cache.source_fingerprint` of a file, computed again when it changes
    (a comparison asks for it once per model x seed)."""
    from recbole_lea.le.cache import source_fingerprint

    return source_fingerprint(Path(path).read_text(encoding="utf-8"))


def stack_versions() -> dict[str, str]:
    """Versions of the libraries under a run (a new torch or RecBole can change its numbers)."""
    import numpy
    import recbole
    import torch

    return {"recbole": recbole.__version__, "torch": torch.__version__, "numpy": numpy.__version__}


def config_hash(payload: Mapping[str, Any], config_file_list: Sequence[str] | None) -> str:
    """Hash of a run's options: the dict plus the CONTENTS of every config file, in order."""
    files = [sha256_file(Path(f)) for f in (config_file_list or [])]
    blob = json.dumps({"dict": to_jsonable(payload), "files": files}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:10]


def absolute_files(files: Sequence[str] | None) -> list[str]:
    out = []
    for f in files or []:
        path = Path(f).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"config file not found: {f}")
        out.append(str(path.resolve()))
    return out


def resolve_data_path(
    config_file_list: Sequence[str] | None,
    config_dict: Mapping[str, Any] | None,
    cli_value: str | None = None,
) -> str:
    """Absolute ``data_path`` with RecBole's precedence (dict > later files > earlier files).

    Relative paths are taken from the current directory, as RecBole does. Ray trials and other
    processes then see the same folder whatever their working directory is.
    """
    value: str | None = cli_value
    if value is None and config_dict and config_dict.get("data_path"):
        value = str(config_dict["data_path"])
    if value is None:
        for f in reversed(list(config_file_list or [])):
            loaded = yaml.safe_load(Path(f).read_text()) or {}
            if isinstance(loaded, dict) and loaded.get("data_path"):
                value = str(loaded["data_path"])
                break
    if value is None:
        value = DEFAULT_DATA_PATH
    return str(Path(value).expanduser().resolve())


def read_option(
    key: str,
    config_file_list: Sequence[str] | None,
    config_dict: Mapping[str, Any] | None,
    default: Any = None,
) -> Any:
    """Value of ``key`` as RecBole would resolve it from the files and dict (not the defaults)."""
    if config_dict and key in config_dict:
        return config_dict[key]
    for f in reversed(list(config_file_list or [])):
        loaded = yaml.safe_load(Path(f).read_text()) or {}
        if isinstance(loaded, dict) and key in loaded:
            return loaded[key]
    return default


# ---------------------------------------------------------------------------------------------
# shared caches, prepared by the driver


def inputs_digest(
    model: str, dataset: str, config_file_list: Sequence[str] | None, config_dict: Mapping[str, Any]
) -> tuple[dict[str, Any], Any]:
    """What a run reads besides its options, as digests: the atomic files' sha256 (base dataset),
    or the fingerprint of the LE it reads (``*_LEA``: data, LLM weights, LE options, split and
    LE code), plus our code and the library versions. Also returns the resolved run (its options
    checked: bad input fails here, before any run)."""
    from recbole_lea import quick_start
    from recbole_lea.le.llm import file_sha256

    base = quick_start.base_dataset_name(dataset)
    data_path = str(config_dict.get("data_path") or DEFAULT_DATA_PATH)
    ensure_bundled(data_path, base)
    resolved = quick_start.resolve_run(model, dataset, list(config_file_list or []), dict(config_dict))
    digest: dict[str, Any] = {"code": source_digest(), "versions": stack_versions()}
    if resolved.lea and resolved.run.le_dir:
        from recbole_lea.le.files import read_manifest

        digest["le"] = read_manifest(Path(resolved.run.le_dir)).get("checksums")
    elif resolved.lea:
        from recbole_lea.le.plan import plan_le

        digest["le"] = plan_le(
            resolved.dataset, resolved.data_path, resolved.le, quick_start.split_of(resolved.run)
        ).fingerprint
    else:
        quick_start.check_dataset_files(base, data_path, resolved.options)
        folder = Path(data_path) / base
        digest["data"] = {
            p.name: file_sha256(p) for p in sorted(folder.glob(f"{base}.*")) if p.suffix not in (".yaml", ".json")
        }
    return digest, resolved


def prepare_le(resolved: Any) -> dict[str, Any]:
    """Build (or reuse) the LE of a resolved ``*_LEA`` run once, before its runs; returns the
    options that make every run read exactly that LE folder (``le_dir``) without rebuilding."""
    from recbole_lea import quick_start

    if not resolved.lea or resolved.run.le_dir:
        return {}
    return {"le_dir": str(quick_start.ensure_le(resolved))}


def prepare_shared(
    model: str,
    dataset: str,
    data_path: str,
    config_file_list: Sequence[str] | None,
    config_dict: Mapping[str, Any] | None,
    swept: Sequence[str] = (),
) -> dict[str, Any]:
    """Before a sweep: convert the dataset and build the LE of the base config once.

    When the sweep varies an option of the LE build (``swept``), each trial has its own LE: the
    trials build or reuse it themselves (the LE build's file locks make each distinct LE be built
    once), so nothing is prepared here. Returns options every trial adds to its config."""
    from recbole_lea.le.config import NEUTRAL, SPECS

    options = {"data_path": data_path, **dict(config_dict or {})}
    _digest, resolved = inputs_digest(model, dataset, config_file_list, options)
    if any(key in SPECS and key not in NEUTRAL for key in swept):
        return {}
    return prepare_le(resolved)


# ---------------------------------------------------------------------------------------------
# one run


def run_one(
    model: str,
    dataset: str,
    config_file_list: Sequence[str] | None,
    config_dict: Mapping[str, Any] | None,
    run_dir: str | Path,
    run_fn: RunFn | None = None,
    on_valid: ValidCallback | None = None,
    torch_threads: int | None = 1,
    plot: bool = True,
    catch: bool = True,
) -> dict[str, Any]:
    """Train and evaluate one configuration inside ``run_dir``.

    Returns a JSON-safe record: ``status`` (``ok`` / ``failed``), ``error`` (last traceback line)
    and ``traceback``, the run result's keys, ``valid_curve`` (one entry per validation),
    ``wall_time_s``, ``curves_png`` and ``tensorboard_dir``. With ``catch=False`` the failure
    record is written to ``run_dir/error.json`` and the exception is raised again (Ray trials:
    Ray then marks the trial as errored).
    """
    import torch

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if torch_threads:
        torch.set_num_threads(int(torch_threads))
    options = _run_options(config_dict, run_dir)
    valid_curve: list[dict[str, Any]] = []
    callback = _valid_callback(valid_curve, on_valid)
    _reset_root_logger()
    fn = run_fn or resolve_run_fn()
    record: dict[str, Any] = {
        "model": model,
        "dataset": dataset,
        "config_file_list": list(config_file_list or []),
        "config_dict": dict(options),
        "run_dir": str(run_dir),
    }
    start = time.perf_counter()
    try:
        result = fn(
            model,
            dataset,
            config_file_list=list(config_file_list or []) or None,
            config_dict=options,
            saved=True,
            callback_fn=callback,
        )
    except Exception as err:  # a crashing run is recorded, not fatal
        record.update(_failure_fields(err, valid_curve, start))
        if not catch:
            write_json_atomic(run_dir / "error.json", record)
            raise
        return to_jsonable(record)
    record.update(_result_fields(result, valid_curve, start))
    if plot:
        record["curves_png"] = _curves_png(record, valid_curve, run_dir, model, dataset)
    return to_jsonable(record)


def _run_options(config_dict: Mapping[str, Any] | None, run_dir: Path) -> dict[str, Any]:
    """The run's config dict: its own ``checkpoint_dir`` and, unless set, no progress bars."""
    options = dict(config_dict or {})
    # always per run: two runs started in the same second would otherwise share
    # <checkpoint_dir>/<model>-<time>.pth
    options["checkpoint_dir"] = str(run_dir / "saved")
    options.setdefault("show_progress", False)
    return options


def _valid_callback(valid_curve: list[dict[str, Any]], on_valid: ValidCallback | None) -> Callable[..., None]:
    """The trainer's ``callback_fn``: appends each validation to ``valid_curve`` and passes it to ``on_valid``."""

    def callback(epoch_idx: int, valid_score: float, valid_result: Any = None) -> None:
        result = {str(k): float(v) for k, v in dict(valid_result or {}).items()}
        valid_curve.append({"epoch": int(epoch_idx), "valid_score": float(valid_score), "valid_result": result})
        if on_valid is not None:
            on_valid(int(epoch_idx), float(valid_score), result)

    return callback


def _failure_fields(err: BaseException, valid_curve: list[dict[str, Any]], start: float) -> dict[str, Any]:
    """The record's fields for a run that raised ``err`` (call it while handling ``err``)."""
    return {
        "status": "failed",
        "error": f"{type(err).__name__}: {err}".strip().splitlines()[0][:500],
        "traceback": traceback.format_exc(),
        "valid_curve": valid_curve,
        "wall_time_s": time.perf_counter() - start,
    }


def _result_fields(result: Mapping[str, Any], valid_curve: list[dict[str, Any]], start: float) -> dict[str, Any]:
    """The record's fields for a run that returned ``result``."""
    return {
        "status": "ok",
        "error": "",
        "wall_time_s": time.perf_counter() - start,
        "best_valid_score": result.get("best_valid_score"),
        "valid_score_bigger": result.get("valid_score_bigger", True),
        "best_valid_result": dict(result.get("best_valid_result") or {}),
        "test_result": dict(result.get("test_result") or {}),
        "model_file": result.get("model_file"),
        "config": _config_summary(result.get("config") or {}),
        "epoch_times": [float(t) for t in result.get("epoch_times") or []],
        "train_losses": [_loss_entry(e) for e in result.get("train_losses") or []],
        "valid_curve": valid_curve,
        "tensorboard_dir": _tensorboard_dir(),
        "n_queries": result.get("n_queries"),
        "le_dir": result.get("le_dir"),
    }


def _curves_png(
    record: Mapping[str, Any], valid_curve: list[dict[str, Any]], run_dir: Path, model: str, dataset: str
) -> str:
    """Draw the run's learning curves to ``run_dir/curves.png``; returns its path, or
    ``failed: <error>`` (a picture never fails a run)."""
    try:
        from recbole_lea.experiments.plots import plot_learning_curves

        return str(
            plot_learning_curves(
                record["train_losses"],
                valid_curve,
                run_dir / "curves.png",
                title=f"{model} on {dataset} (seed {record['config'].get('seed')})",
            )
        )
    except Exception as err:  # a picture never fails a run
        return f"failed: {err}"


def _config_summary(config: Mapping[str, Any]) -> dict[str, Any]:
    return to_jsonable(dict(config))


def _loss_entry(entry: Any) -> dict[str, float]:
    if isinstance(entry, Mapping):
        return {str(k): float(v) for k, v in entry.items()}
    if isinstance(entry, (list, tuple)):
        return {f"loss_{i}": float(v) for i, v in enumerate(entry)}
    return {"loss": float(entry)}


def _reset_root_logger() -> None:
    """RecBole's ``init_logger`` uses ``logging.basicConfig``, a no-op once the root logger has
    handlers: drop the previous run's handlers so each run gets its own log file."""
    root = logging.getLogger()
    for handler in root.handlers[:]:
        root.removeHandler(handler)
        try:
            handler.close()
        except Exception:
            pass


def _tensorboard_dir() -> str | None:
    """The ``log_tensorboard/<log name>`` folder RecBole's trainer wrote (named after the log)."""
    for handler in logging.getLogger().handlers:
        base = getattr(handler, "baseFilename", None)
        if base:
            name = os.path.basename(base).split(".")[0]
            path = Path("log_tensorboard") / name
            return str(path.resolve())
    return None
