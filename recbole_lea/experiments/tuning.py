"""Tuned baselines: each model of a comparison tuned on validation before its seeded runs.

``run_compare_lea.py --tune_trials N`` gives every model spec the same budget, ``N`` trials of a
random search over the model's own search space, through the sweep machinery
(:func:`recbole_lea.experiments.tune.run_sweep`, Ray Tune), then runs the seeds with each model's
best configuration:

- The search space of a model is the params file ``<tune_spaces>/<Model>.hyper`` (shipped:
  ``properties/experiments/tune/``; a model without its own file gets ``default.hyper``, the
  learning rate). A parameter the spec sets itself (``SA2C:gamma=0.5``) is fixed, not tuned.
- Trials select on VALIDATION only (the sweep's ``valid_score``: the config's ``valid_metric``);
  their test metrics are never read here. Every trial runs with ``tune_seed``, kept apart from the
  test seeds, which also seeds the sampling of the configurations (the same command samples the
  same ``N`` configurations).
- A tuning is stored in ``<output_dir>/tune/<spec slug>__<hash>/`` (``trials.csv``, ``best.json``;
  ``tuning.json``, its outcome with the sha256 of its content, is what is read back),
  the hash over everything that changes it (model, overrides, options, config files, search
  space, trials, seed, data or LE, code, library versions), and read back instead of rerun.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recbole_lea.errors import ConfigError
from recbole_lea.experiments.params import parse_params_file
from recbole_lea.experiments.runner import config_hash, inputs_digest, record_digest, write_json_atomic
from recbole_lea.options import PROPERTIES

logger = logging.getLogger(__name__)

#: the shipped search spaces, one params file per model (``default.hyper`` for the others)
TUNE_SPACES = PROPERTIES / "experiments" / "tune"


@dataclass(frozen=True)
class TuneBudget:
    """What every model of a comparison gets: trials, their seed, where the spaces are, how they run."""

    trials: int
    seed: int
    spaces: Path = TUNE_SPACES
    max_concurrent: int | None = None
    threads: int = 1
    gpus_per_run: float = 0.0
    address: str | None = None
    quiet: bool = False


@dataclass
class Tuned:
    """One model spec's tuning: its best parameters (empty: nothing to tune) and where it lives."""

    label: str
    params: dict[str, Any] = field(default_factory=dict)
    valid_score: float | None = None
    n_trials: int = 0
    n_ok: int = 0
    space: str = ""
    folder: str = ""
    fixed: list[str] = field(default_factory=list)  # space parameters the spec sets itself
    reused: bool = False


def space_file(model: str, spaces: Path) -> Path:
    """``<spaces>/<model>.hyper``, else ``<spaces>/default.hyper``; a clear error when neither exists."""
    for name in (f"{model}.hyper", "default.hyper"):
        path = spaces / name
        if path.is_file():
            return path
    raise ConfigError(
        f"--tune_spaces {spaces}: no search space for {model} ({model}.hyper) and no default.hyper: "
        f"add one (RecBole params-file syntax, see {TUNE_SPACES / 'default.hyper'})"
    )


def tune_key(
    model: str,
    overrides: Mapping[str, Any],
    dataset: str,
    files: Sequence[str],
    config: Mapping[str, Any],
    space: Path,
    budget: TuneBudget,
) -> str:
    """Hash of everything that changes a model's tuning (the same inputs as a run's key, plus the
    search space's contents, the number of trials and their seed)."""
    inputs, _ = inputs_digest(model, dataset, files, {**config, **overrides})
    payload = {
        "model": model,
        "overrides": dict(overrides),
        "dataset": dataset,
        "config_dict": {k: v for k, v in config.items() if k != "data_path"},
        "inputs": inputs,
        "trials": budget.trials,
        "seed": budget.seed,
    }
    return config_hash(payload, [*files, str(space)])


def stored_tuning(folder: Path) -> dict[str, Any] | None:
    """The finished tuning stored in ``folder`` (``tuning.json``: the best configuration and its
    trial counts, with the sha256 of its content), or None: missing, unreadable or modified."""
    path = folder / "tuning.json"
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("sha256") != record_digest(record):
        logger.warning("stored tuning %s does not match its recorded sha256 (modified); tuning again", path)
        return None
    return record


def _store_tuning(folder: Path, summary: Mapping[str, Any]) -> dict[str, Any]:
    """The sweep's outcome as the verified record :func:`stored_tuning` reads back."""
    record = {key: summary.get(key) for key in ("best_params", "best_valid_score", "n_trials", "n_ok")}
    record["sha256"] = record_digest(record)
    write_json_atomic(folder / "tuning.json", record)
    return record


def tune_spec(
    label: str,
    slug: str,
    model: str,
    overrides: Mapping[str, Any],
    dataset: str,
    files: Sequence[str],
    config: Mapping[str, Any],
    tune_dir: Path,
    budget: TuneBudget,
    run_fn_ref: str | None = None,
    stored_only: bool = False,
) -> Tuned:
    """Tune one model spec (or read its stored tuning back); ``config``: the options of every run.
    ``stored_only`` (``--stored``): read back only; a missing tuning raises."""
    from recbole_lea.experiments.params import ParamSpec
    from recbole_lea.experiments.tune import run_sweep

    space = space_file(model, budget.spaces)
    specs: list[ParamSpec] = parse_params_file(space)
    fixed = sorted(s.name for s in specs if s.name in overrides)
    free = [s for s in specs if s.name not in overrides]
    tuned = Tuned(label, space=str(space), fixed=fixed)
    if not free:
        return tuned
    key = tune_key(model, overrides, dataset, files, config, space, budget)
    folder = tune_dir / f"{slug}__{key}"
    summary = stored_tuning(folder)
    tuned.reused = summary is not None
    if summary is None and stored_only:
        raise ConfigError(
            f"--stored --tune_trials {budget.trials}: {label} has no stored tuning with these options "
            f"({folder}): run the comparison once without --stored"
        )
    if summary is None:
        folder.mkdir(parents=True, exist_ok=True)
        params_file = folder / "space.hyper"  # the free part of the space, as tuned
        params_file.write_text("".join(f"{s.name} {s.kind} {_space_value(s)}\n" for s in free))
        summary = run_sweep(
            config_dict={**config, **overrides, "seed": budget.seed},
            run_fn_ref=run_fn_ref,
            model=model,
            dataset=dataset,
            params_file=str(params_file),
            config_files=list(files[1:]),  # run_sweep adds the defaults file itself
            search="random",
            num_samples=budget.trials,
            seed=budget.seed,
            cpus_per_trial=float(budget.threads),
            gpus_per_trial=budget.gpus_per_run,
            max_concurrent=budget.max_concurrent,
            address=budget.address,
            output_dir=str(folder),
            data_path=str(config.get("data_path") or "") or None,
            quiet=budget.quiet,
        )
        if summary.get("best_params") is not None:
            summary = _store_tuning(folder, summary)
    tuned.folder = str(folder)
    tuned.params = dict(summary.get("best_params") or {})
    tuned.valid_score = summary.get("best_valid_score")
    tuned.n_trials = int(summary.get("n_trials") or 0)
    tuned.n_ok = int(summary.get("n_ok") or 0)
    if summary.get("best_params") is None:
        raise RuntimeError(
            f"tuning {label}: none of its {tuned.n_trials} trials finished (see {folder / 'trials.csv'})"
        )
    return tuned


def _space_value(spec: Any) -> str:
    """A params-file value written back: a choice's list, or the range's numbers."""
    if spec.kind == "choice":
        return json.dumps(list(spec.args))
    return ",".join(repr(float(a)) for a in spec.args)


def tuning_markdown(tuned: Sequence[Tuned], metric: str) -> str:
    """The table's section that says which configuration each row used."""
    lines = [
        "",
        f"Tuned configurations (random search on validation {metric}, the same number of trials per model; "
        "the seeded runs above use them):",
        "",
        "| Model | trials (finished) | best validation | configuration | fixed by the spec | search space |",
        "|---|---:|---:|---|---|---|",
    ]
    for t in tuned:
        params = ", ".join(f"{k}={_short(v)}" for k, v in sorted(t.params.items())) or "(nothing to tune)"
        score = "" if t.valid_score is None else f"{float(t.valid_score):.4f}"
        lines.append(
            f"| {t.label} | {t.n_trials} ({t.n_ok}) | {score} | {params} | {', '.join(t.fixed)} | {Path(t.space).name} |"
        )
    return "\n".join(lines) + "\n"


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
