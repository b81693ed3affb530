"""Seeded comparison tables like the LEA paper's Table 2.

Each model spec (``SASRec``, ``SA2C_LEA:variant=LEASR,w_ah=0.1``) runs once per seed; every run
lives in its own folder and is cached as one JSON file per (model spec, seed, config hash), so a
finished run is read back instead of recomputed. A per-result file lock makes two drivers started
at once on overlapping work compute each run once: the second waits, then reads the first's JSON.
Runs go several at once through Ray (``--max_concurrent``, ``--address``:
:mod:`recbole_lea.experiments.parallel`), or one after another in this process
(``--max_concurrent 1``); the records and tables are the same either way.

The table gives mean ± sample std (ddof=1) over seeds of the TEST Hit/NDCG@5/10/20, the best mean
of each column in bold and the second best underlined, and a paired t-test
(``scipy.stats.ttest_rel``, two-sided, pairs = runs with the same seed) of each model against the
chosen baseline; ``*`` marks p < alpha (0.01, as the paper) when the model's mean is above the
baseline's.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from glob import escape as glob_escape
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from filelock import FileLock, Timeout

from recbole_lea.data.split import protocol_description
from recbole_lea.errors import ConfigError
from recbole_lea.experiments.parallel import Progress, RunJob, run_jobs, warm_up
from recbole_lea.experiments.ray_runtime import ray_session
from recbole_lea.experiments.runner import (
    LOCK_TIMEOUT_S,
    RunFn,
    absolute_files,
    config_hash,
    inputs_digest,
    prepare_le,
    record_digest,
    resolve_data_path,
    run_one,
    write_json_atomic,
)
from recbole_lea.experiments.stats import paired_pvalue
from recbole_lea.experiments.tuning import TUNE_SPACES, TuneBudget, Tuned, tune_spec, tuning_markdown
from recbole_lea.files import atomic_open, atomic_write_text
from recbole_lea.options import PROPERTIES, build, opt

logger = logging.getLogger(__name__)

DEFAULTS_FILE = PROPERTIES / "experiments" / "eval.yaml"
TABLE_METRICS: tuple[tuple[str, str], ...] = (
    ("hit@5", "HR@5"),
    ("ndcg@5", "NG@5"),
    ("hit@10", "HR@10"),
    ("ndcg@10", "NG@10"),
    ("hit@20", "HR@20"),
    ("ndcg@20", "NG@20"),
)
RESULT_SCHEMA = 2


@dataclass(frozen=True)
class ModelSpec:
    """``Model[:key=value,key=value]``; values are parsed as YAML (``0.1`` -> float)."""

    model: str
    overrides: dict[str, Any] = field(default_factory=dict)
    text: str = ""

    @property
    def label(self) -> str:
        return self.text or self.model

    @property
    def slug(self) -> str:
        return re.sub(r"[^A-Za-z0-9_.=-]+", "_", self.label.replace(":", "__").replace(",", "_"))


_SPLIT = re.compile(r",(?=\s*[A-Za-z_][A-Za-z0-9_]*\s*=)")


def parse_model_spec(text: str) -> ModelSpec:
    text = text.strip()
    model, _, rest = text.partition(":")
    if not model or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", model):
        raise ConfigError(f"bad model spec {text!r}: expected Model or Model:key=value,key=value")
    overrides: dict[str, Any] = {}
    if rest.strip():
        for part in _SPLIT.split(rest):
            key, eq, value = part.partition("=")
            if not eq or not key.strip():
                raise ConfigError(f"bad override {part!r} in {text!r}: expected key=value")
            try:
                overrides[key.strip()] = yaml.safe_load(value.strip())
            except yaml.YAMLError:
                overrides[key.strip()] = value.strip()
    return ModelSpec(model=model, overrides=overrides, text=text)


#: a larger single ``--seeds`` number is taken for a seed value typed by mistake
MAX_SEED_COUNT = 100


def seed_list(seeds: Sequence[int] | int, base_seed: int = 2020) -> list[int]:
    """``3`` -> ``[2020, 2021, 2022]``; an explicit list is kept as given, each seed once."""
    if isinstance(seeds, int):
        if seeds < 1:
            raise ConfigError("--seeds must be >= 1")
        if seeds > MAX_SEED_COUNT:
            # `--seeds 2026` reads as "seed 2026" but means 2026 runs per model
            raise ConfigError(
                f"--seeds {seeds}: one number is a COUNT of seeds from --base_seed ({base_seed}), and "
                f"{seeds} runs per model is surely not meant. For that one seed write "
                f"`--base_seed {seeds} --seeds 1`; for several given seeds list two or more numbers."
            )
        return [base_seed + i for i in range(seeds)]
    values = [int(s) for s in seeds]
    repeated = sorted({s for s in values if values.count(s) > 1})
    if repeated:
        # a repeated seed would be counted in the header but averaged once in the rows
        times = {2: "twice"}
        names = "; ".join(
            f"seed {s} is given {times.get(values.count(s), f'{values.count(s)} times')}" for s in repeated
        )
        raise ConfigError(
            f"--seeds {' '.join(map(str, values))}: {names}. List each seed once "
            f"(--seeds {' '.join(map(str, dict.fromkeys(values)))})."
        )
    return values


def run_key(
    spec: ModelSpec,
    dataset: str,
    seed: int,
    config_file_list: Sequence[str],
    config_dict: Mapping[str, Any],
    inputs: Mapping[str, Any],
) -> str:
    """``<spec slug>__seed<seed>__<hash of everything that changes the result>``: the options, the
    contents of the given and of the default config files, and ``inputs`` (see
    :func:`recbole_lea.experiments.runner.inputs_digest`: the data files or the fingerprint of
    the LE the run reads, our code, the library versions)."""
    from recbole_lea.quick_start import default_config_files

    data_path = str(config_dict.get("data_path") or "")
    payload = {
        "defaults": default_config_files(spec.model, dataset, data_path or None),
        "inputs": dict(inputs),
        "schema": RESULT_SCHEMA,
        "model": spec.model,
        "overrides": spec.overrides,
        "dataset": dataset,
        "seed": seed,
        "config_dict": {k: v for k, v in config_dict.items() if k != "data_path"},
    }
    files = [*payload["defaults"], *config_file_list]
    return f"{spec.slug}__seed{seed}__{config_hash(payload, files)}"


@dataclass
class CompareOptions:
    """Options of ``run_compare_lea.py`` (a comparison of models over seeds)."""

    dataset: str = opt("ml-100k", "the dataset every model runs on", flags=("-d",))
    models: list[str] = opt(
        [], "model specs: Name or Name:key=value,key=value (each once)", required=True, metavar="SPEC"
    )
    seeds: list[int] = opt(
        [3], "one number N: seeds base_seed..base_seed+N-1; two or more numbers: those seeds", metavar="N"
    )
    base_seed: int = opt(2020, "first seed when --seeds is a count")
    baseline: str | None = opt(None, "model spec the paired t-test compares against")
    alpha: float = opt(0.01, "significance level of the `*` mark", gt=0, lt=1)
    config_files: list[str] = opt([], "extra yaml config files for every run", metavar="FILE")
    output_dir: str | None = opt(None, "where the table, CSVs and runs go (default results/compare/<dataset>)")
    data_path: str | None = opt(None, "folder holding <dataset>/ (default atomic_datasets)")
    recompute: bool = opt(False, "ignore stored run results and run again")
    stored: bool = opt(
        False,
        "run nothing: table from the newest stored record of each model x seed with the same options, any code version",
    )
    threads: int | None = opt(1, "torch threads per run (None: torch's own setting)", ge=1)
    max_concurrent: int | None = opt(
        None,
        "runs at once, through Ray (default: CPU cores // --threads here, or as the cluster's CPUs allow with "
        "--address); 1: one after another in this process, no Ray",
        ge=1,
    )
    address: str | None = opt(
        None, "spread the runs over a Ray cluster: auto, host:port or ray://host:10001 (default: this machine)"
    )
    gpus_per_run: float = opt(0.0, "GPUs Ray gives each run and LE build (through Ray); fractions share a GPU", ge=0)
    quiet: bool = opt(False, "no progress lines, less Ray output")
    tune_trials: int = opt(
        0,
        "tune each model first: this many random-search trials over its own search space, selected on "
        "validation, then its seeds run the best configuration (0: every model at its defaults)",
        ge=0,
    )
    tune_seed: int = opt(2019, "seed of the tuning trials and of the sampling of their configurations")
    tune_spaces: str | None = opt(
        None, "folder of <Model>.hyper search spaces, default.hyper for the rest (default: the shipped ones)"
    )

    def seed_values(self) -> list[int]:
        """The seeds: one number is a count from ``base_seed``, several are the seeds."""
        return seed_list(self.seeds[0] if len(self.seeds) == 1 else self.seeds, self.base_seed)


def compare_options(**fields: Any) -> CompareOptions:
    """:class:`CompareOptions` from keywords, every value checked (paths may be ``Path``; ``seeds``
    may be one count)."""
    fields = {k: os.fspath(v) if isinstance(v, os.PathLike) else v for k, v in fields.items()}
    if isinstance(fields.get("seeds"), int):
        fields["seeds"] = [fields["seeds"]]
    return build(CompareOptions, fields, "run_comparison")


def run_comparison(
    options: CompareOptions | None = None,
    *,
    config_dict: Mapping[str, Any] | None = None,
    run_fn: RunFn | None = None,
    progress: Callable[[str], None] | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """Run (or read back) every model x seed, then write ``table.md``, ``table.csv``, ``runs.csv``.

    ``options`` (or its fields as keywords, :func:`compare_options`): what to compare;
    ``config_dict``: config options of every run; ``run_fn``: what runs one (tests; it runs in
    this process unless ``max_concurrent`` is given, and must then be importable by Ray's
    workers); ``progress``: where the progress lines go (default stderr, or nowhere with ``quiet``).
    ``stored``: run nothing; take each model x seed from the newest finished record in ``runs/``
    with the same model spec, seed and options, whatever code version wrote it (for tables over
    runs that straddle a code change that does not alter results). Missing ones raise.

    Returns ``{"runs": [...], "rows": [...], "markdown": str, ...}``.
    """
    opts = options or compare_options(**fields)
    specs = [m if isinstance(m, ModelSpec) else parse_model_spec(m) for m in opts.models]
    labels = [s.label for s in specs]
    if len(set(labels)) != len(labels):
        raise ConfigError(f"--models: each model spec once, got {labels}")
    seeds = opts.seed_values()
    if opts.baseline is not None and opts.baseline not in labels:
        raise ConfigError(
            f"--baseline {opts.baseline!r} is not one of --models {labels}: add it to --models or name one of them"
        )
    output_dir = Path(opts.output_dir or Path("results") / "compare" / opts.dataset).resolve()
    runs_dir = output_dir / "runs"
    runs_dir.mkdir(parents=True, exist_ok=True)
    files = absolute_files([str(DEFAULTS_FILE), *opts.config_files])
    base_config = dict(config_dict or {})
    base_config["data_path"] = resolve_data_path(files, base_config, opts.data_path)
    tuned = _tune(opts, specs, files, base_config, output_dir, run_fn) if opts.tune_trials else []
    if tuned:  # the seeds run each model's best configuration; the spec's own options win
        specs = [ModelSpec(s.model, {**t.params, **s.overrides}, s.label) for s, t in zip(specs, tuned)]
    pairs = [(spec, seed, {**base_config, **spec.overrides, "seed": seed}) for spec in specs for seed in seeds]
    notes: list[str] = []  # warnings the table carries
    if opts.stored:
        records = _stored_records(opts, pairs, files, runs_dir, notes)
    else:
        out = progress or (None if opts.quiet else _to_stderr)
        records = _plan_and_compute(opts, pairs, files, runs_dir, run_fn, Progress(len(pairs), out))
    appendix = ""
    if tuned:  # the metric the trials were selected on: the runs' valid_metric
        appendix = tuning_markdown(tuned, str(records[0].get("config", {}).get("valid_metric") or "NDCG@10"))
    return {**_write_tables(opts, records, labels, seeds, output_dir, notes, appendix), "tuned": tuned}


def _stored_records(
    opts: CompareOptions,
    pairs: list[tuple[ModelSpec, int, dict[str, Any]]],
    files: list[str],
    runs_dir: Path,
    notes: list[str],
) -> list[dict[str, Any]]:
    """``--stored``: the newest stored record of each run; what changed since goes to ``notes``."""
    records = []
    for spec, seed, run_options in pairs:
        record = _stored_record(runs_dir, spec, seed, run_options)
        notes += _stale_inputs(record, spec, seed, opts.dataset, files, run_options)
        records.append(record)
    return records


def _plan_and_compute(
    opts: CompareOptions,
    pairs: list[tuple[ModelSpec, int, dict[str, Any]]],
    files: list[str],
    runs_dir: Path,
    run_fn: RunFn | None,
    progress: Progress,
) -> list[dict[str, Any]]:
    """Plan every run (options checked, keys made), then compute the missing ones.

    A comparison bound for Ray starts it first, in this thread (Ray's init wants the main one),
    while a second thread plans the runs and Ray's workers import the run code (:func:`warm_up`):
    the three overlap instead of adding up. A planning error still ends the comparison, after Ray
    is shut down again, with the same message."""

    def plan_all() -> list[_Planned]:
        return [_plan(opts, spec, seed, files, run_options, runs_dir) for spec, seed, run_options in pairs]

    cap = _early_cap(opts, pairs, runs_dir, run_fn)
    if cap is None:
        return _compute(opts, plan_all(), files, runs_dir, run_fn, progress)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="plan") as pool:
        planning = pool.submit(plan_all)
        with ray_session(opts.address, cap * max(1, int(opts.threads or 1)), runs_dir.parent, opts.quiet):
            warm_up(cap, opts.threads, opts.gpus_per_run)
            return _compute(opts, planning.result(), files, runs_dir, run_fn, progress)


def _early_cap(
    opts: CompareOptions, pairs: list[tuple[ModelSpec, int, dict[str, Any]]], runs_dir: Path, run_fn: RunFn | None
) -> int | None:
    """Runs at once, when the comparison will go to Ray: the runs with no record file of their
    model spec and seed yet (a guess from the file names, before the keys exist) call for more than
    one at once. None: plan first, then decide (a comparison read back from its records starts no Ray)."""
    if opts.max_concurrent == 1 and not opts.address:
        return None
    missing = [
        (spec, seed)
        for spec, seed, _ in pairs
        if opts.recompute or not any(runs_dir.glob(f"{glob_escape(spec.slug)}__seed{seed}__*.json"))
    ]
    return concurrency(opts, len(missing), run_fn)


def _tune(
    opts: CompareOptions,
    specs: list[ModelSpec],
    files: list[str],
    base_config: dict[str, Any],
    output_dir: Path,
    run_fn: RunFn | None,
) -> list[Tuned]:
    """Every spec tuned (or its tuning read back), one after another, each sweep's trials at once."""
    budget = TuneBudget(
        trials=opts.tune_trials,
        seed=opts.tune_seed,
        spaces=Path(opts.tune_spaces).resolve() if opts.tune_spaces else TUNE_SPACES,
        max_concurrent=opts.max_concurrent,
        threads=max(1, int(opts.threads or 1)),
        gpus_per_run=opts.gpus_per_run,
        address=opts.address,
        quiet=opts.quiet,
    )
    if not budget.spaces.is_dir():
        raise ConfigError(f"--tune_spaces {opts.tune_spaces}: no such folder")
    run_fn_ref = f"{run_fn.__module__}:{run_fn.__qualname__}" if run_fn is not None else None
    out = None if opts.quiet else _to_stderr
    tuned = []
    for spec in specs:
        if out is not None:
            out(f"tuning {spec.label}: {opts.tune_trials} trials")
        one = tune_spec(
            spec.label,
            spec.slug,
            spec.model,
            spec.overrides,
            opts.dataset,
            files,
            base_config,
            output_dir / "tune",
            budget,
            run_fn_ref,
            stored_only=opts.stored,
        )
        if out is not None:
            out(f"tuned {spec.label}: {one.params or 'nothing to tune'}{' (read back)' if one.reused else ''}")
        tuned.append(one)
    return tuned


def _to_stderr(line: str) -> None:
    print(f"[run_compare_lea] {line}", file=sys.stderr, flush=True)


@dataclass
class _Planned:
    """One model x seed: its options, what it reads, its key and record file."""

    spec: ModelSpec
    seed: int
    run_options: dict[str, Any]
    inputs: dict[str, Any]
    resolved: Any
    key: str
    json_path: Path

    @property
    def label(self) -> str:
        return f"{self.spec.label} seed {self.seed}"


def _plan(
    opts: CompareOptions, spec: ModelSpec, seed: int, files: list[str], run_options: dict[str, Any], runs_dir: Path
) -> _Planned:
    """Resolve one run (its options checked: bad input fails before any run) and key it."""
    inputs, resolved = inputs_digest(spec.model, opts.dataset, files, run_options)
    key = run_key(spec, opts.dataset, seed, files, run_options, inputs)
    return _Planned(spec, seed, run_options, inputs, resolved, key, runs_dir / f"{key}.json")


def local_slots(threads: int | None) -> int:
    """Runs at once on this machine at ``threads`` torch threads each: its usable cores // threads."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, cores // max(1, int(threads or 1)))


def concurrency(opts: CompareOptions, pending: int, run_fn: RunFn | None = None) -> int | None:
    """How many of ``pending`` runs go at once through Ray; None: one after another in this process
    (``--max_concurrent 1``, a single run, or a ``run_fn`` without ``max_concurrent``)."""
    if pending == 0:
        return None
    if opts.address:
        return min(opts.max_concurrent or pending, pending)
    wanted = opts.max_concurrent or (1 if run_fn is not None else local_slots(opts.threads))
    cap = min(wanted, pending)
    return cap if cap > 1 else None


def _compute(
    opts: CompareOptions,
    planned: list[_Planned],
    files: list[str],
    runs_dir: Path,
    run_fn: RunFn | None,
    progress: Progress,
) -> list[dict[str, Any]]:
    """Every planned run's record: read back, or computed in this process or on Ray."""
    stored = {p.key: None if opts.recompute else _cached(p.json_path) for p in planned}
    pending = [p for p in planned if stored[p.key] is None]
    progress.read_back(len(planned) - len(pending))
    cap = concurrency(opts, len(pending), run_fn)
    if cap is None:
        prepared: dict[str, dict[str, Any]] = {}  # LE fingerprint -> options that read that LE
        for p in pending:
            progress.started(p.label)
            stored[p.key] = _record(opts, p, files, runs_dir, prepared, run_fn)
            if stored[p.key].get("cached"):
                progress.read_back(was_running=True)
                progress.report()
            else:
                progress.finished(p.label, stored[p.key])
    else:
        stored.update(_compute_on_ray(opts, pending, files, runs_dir, run_fn, progress, cap))
    return [dict(stored[p.key] or {}) for p in planned]


def _compute_on_ray(
    opts: CompareOptions,
    pending: list[_Planned],
    files: list[str],
    runs_dir: Path,
    run_fn: RunFn | None,
    progress: Progress,
    cap: int,
) -> dict[str, dict[str, Any]]:
    """The records of ``pending`` runs, ``cap`` at once on Ray (local node: ``cap`` x threads CPUs)."""
    builds: dict[str, Any] = {}
    jobs: list[RunJob] = []
    for p in pending:
        le_key = str(p.inputs.get("le")) if p.resolved.lea and not p.resolved.run.le_dir else None
        if le_key is not None:
            builds.setdefault(le_key, p.resolved)
        jobs.append(
            RunJob(
                p.key, p.label, p.seed, p.spec.model, opts.dataset, files, p.run_options, str(runs_dir / p.key), le_key
            )
        )
    store = _LockedRecords(opts, {p.key: p for p in pending}, runs_dir)
    num_cpus = cap * max(1, int(opts.threads or 1))
    with ray_session(opts.address, num_cpus, runs_dir.parent, opts.quiet):
        return run_jobs(
            jobs, builds, store, progress, cap=cap, threads=opts.threads, gpus_per_run=opts.gpus_per_run, run_fn=run_fn
        )


class _LockedRecords:
    """The record store of runs on Ray: the run's file lock is taken (without waiting) when it
    starts and released when its record is written, so two drivers never compute it twice."""

    def __init__(self, opts: CompareOptions, planned: Mapping[str, _Planned], runs_dir: Path) -> None:
        self.opts = opts
        self.planned = planned
        self.runs_dir = runs_dir
        self.locks: dict[str, FileLock] = {}

    def claim(self, job: RunJob) -> tuple[str, dict[str, Any] | None]:
        lock = FileLock(str(self.runs_dir / f".{job.key}.lock"))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            return "busy", None
        record = None if self.opts.recompute else _cached(self.planned[job.key].json_path)
        if record is not None:
            lock.release()
            return "cached", record
        self.locks[job.key] = lock
        return "run", None

    def finish(self, job: RunJob, record: dict[str, Any]) -> dict[str, Any]:
        try:
            _stamp_and_write(self.planned[job.key], record)
        finally:
            lock = self.locks.pop(job.key, None)
            if lock is not None:
                lock.release()
        return record

    def release_all(self) -> None:
        for key in list(self.locks):
            self.locks.pop(key).release()


def _stamp_and_write(p: _Planned, record: dict[str, Any]) -> None:
    """Give a computed record its label, seed, key and inputs, and write it (atomically)."""
    record.update(label=p.spec.label, seed=p.seed, key=p.key, schema=RESULT_SCHEMA, inputs=p.inputs)
    _write_record(p.json_path, record)
    record["cached"] = False


def _record(
    opts: CompareOptions,
    p: _Planned,
    files: list[str],
    runs_dir: Path,
    prepared: dict[str, dict[str, Any]],
    run_fn: RunFn | None,
) -> dict[str, Any]:
    """The verified record of one run, read back when it exists (unless ``--recompute``), else
    run in this process and written; under a lock, so two drivers never run it twice.
    ``prepared``: the LE options already built, by LE fingerprint."""
    record = None if opts.recompute else _cached(p.json_path)
    if record is not None:
        return record
    with FileLock(str(runs_dir / f".{p.key}.lock"), timeout=LOCK_TIMEOUT_S):
        record = None if opts.recompute else _cached(p.json_path)
        if record is not None:
            return record
        le_key = str(p.inputs.get("le"))
        if le_key not in prepared:
            prepared[le_key] = prepare_le(p.resolved)
        record = run_one(
            p.spec.model,
            opts.dataset,
            files,
            {**p.run_options, **prepared[le_key]},
            run_dir=runs_dir / p.key,
            run_fn=run_fn,
            torch_threads=opts.threads,
        )
        _stamp_and_write(p, record)
    return record


def _write_tables(
    opts: CompareOptions,
    records: list[dict[str, Any]],
    labels: list[str],
    seeds: list[int],
    output_dir: Path,
    notes: Sequence[str] = (),
    appendix: str = "",
) -> dict[str, Any]:
    """``table.md`` (then ``appendix``: the tuned configurations), ``table.csv``, ``runs.csv`` and the
    seed figure ``seeds.png`` (each model's seeds, mean ± 95% t interval and the table's p values) of
    the records, and what the call returns."""
    from recbole_lea.experiments.plots import SEED_FIGURE_METRICS, plot_seed_comparison

    rows = summarise(records, labels, seeds, opts.baseline, opts.alpha)
    protocols = sorted({protocol_line(r) for r in records if r.get("status") == "ok"})
    markdown = render_markdown(rows, opts.dataset, seeds, opts.baseline, opts.alpha, protocols, notes) + appendix
    atomic_write_text(output_dir / "table.md", markdown)
    _write_csv(output_dir / "table.csv", _table_csv_rows(rows))
    _write_csv(output_dir / "runs.csv", _runs_csv_rows(records))
    figure = plot_seed_comparison(
        {label: [r for r in records if r.get("label") == label] for label in labels},
        labels,
        opts.baseline,
        SEED_FIGURE_METRICS,
        output_dir / "seeds.png",
        f"{opts.dataset}: test results over {len(seeds)} seed(s)",
        pvalues={row["model"]: {k: row[f"{k}_p"] for k in SEED_FIGURE_METRICS if f"{k}_p" in row} for row in rows},
        alpha=opts.alpha,
    )
    return {
        "runs": records,
        "rows": rows,
        "markdown": markdown,
        "output_dir": str(output_dir),
        "seeds": seeds,
        "protocols": protocols,
        "notes": list(notes),
        "figure": str(figure),
    }


def _stored_record(runs_dir: Path, spec: ModelSpec, seed: int, options: Mapping[str, Any]) -> dict[str, Any]:
    """Newest finished record of ``spec`` x ``seed`` in ``runs_dir`` run with ``options``."""
    wanted = {k: v for k, v in options.items() if k != "data_path"}
    paths = sorted(runs_dir.glob(f"{spec.slug}__seed{seed}__*.json"), key=lambda p: p.stat().st_mtime, reverse=True)
    for path in paths:
        record = _cached(path)
        if record is not None and all(record.get("config_dict", {}).get(k) == v for k, v in wanted.items()):
            return record
    raise ConfigError(
        f"--stored: no finished record of {spec.label} with seed {seed} and options {wanted} in {runs_dir}; "
        "run the comparison without --stored to compute it."
    )


#: the inputs a stored record must share with today's files: the data, or the LE it read
CHECKED_INPUTS = {"data": "the data files", "le": "the LE fingerprint (data, LLM weights, LE options, LE code)"}


def _stale_inputs(
    record: Mapping[str, Any],
    spec: ModelSpec,
    seed: int,
    dataset: str,
    files: list[str],
    options: Mapping[str, Any],
) -> list[str]:
    """``--stored``: a warning (logged, and returned for the table's notes) when ``record`` was
    computed on other data or another LE than today's files give; none when they match. Code and
    library versions may differ (that is what ``--stored`` is for)."""
    where = f"the stored record of {spec.label} x seed {seed} ({record.get('key')})"
    try:
        today, _ = inputs_digest(spec.model, dataset, files, dict(options))
    except (ConfigError, OSError) as err:
        message = f"{where} cannot be checked against today's data ({err})"
    else:
        recorded = record.get("inputs") or {}
        changed = [_changed_input(name, recorded.get(name), today.get(name)) for name in CHECKED_INPUTS]
        changed = [c for c in changed if c]
        if not changed:
            return []
        message = f"{where} was computed on other inputs than today's: {'; '.join(changed)} changed since"
    message += "; run the comparison without --stored to recompute it"
    logger.warning("--stored: %s", message)
    return [message]


def _changed_input(name: str, recorded: Any, today: Any) -> str | None:
    """What differs between the recorded and today's digest of one input (None: the same)."""
    if recorded == today:
        return None
    if name == "data" and isinstance(recorded, Mapping) and isinstance(today, Mapping):
        names = sorted(f for f in set(recorded) | set(today) if recorded.get(f) != today.get(f))
        return "the sha256 of " + ", ".join(names)
    return CHECKED_INPUTS[name]


def protocol_line(record: Mapping[str, Any]) -> str:
    """The protocol of a run with its number of scored interactions (queries)."""
    line = protocol_description(record.get("config"))
    queries = record.get("n_queries") or {}
    if queries:
        line += f"; {queries.get('test')} test and {queries.get('valid')} validation queries per run"
    return line


def _write_record(path: Path, record: dict[str, Any]) -> None:
    """A run's record with the sha256 of its content, checked when it is read back."""
    record["sha256"] = record_digest(record)
    write_json_atomic(path, record)


def _cached(path: Path) -> dict[str, Any] | None:
    """A finished run's record; failed, unreadable or modified records are recomputed."""
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        logger.warning("cached result %s is unreadable; recomputing it", path)
        return None
    if record.get("status") != "ok" or record.get("schema") != RESULT_SCHEMA:
        return None
    if record.get("sha256") != record_digest(record):
        logger.warning("cached result %s does not match its recorded sha256 (modified); recomputing it", path)
        return None
    record["cached"] = True
    return record


# ---------------------------------------------------------------------------------------------
# statistics


def summarise(
    records: Sequence[Mapping[str, Any]],
    labels: Sequence[str],
    seeds: Sequence[int],
    baseline: str | None,
    alpha: float,
) -> list[dict[str, Any]]:
    """One row per model: mean/std per metric, p-value vs baseline, ranks, timings."""
    by_label: dict[str, dict[int, Mapping[str, Any]]] = {label: {} for label in labels}
    failures: dict[str, list[str]] = {label: [] for label in labels}
    for r in records:
        if r.get("status") == "ok":
            by_label[r["label"]][int(r["seed"])] = r
        else:
            failures[r["label"]].append(f"seed {r.get('seed')}: {r.get('error')}")
    rows: list[dict[str, Any]] = []
    for label in labels:
        runs = by_label[label]
        row: dict[str, Any] = {
            "model": label,
            "n_seeds": len(runs),
            "failed": failures[label],
        }
        epoch_times = [t for r in runs.values() for t in r.get("epoch_times") or []]
        row["mean_epoch_time_s"] = float(np.mean(epoch_times)) if epoch_times else float("nan")
        row["mean_run_time_s"] = (
            float(np.mean([r.get("wall_time_s") or 0.0 for r in runs.values()])) if runs else float("nan")
        )
        for key, _ in TABLE_METRICS:
            values = [float(r["test_result"][key]) for r in runs.values() if key in r["test_result"]]
            row[f"{key}_values"] = values
            row[f"{key}_mean"] = float(np.mean(values)) if values else float("nan")
            row[f"{key}_std"] = float(np.std(values, ddof=1)) if len(values) > 1 else float("nan")
            row[f"{key}_p"] = float("nan")
            row[f"{key}_sig"] = False
        rows.append(row)
    if baseline is not None:
        base_runs = by_label[baseline]
        for row in rows:
            if row["model"] == baseline:
                continue
            runs = by_label[row["model"]]
            common = [s for s in seeds if s in runs and s in base_runs]
            for key, _ in TABLE_METRICS:
                pairs = [
                    (float(runs[s]["test_result"][key]), float(base_runs[s]["test_result"][key]))
                    for s in common
                    if key in runs[s]["test_result"] and key in base_runs[s]["test_result"]
                ]
                if not pairs:
                    continue
                a, b = zip(*pairs)
                p = paired_pvalue(a, b)
                row[f"{key}_p"] = p
                row[f"{key}_sig"] = bool(math.isfinite(p) and p < alpha and float(np.mean(a)) > float(np.mean(b)))
    for key, _ in TABLE_METRICS:
        means = sorted(
            {row[f"{key}_mean"] for row in rows if math.isfinite(row[f"{key}_mean"])},
            reverse=True,
        )
        for row in rows:
            value = row[f"{key}_mean"]
            row[f"{key}_rank"] = means.index(value) + 1 if value in means else None
    return rows


# ---------------------------------------------------------------------------------------------
# rendering


def _cell(row: Mapping[str, Any], key: str) -> str:
    mean = row[f"{key}_mean"]
    if not math.isfinite(mean):
        return "n/a"
    std = row[f"{key}_std"]
    text = f"{mean:.4f} ± {std:.4f}" if math.isfinite(std) else f"{mean:.4f}"
    if row.get(f"{key}_sig"):
        text += "*"
    rank = row.get(f"{key}_rank")
    if rank == 1:
        return f"**{text}**"
    if rank == 2:
        return f"<u>{text}</u>"
    return text


def render_markdown(
    rows: Sequence[Mapping[str, Any]],
    dataset: str,
    seeds: Sequence[int],
    baseline: str | None,
    alpha: float,
    protocols: Sequence[str],
    notes: Sequence[str] = (),
) -> str:
    lines = [
        f"## {dataset}: test results over {len(seeds)} seed(s) ({', '.join(map(str, seeds))})",
        "",
        "Mean ± sample std (ddof=1) over seeds. **Bold**: best mean of the column; <u>underlined</u>: second best.",
    ]
    if baseline:
        lines.append(
            f"`*`: paired t-test (scipy.stats.ttest_rel, two-sided, paired by seed) against "
            f"**{baseline}** gives p < {alpha:g} and the mean is above the baseline's."
        )
    for proto in protocols or ["(no finished run)"]:
        lines.append(f"Evaluation protocol: {proto}.")
    for note in notes:
        lines.append(f"**Warning**: {note}.")
    lines.append("")
    header = ["Model", "seeds", *[name for _, name in TABLE_METRICS], "s/epoch"]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "|".join(["---"] * 2 + ["---:"] * (len(header) - 2)) + "|")
    for row in rows:
        label = str(row["model"]) + (" (baseline)" if row["model"] == baseline else "")
        epoch = row["mean_epoch_time_s"]
        cells = [
            label,
            str(row["n_seeds"]),
            *[_cell(row, key) for key, _ in TABLE_METRICS],
            f"{epoch:.2f}" if math.isfinite(epoch) else "n/a",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    failed = [(row["model"], f) for row in rows for f in row["failed"]]
    if failed:
        lines += ["", "Failed runs (left out of the means; rerun to retry):"]
        lines += [f"- {model}, {msg}" for model, msg in failed]
    if baseline:
        lines += ["", "p-values against the baseline:", ""]
        lines.append("| Model | " + " | ".join(name for _, name in TABLE_METRICS) + " |")
        lines.append("|---|" + "|".join(["---:"] * len(TABLE_METRICS)) + "|")
        for row in rows:
            if row["model"] == baseline:
                continue
            ps = [row[f"{key}_p"] for key, _ in TABLE_METRICS]
            lines.append(
                f"| {row['model']} | " + " | ".join(f"{p:.3g}" if math.isfinite(p) else "n/a" for p in ps) + " |"
            )
    return "\n".join(lines) + "\n"


def _table_csv_rows(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for row in rows:
        item: dict[str, Any] = {"model": row["model"], "n_seeds": row["n_seeds"]}
        for key, _ in TABLE_METRICS:
            for suffix in ("mean", "std", "p", "sig", "rank"):
                item[f"{key}_{suffix}"] = row[f"{key}_{suffix}"]
            item[f"{key}_values"] = json.dumps(row[f"{key}_values"])
        item["mean_epoch_time_s"] = row["mean_epoch_time_s"]
        item["mean_run_time_s"] = row["mean_run_time_s"]
        item["failed"] = json.dumps(row["failed"])
        out.append(item)
    return out


def _runs_csv_rows(records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for r in records:
        item: dict[str, Any] = {
            "model": r.get("label"),
            "seed": r.get("seed"),
            "status": r.get("status"),
            "cached": r.get("cached"),
            "key": r.get("key"),
        }
        for key, _ in TABLE_METRICS:
            item[f"test_{key}"] = (r.get("test_result") or {}).get(key)
        item["best_valid_score"] = r.get("best_valid_score")
        times = r.get("epoch_times") or []
        item["epochs"] = len(times)
        item["mean_epoch_time_s"] = float(np.mean(times)) if times else None
        item["epoch_times_s"] = json.dumps([round(t, 4) for t in times])
        item["wall_time_s"] = r.get("wall_time_s")
        item["error"] = r.get("error")
        item["run_dir"] = r.get("run_dir")
        out.append(item)
    return out


def _write_csv(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    columns: list[str] = []
    for row in rows:
        for key in row:
            if key not in columns:
                columns.append(key)
    with atomic_open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns or ["empty"])
        writer.writeheader()
        for row in rows:
            writer.writerow(dict(row))
