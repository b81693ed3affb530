"""Command lines of ``run_hyper_lea.py`` (Ray Tune sweeps) and ``run_compare_lea.py`` (tables).

Besides the named options, every other ``--key=value`` (or ``--key value``) becomes a config
option for every run, its value parsed as YAML (``--epochs=5 --hidden_size=8``), as in
``run_recbole_lea.py``.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from collections.abc import Callable

from recbole_lea.errors import ConfigError
from recbole_lea.options import command_parser, parse_command

# ---------------------------------------------------------------------------------------------
# run_hyper_lea.py


HYPER_HELP = (
    "Ray Tune sweep over a RecBole params file. Trials report VALIDATION metrics every epoch; the best "
    "trial's TEST metrics are read once at the end. Any other --key=value is a config option for every trial."
)
COMPARE_HELP = (
    "Run models over seeds and write a Table-2-like comparison (Markdown + CSV). Model specs: Name or "
    "Name:key=value,key=value. Finished runs are read back from their JSON files. Any other --key=value is a "
    "config option for every run."
)


def hyper_parser() -> argparse.ArgumentParser:
    from recbole_lea.experiments.tune import SweepOptions

    return command_parser(SweepOptions, "run_hyper_lea.py", HYPER_HELP)


def exits_2_on_bad_input(main: Callable[[list[str] | None], int]) -> Callable[[list[str] | None], int]:
    """Bad input (:class:`~recbole_lea.errors.ConfigError`: an option, a file, a stored record)
    ends a command with its one message and exit status 2, not a traceback."""

    @functools.wraps(main)
    def wrapped(argv: list[str] | None = None) -> int:
        try:
            return main(argv)
        except ConfigError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2

    return wrapped


@exits_2_on_bad_input
def hyper_main(argv: list[str] | None = None) -> int:
    from recbole_lea.experiments.tune import SweepOptions, run_sweep

    options, overrides = parse_command(SweepOptions, hyper_parser(), argv)
    summary = run_sweep(options, config_dict=overrides)
    print(
        f"\n{summary['n_trials']} trials: {summary['n_ok']} finished, {summary['n_error']} failed, "
        f"{summary['n_stopped_early']} stopped early; wall time {summary['wall_time_s']:.1f}s"
    )
    print(f"trials: {summary['trials_csv']}")
    if summary.get("best_params") is not None:
        print(f"best params (validation {summary['best_valid_score']:.4f}): {summary['best_params']}")
        print(f"best trial TEST result: {json.dumps(summary.get('best_test_result'))}")
    else:
        print("no trial finished")
    if summary.get("heatmap_png"):
        print(f"heatmap: {summary['heatmap_png']}")
    return 0 if summary.get("best_params") is not None else 1


# ---------------------------------------------------------------------------------------------
# run_compare_lea.py


def compare_parser() -> argparse.ArgumentParser:
    from recbole_lea.experiments.compare import CompareOptions

    return command_parser(CompareOptions, "run_compare_lea.py", COMPARE_HELP)


@exits_2_on_bad_input
def compare_main(argv: list[str] | None = None) -> int:
    from recbole_lea.experiments.compare import CompareOptions, run_comparison

    parser = compare_parser()
    options, overrides = parse_command(CompareOptions, parser, argv)
    try:
        options.seed_values()
    except ConfigError as e:
        parser.error(str(e))  # usage + message, exit status 2, no traceback
    out = run_comparison(options, config_dict=overrides)
    print(out["markdown"])
    cached = sum(bool(r.get("cached")) for r in out["runs"])
    print(f"{len(out['runs'])} runs ({cached} read from cache); tables in {out['output_dir']}")
    failed = sum(r.get("status") != "ok" for r in out["runs"])
    return 1 if failed else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(compare_main())
