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

from recbole_lea.cli import parse_overrides
from recbole_lea.errors import ConfigError

# ---------------------------------------------------------------------------------------------
# run_hyper_lea.py


def hyper_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="run_hyper_lea.py",
        description="Ray Tune sweep over a RecBole params file. Trials report VALIDATION metrics "
        "every epoch; the best trial's TEST metrics are read once at the end. Any other "
        "--key=value is a config option for every trial.",
    )
    p.add_argument("--model", "-m", default="SA2C_LEA")
    p.add_argument("--dataset", "-d", default="ml-100k")
    p.add_argument(
        "--params_file",
        required=True,
        help="RecBole params file (name type value): a path, or a shipped one by name (w_grid, w_grid_paper, ...)",
    )
    p.add_argument("--config_files", nargs="*", default=[], help="extra yaml config files")
    p.add_argument(
        "--search",
        choices=("grid", "random"),
        default="grid",
        help="grid: every `choice` is a tune.grid_search (default, like RecBole's exhaustive); "
        "random: `choice` is sampled (tune.choice)",
    )
    p.add_argument("--num_samples", type=int, default=1, help="samples (x the grid under --search grid)")
    p.add_argument("--cpus_per_trial", type=float, default=1)
    p.add_argument("--gpus_per_trial", type=float, default=0, help="fractions share a GPU (0.5)")
    p.add_argument("--max_concurrent", type=int, default=None, help="trials running at once")
    p.add_argument("--scheduler", choices=("asha", "fifo"), default="fifo")
    p.add_argument("--grace_period", type=int, default=1, help="ASHA: validations before a stop")
    p.add_argument("--address", default=None, help="join a Ray cluster: auto or ray://host:10001")
    p.add_argument("--num_cpus", type=int, default=None, help="local Ray only: CPUs Ray may use")
    p.add_argument("--output_dir", default=None, help="default results/tune/<model>-<dataset>")
    p.add_argument("--data_path", default=None, help="folder holding <dataset>/ (default atomic_datasets)")
    p.add_argument("--heatmap", nargs=2, default=["w_ah", "w_aq"], metavar=("X", "Y"))
    p.add_argument("--heatmap_metric", default="ndcg@10")
    p.add_argument("--quiet", action="store_true", help="less Ray output")
    return p


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
    args, rest = hyper_parser().parse_known_args(argv)
    overrides = parse_overrides(rest)
    from recbole_lea.experiments.tune import run_sweep

    summary = run_sweep(
        model=args.model,
        dataset=args.dataset,
        params_file=args.params_file,
        config_file_list=args.config_files,
        config_dict=overrides,
        output_dir=args.output_dir,
        search=args.search,
        num_samples=args.num_samples,
        cpus_per_trial=args.cpus_per_trial,
        gpus_per_trial=args.gpus_per_trial,
        max_concurrent=args.max_concurrent,
        scheduler=args.scheduler,
        grace_period=args.grace_period,
        address=args.address,
        num_cpus=args.num_cpus,
        data_path=args.data_path,
        heatmap=(args.heatmap[0], args.heatmap[1]),
        heatmap_metric=args.heatmap_metric,
        verbose=0 if args.quiet else 1,
    )
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
    p = argparse.ArgumentParser(
        prog="run_compare_lea.py",
        description="Run models over seeds and write a Table-2-like comparison (Markdown + CSV). "
        "Model specs: Name or Name:key=value,key=value. Finished runs are read back from "
        "their JSON files. Any other --key=value is a config option for every run.",
    )
    p.add_argument("--dataset", "-d", default="ml-100k")
    p.add_argument("--models", nargs="+", required=True)
    p.add_argument(
        "--seeds",
        nargs="+",
        type=int,
        default=[3],
        help="one number N: seeds base_seed..base_seed+N-1; several numbers: those seeds",
    )
    p.add_argument("--base_seed", type=int, default=2020)
    p.add_argument("--baseline", default=None, help="model spec the t-test compares against")
    p.add_argument("--alpha", type=float, default=0.01, help="significance level for `*`")
    p.add_argument("--config_files", nargs="*", default=[])
    p.add_argument("--output_dir", default=None, help="default results/compare/<dataset>")
    p.add_argument("--data_path", default=None)
    p.add_argument("--recompute", action="store_true", help="ignore cached run results")
    p.add_argument(
        "--stored",
        action="store_true",
        help="run nothing: table from the newest stored record of each model x seed with the same options, any code version",
    )
    p.add_argument("--threads", type=int, default=1, help="torch threads per run")
    return p


@exits_2_on_bad_input
def compare_main(argv: list[str] | None = None) -> int:
    parser = compare_parser()
    args, rest = parser.parse_known_args(argv)
    overrides = parse_overrides(rest)
    from recbole_lea.experiments.compare import run_comparison, seed_list

    try:
        seeds = seed_list(args.seeds[0], args.base_seed) if len(args.seeds) == 1 else args.seeds
    except ValueError as e:
        parser.error(str(e))  # usage + message, exit status 2, no traceback
    out = run_comparison(
        dataset=args.dataset,
        models=args.models,
        seeds=seeds,
        baseline=args.baseline,
        config_file_list=args.config_files,
        config_dict=overrides,
        output_dir=args.output_dir,
        data_path=args.data_path,
        alpha=args.alpha,
        torch_threads=args.threads,
        recompute=args.recompute,
        stored=args.stored,
    )
    print(out["markdown"])
    cached = sum(bool(r.get("cached")) for r in out["runs"])
    print(f"{len(out['runs'])} runs ({cached} read from cache); tables in {out['output_dir']}")
    failed = sum(r.get("status") != "ok" for r in out["runs"])
    return 1 if failed else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(compare_main())
