"""Ray Tune sweeps over RecBole runs (Ray >= 2.45 API: ``tune.Tuner``, ``tune.report``, ``tune.get_context``).

- The search space comes from a RecBole params file (:mod:`recbole_lea.experiments.params`).
- Each trial is one :func:`recbole_lea.experiments.runner.run_one` in the trial's own folder; it
  reports VALIDATION metrics after every validation (``valid_score`` = RecBole's
  ``valid_metric``, plus ``valid_<metric>`` for every metric), so ASHA can stop bad trials early.
  Test metrics never reach Ray: each trial writes them to ``test_result.json`` in its folder and
  the driver reads that file for the best trial only, once, at the end.
- A trial's GPU comes from Ray (``ray.get_gpu_ids()`` -> ``gpu_id``), not from RecBole's option.
- Shared caches (dataset conversion, the LE of ``*_LEA`` models) are prepared once by the driver
  before any trial, under file locks; trials never rebuild them.
- A crashing trial is recorded (status ``ERROR`` + its error) and the sweep goes on.
- No Tune checkpoints: ASHA only stops trials (never pauses and resumes them) and failed trials
  are not retried, so Tune never restores one; RecBole writes its own best-model checkpoint into
  the trial folder (``run/saved/``), which the trial's test evaluation reads.
- A local Ray (no ``--address``) listens on 127.0.0.1 only
  (:func:`recbole_lea.experiments.ray_runtime.ray_session`); ``--address`` is the only way to use
  other machines.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recbole_lea.errors import ConfigError
from recbole_lea.experiments.params import ParamSpec, grid_size, params_file_path, parse_params_file, to_ray_space

# Ray's start and stop live in ray_runtime (shared with comparisons); these names stay importable here
from recbole_lea.experiments.ray_runtime import LOOPBACK as LOOPBACK
from recbole_lea.experiments.ray_runtime import TRIAL_ENV as TRIAL_ENV
from recbole_lea.experiments.ray_runtime import device_options as device_options
from recbole_lea.experiments.ray_runtime import ray_session, ray_temp_dir
from recbole_lea.experiments.ray_runtime import start_local_ray as start_local_ray
from recbole_lea.experiments.runner import (
    absolute_files,
    prepare_shared,
    read_option,
    resolve_data_path,
    run_one,
    to_jsonable,
    write_json_atomic,
)
from recbole_lea.files import atomic_open
from recbole_lea.options import PROPERTIES, build, opt

DEFAULTS_FILE = PROPERTIES / "experiments" / "eval.yaml"
_ray_temp_dir = ray_temp_dir


def _import_run_fn(ref: str | None) -> Any:
    if not ref:
        return None
    module, _, name = ref.partition(":")
    import importlib

    return getattr(importlib.import_module(module), name)


def _trial(
    params: dict[str, Any],
    *,
    model: str,
    dataset: str,
    config_file_list: list[str],
    base_config: dict[str, Any],
    torch_threads: int,
    run_fn_ref: str | None,
) -> None:
    """One Ray Tune trial (runs inside a Ray worker)."""
    import ray
    from ray import tune

    trial_dir = Path(tune.get_context().get_trial_dir())
    options = {**base_config, **params, **device_options(ray.get_gpu_ids())}

    def report(epoch: int, valid_score: float, valid_result: dict[str, Any]) -> None:
        metrics = {"epoch": epoch, "valid_score": float(valid_score)}
        metrics.update({f"valid_{k}": float(v) for k, v in valid_result.items()})
        tune.report(metrics)

    record = run_one(
        model,
        dataset,
        config_file_list,
        options,
        run_dir=trial_dir / "run",
        run_fn=_import_run_fn(run_fn_ref),
        on_valid=report,
        torch_threads=torch_threads,
        catch=False,
    )
    # Test metrics stay out of Ray (no selection on them); the driver reads this file for the
    # best trial only.
    write_json_atomic(trial_dir / "test_result.json", record.pop("test_result", {}))
    write_json_atomic(trial_dir / "trial_result.json", record)


@dataclass
class SweepOptions:
    """Options of ``run_hyper_lea.py`` (a Ray Tune sweep)."""

    model: str = opt("SA2C_LEA", "the model every trial trains", flags=("-m",))
    dataset: str = opt("ml-100k", "the dataset", flags=("-d",))
    params_file: str = opt(
        "",
        "RecBole params file (name type value): a path, or a shipped one by name (w_grid, w_grid_paper, ...)",
        required=True,
    )
    config_files: list[str] = opt([], "extra yaml config files for every trial", metavar="FILE")
    search: str = opt(
        "grid",
        "grid: every `choice` is a tune.grid_search (like RecBole's exhaustive search); random: `choice` is "
        "sampled (tune.choice)",
        choices=("grid", "random"),
    )
    num_samples: int = opt(1, "samples (times the grid under --search grid)", ge=1)
    seed: int | None = opt(None, "seed of the sampling of configurations (the same seed samples the same ones)")
    cpus_per_trial: float = opt(1.0, "CPUs Ray reserves per trial (also its torch threads)", gt=0)
    gpus_per_trial: float = opt(0.0, "GPUs per trial; fractions share a GPU (0.5)", ge=0)
    max_concurrent: int | None = opt(None, "trials running at once (default: as many as the resources allow)", ge=1)
    scheduler: str = opt(
        "fifo", "fifo: every trial runs to its end; asha: bad trials stop early", choices=("asha", "fifo")
    )
    grace_period: int = opt(1, "ASHA: validations before a trial may be stopped", ge=1)
    address: str | None = opt(
        None, "join a Ray cluster: auto or ray://host:10001 (default: a local, loopback-only Ray)"
    )
    num_cpus: int | None = opt(None, "local Ray only: CPUs Ray may use", ge=1)
    output_dir: str | None = opt(None, "where trials and results go (default results/tune/<model>-<dataset>)")
    data_path: str | None = opt(None, "folder holding <dataset>/ (default atomic_datasets)")
    heatmap: list[str] = opt(["w_ah", "w_aq"], "the two swept options of the heatmap (x, y)", metavar="NAME")
    heatmap_metric: str = opt("ndcg@10", "the validation metric the heatmap shows")
    quiet: bool = opt(False, "less Ray output")


def sweep_options(**fields: Any) -> SweepOptions:
    """:class:`SweepOptions` from keywords, every value checked (paths may be ``Path``)."""
    fields = {k: os.fspath(v) if isinstance(v, os.PathLike) else v for k, v in fields.items()}
    return build(SweepOptions, fields, "run_sweep")


def run_sweep(
    options: SweepOptions | None = None,
    *,
    config_dict: Mapping[str, Any] | None = None,
    run_fn_ref: str | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """Run a Ray Tune sweep and write its CSV, best config + TEST metrics and heatmap.

    ``options`` (or its fields as keywords, :func:`sweep_options`): the sweep; ``config_dict``:
    config options of every trial; ``run_fn_ref``: ``module:function`` that runs one (tests).
    Returns the summary written to ``<output_dir>/best.json`` plus ``trials`` (the CSV rows).
    """
    opts = options or sweep_options(**fields)
    if len(opts.heatmap) != 2:
        raise ConfigError(f"Option `heatmap` names two swept options (x y), got {opts.heatmap}.")
    specs: list[ParamSpec] = parse_params_file(opts.params_file)
    output_dir = Path(opts.output_dir or Path("results") / "tune" / f"{opts.model}-{opts.dataset}").resolve()
    output_dir.mkdir(parents=True, exist_ok=True)
    files = absolute_files([str(DEFAULTS_FILE), *opts.config_files])
    base_config = dict(config_dict or {})
    base_config["data_path"] = resolve_data_path(files, base_config, opts.data_path)
    bigger = bool(read_option("valid_metric_bigger", files, base_config, True))
    swept = [spec.name for spec in specs]
    check_swept(opts.model, opts.dataset, files, base_config, specs, str(params_file_path(opts.params_file)))
    base_config.update(prepare_shared(opts.model, opts.dataset, base_config["data_path"], files, base_config, swept))

    name = f"sweep_{time.strftime('%Y%m%d-%H%M%S')}"
    with ray_session(opts.address, opts.num_cpus, output_dir, opts.quiet):
        tuner = _tuner(opts, specs, files, base_config, bigger, name, output_dir, run_fn_ref)
        start = time.perf_counter()
        grid = tuner.fit()
        wall = time.perf_counter() - start
        rows = [_trial_row(result, specs, bigger) for result in grid]

    return _summarise(
        rows=rows,
        specs=specs,
        output_dir=output_dir,
        model=opts.model,
        dataset=opts.dataset,
        base_config=base_config,
        files=files,
        bigger=bigger,
        wall=wall,
        search=opts.search,
        scheduler=opts.scheduler,
        heatmap=(opts.heatmap[0], opts.heatmap[1]),
        heatmap_metric=opts.heatmap_metric,
        experiment_dir=str(output_dir / "ray_results" / name),
    )


def sample_values(spec: ParamSpec) -> list[Any]:
    """Values a trial can get for ``spec``, of the type Ray gives: every ``choice``, the lower end
    of a continuous range (a float, as Ray samples it)."""
    if spec.kind == "choice":
        return list(spec.values)
    low = float(spec.args[0])
    if spec.kind == "loguniform":
        return [math.exp(low)]
    if spec.kind == "quniform":
        q = float(spec.args[2])
        return [round(low / q) * q]
    return [low]


class _SweptWarnings(logging.Filter):
    """Lets through the run's warnings about the swept option being checked, each once (the base
    config's own warnings were given by its first resolution)."""

    def __init__(self) -> None:
        super().__init__()
        self.key = ""
        self.seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if f"`{self.key}`" not in message or message in self.seen:
            return False
        self.seen.add(message)
        return True


def check_swept(
    model: str,
    dataset: str,
    files: list[str],
    base_config: Mapping[str, Any],
    specs: Sequence[ParamSpec],
    source: str,
) -> None:
    """Check every swept option as a trial's run would, before Ray starts: a name no option of
    the run (of ``model``, the LE build, RecBole) declares, or a value of the wrong kind, raises
    the run's :class:`ConfigError` (with its did-you-mean), naming the params file ``source``."""
    from recbole_lea.run_config import resolve_run

    resolve_run(model, dataset, list(files), dict(base_config))  # the base config's own errors, as they are
    run_logger = logging.getLogger("recbole_lea.run_config")
    only_swept = _SweptWarnings()
    run_logger.addFilter(only_swept)
    try:
        for spec in specs:
            only_swept.key = spec.name
            for value in sample_values(spec):
                try:
                    resolve_run(model, dataset, list(files), {**base_config, spec.name: value})
                except ConfigError as err:
                    text = str(err).replace("the command line / config_dict", source)
                    if spec.kind == "quniform" and "Unknown option" not in text:
                        text += " (quniform gives floats: sweep an integer option with `choice [...]`.)"
                    where = "" if source in text else f"{source}, "
                    raise ConfigError(f"{where}swept parameter `{spec.name}` = {value!r}: {text}") from None
    finally:
        run_logger.removeFilter(only_swept)


def _scheduler(opts: SweepOptions, files: list[str], base_config: dict[str, Any]) -> Any:
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    if opts.scheduler == "fifo":
        return FIFOScheduler()
    epochs = int(read_option("epochs", files, base_config, 300))
    eval_step = max(1, int(read_option("eval_step", files, base_config, 1)))
    # max_t one above the number of validations: ASHA stops every trial that reaches
    # max_t AT that report, which would kill a finished run before its test evaluation.
    return ASHAScheduler(
        time_attr="training_iteration",
        max_t=max(1, epochs // eval_step) + 1,
        grace_period=opts.grace_period,
        reduction_factor=2,
    )


def _tuner(
    opts: SweepOptions,
    specs: list[ParamSpec],
    files: list[str],
    base_config: dict[str, Any],
    bigger: bool,
    name: str,
    output_dir: Path,
    run_fn_ref: str | None,
) -> Any:
    """The Ray Tune ``Tuner`` of the sweep: one :func:`_trial` per point, with its resources."""
    from ray import tune
    from ray.tune.search import BasicVariantGenerator

    trainable = tune.with_resources(
        tune.with_parameters(
            _trial,
            model=opts.model,
            dataset=opts.dataset,
            config_file_list=files,
            base_config=base_config,
            torch_threads=max(1, int(opts.cpus_per_trial)),
            run_fn_ref=run_fn_ref,
        ),
        {"cpu": opts.cpus_per_trial, "gpu": opts.gpus_per_trial},
    )
    return tune.Tuner(
        trainable,
        param_space=to_ray_space(specs, opts.search),
        tune_config=tune.TuneConfig(
            metric="valid_score",
            mode="max" if bigger else "min",
            num_samples=opts.num_samples,
            search_alg=BasicVariantGenerator(random_state=opts.seed),
            max_concurrent_trials=opts.max_concurrent,
            scheduler=_scheduler(opts, files, base_config),
            trial_dirname_creator=_trial_dirname,
        ),
        run_config=tune.RunConfig(
            name=name,
            storage_path=str(output_dir / "ray_results"),
            failure_config=tune.FailureConfig(max_failures=0, fail_fast=False),
            verbose=0 if opts.quiet else 1,
        ),
    )


def _trial_dirname(trial: Any) -> str:
    return f"trial_{trial.trial_id}"


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _trial_row(result: Any, specs: list[ParamSpec], bigger: bool) -> dict[str, Any]:
    """One CSV row: params, status, best VALIDATION metrics, timings, error."""
    trial_dir = Path(result.path) if result.path else None
    params = result.config or (_read_json(trial_dir / "params.json") if trial_dir else None) or {}
    row: dict[str, Any] = {"trial_dir": str(trial_dir) if trial_dir else ""}
    for spec in specs:
        row[spec.name] = params.get(spec.name)
    record = _read_json(trial_dir / "trial_result.json") if trial_dir else None
    error_record = _read_json(trial_dir / "error.json") if trial_dir else None
    frame = result.metrics_dataframe
    reports = 0 if frame is None else len(frame)
    row["epochs_reported"] = reports
    if record is not None:
        row["status"] = "OK"
        row["error"] = ""
        row["valid_score"] = record.get("best_valid_score")
        for key, value in (record.get("best_valid_result") or {}).items():
            row[f"valid_{key}"] = value
        times = record.get("epoch_times") or []
        row["epochs_trained"] = len(times)
        row["mean_epoch_time_s"] = sum(times) / len(times) if times else None
        row["wall_time_s"] = record.get("wall_time_s")
    else:
        if result.error is not None or error_record is not None:
            row["status"] = "ERROR"
            message = (error_record or {}).get("error") or str(result.error)
            row["error"] = message.strip().splitlines()[-1][:500] if message else "unknown"
        else:
            row["status"] = "STOPPED_EARLY"
            row["error"] = ""
        if frame is not None and reports and "valid_score" in frame:
            best = frame["valid_score"].idxmax() if bigger else frame["valid_score"].idxmin()
            row["valid_score"] = float(frame.loc[best, "valid_score"])
            for column in frame.columns:
                if column.startswith("valid_") and column != "valid_score":
                    row[column] = float(frame.loc[best, column])
    return row


def _summarise(
    *,
    rows: list[dict[str, Any]],
    specs: list[ParamSpec],
    output_dir: Path,
    model: str,
    dataset: str,
    base_config: dict[str, Any],
    files: list[str],
    bigger: bool,
    wall: float,
    search: str,
    scheduler: str,
    heatmap: tuple[str, str],
    heatmap_metric: str,
    experiment_dir: str,
) -> dict[str, Any]:
    from recbole_lea.experiments.plots import plot_heatmap

    param_names = [s.name for s in specs]
    _write_rows_csv(output_dir / "trials.csv", rows, first=["status", *param_names])

    finished = [r for r in rows if r["status"] == "OK" and _finite(r.get("valid_score"))]
    best: dict[str, Any] | None = None
    if finished:
        best = (max if bigger else min)(finished, key=lambda r: float(r["valid_score"]))
    summary: dict[str, Any] = {
        "model": model,
        "dataset": dataset,
        "search": search,
        "scheduler": scheduler,
        "grid_points": grid_size(specs),
        "n_trials": len(rows),
        "n_ok": sum(r["status"] == "OK" for r in rows),
        "n_error": sum(r["status"] == "ERROR" for r in rows),
        "n_stopped_early": sum(r["status"] == "STOPPED_EARLY" for r in rows),
        "wall_time_s": wall,
        "config_file_list": files,
        "base_config": base_config,
        "experiment_dir": experiment_dir,
        "trials_csv": str(output_dir / "trials.csv"),
        "selection": "best validation score among finished trials (valid_metric of the config)",
    }
    if best is not None:
        best_dir = Path(best["trial_dir"])
        summary["best_params"] = {name: best.get(name) for name in param_names}
        summary["best_valid_score"] = best["valid_score"]
        summary["best_valid_result"] = {
            k[len("valid_") :]: v for k, v in best.items() if k.startswith("valid_") and k != "valid_score"
        }
        summary["best_test_result"] = _read_json(best_dir / "test_result.json")
        summary["best_trial_dir"] = str(best_dir)
        summary["best_config_dict"] = {**base_config, **summary["best_params"]}
    else:
        summary["best_params"] = None
    x_key, y_key = heatmap
    if x_key in param_names and y_key in param_names:
        column = f"valid_{heatmap_metric}"
        if not any(column in r for r in rows):
            column = "valid_score"
        path = plot_heatmap(
            rows,
            x_key,
            y_key,
            column,
            output_dir / f"heatmap_{x_key}_{y_key}.png",
            title=f"{model} on {dataset}: validation {column[len('valid_') :]} (best epoch)",
        )
        summary["heatmap_png"] = str(path) if path else None
    write_json_atomic(output_dir / "best.json", summary)
    summary["trials"] = rows
    return to_jsonable(summary)


def _finite(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _write_rows_csv(path: Path, rows: list[dict[str, Any]], first: list[str]) -> None:
    columns: list[str] = []
    for key in first:
        if key not in columns:
            columns.append(key)
    tail = ["valid_score"]
    for row in rows:
        for key in row:
            if key.startswith("valid_") and key not in tail:
                tail.append(key)
    for key in tail:
        if key not in columns:
            columns.append(key)
    for row in rows:
        for key in row:
            if key not in columns and key not in ("error", "trial_dir"):
                columns.append(key)
    columns += ["error", "trial_dir"]
    with atomic_open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _csv_value(row.get(k)) for k in columns})


def _csv_value(value: Any) -> Any:
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(to_jsonable(value))
    return value
