"""Command line of ``run_recbole_lea.py`` (also ``python -m recbole_lea`` and the installed
``run_recbole_lea`` script).

``--model`` and ``--dataset`` pick what runs; ``--config_files`` adds yaml files; every other
``--key=value`` (or ``--key value``) becomes a RecBole/recbole_lea option, its value parsed as
YAML with RecBole's number rule (``--epochs=5``, ``--w_ah=0.1``, ``--topk=[5,10]``).
``--help-options`` lists every option the run would read. Options are checked before torch or
RecBole is imported, so bad input ends the program within a second with one message and exit
code 2, never a traceback. A run ends with a short summary: what ran, the metrics, where its
files are and how long each part took.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from recbole_lea.options import parse_overrides

#: the options people change most, shown by --help (every option: --help-options)
COMMON_OPTIONS = (
    ("backbone", "SASRec | GRU4Rec (our RL models)"),
    ("variant", "LEASR (default), LER, LES, LES', LEA, LEAR, LEAS, LEAS'R, sv, q, sv+q, none (*_LEA models)"),
    ("epochs", "maximum training epochs (default 30, early stopping after 5 epochs without progress)"),
    ("seed", "the run's seed (model initialisation and batches)"),
    ("eval_protocol", "loo (leave-one-out, default) | sequence (the paper's: whole sequences held out)"),
    ("le_profile", "cpu (default) | paper | a profile yaml: how the LE is built"),
    ("le_model", "smollm2 (default) | gemma3-270m | a local Hugging Face folder (e.g. Mistral-7B)"),
    ("w_ah / w_aq", "weights of the augmented losses L_ah / L_aq (paper: 0.1 / 0.01)"),
    ("data_path", "the folder holding <dataset>/<dataset>.inter (default atomic_datasets/)"),
)


def build_parser() -> argparse.ArgumentParser:
    epilog = "frequent options (any other --key=value works too):\n" + "\n".join(
        f"  --{name:<16} {text}" for name, text in COMMON_OPTIONS
    )
    epilog += "\n\n--help-options lists every option a run reads, with its value, where it was set and its help."
    p = argparse.ArgumentParser(
        prog="run_recbole_lea.py",
        description="Train and evaluate a recommender (SNQN, SA2C, SNQN_LEA, SA2C_LEA or any RecBole "
        "model) on an atomic dataset.",
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", "-m", default="SA2C_LEA", help="model name (ours or RecBole's; --list-models)")
    p.add_argument("--dataset", "-d", default="ml-100k", help="dataset name under data_path")
    p.add_argument("--config_files", nargs="*", default=[], help="extra yaml config files")
    p.add_argument(
        "--build-le",
        "--build_le",
        dest="build_le",
        action="store_true",
        help="only build (or reuse) the LE atomic files of --dataset, then exit",
    )
    p.add_argument(
        "--help-options",
        "--help_options",
        dest="help_options",
        action="store_true",
        help="print every option this run reads (value in force, where it was set, help), then exit",
    )
    p.add_argument("--list-models", dest="list_models", action="store_true", help="list every model name, then exit")
    p.add_argument("--no-save", dest="saved", action="store_false", help="do not write checkpoints")
    p.add_argument("--json", dest="json_out", default=None, help="also write the run result to this JSON file")
    return p


def main(argv: list[str] | None = None) -> int:
    args, rest = build_parser().parse_known_args(argv)
    from recbole_lea import registry
    from recbole_lea.errors import ConfigError
    from recbole_lea.run_config import describe_options, resolve_run

    if args.list_models:
        print("ours:    " + " ".join(sorted(registry.PLUGIN_MODELS)))
        print("RecBole: " + " ".join(sorted(registry.recbole_model_names())))
        return 0
    try:
        overrides = parse_overrides(rest)
        model = args.model
        if args.build_le and not model.endswith("_LEA"):
            model = "SA2C_LEA"
        resolved = resolve_run(model, args.dataset, args.config_files, overrides)  # light: no torch yet
        if args.help_options:
            print(describe_options(resolved))
            return 0
        if not (resolved.lea and resolved.run.le_dir):  # a bad .inter line is answered before torch loads
            from recbole_lea.datasets.validate import check_run_inter

            check_run_inter(resolved.dataset, resolved.data_path, resolved.options)
        from recbole_lea.quick_start import ensure_le, run_resolved

        if args.build_le:
            print(f"LE atomic files ready in {ensure_le(resolved)}")
            return 0
        result = run_resolved(resolved, saved=args.saved)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print_result(result)
    if args.json_out:
        with open(args.json_out, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2, default=str)
    return 0


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 90 else f"{seconds:.0f} s"


def print_result(result: dict[str, Any]) -> None:
    """The end of a run: what ran, the metric table, where its files are, how long each part took."""
    test = result["test_result"]
    valid = result["best_valid_result"]
    config = result.get("config") or {}
    what = [result["model"]]
    details = []
    if config.get("variant") and str(result["model"]).endswith("_LEA"):
        details.append(f"variant {config['variant']}")
    if (
        config.get("backbone")
        and "backbone" in config
        and str(result["model"]) in ("SNQN", "SA2C", "SNQN_LEA", "SA2C_LEA")
    ):
        details.append(f"backbone {config['backbone']}")
    if details:
        what.append(f"({', '.join(details)})")
    protocol = "sequence split" if config.get("eval_protocol") == "sequence" else "leave-one-out"
    queries = result.get("n_queries") or {}
    print(f"\n{' '.join(what)} on {result['dataset']}, {protocol}, {queries.get('test', '?')} test queries")
    keys = list(test)
    width = max((len(k) for k in keys), default=10)
    print(f"  {'metric':<{width}}  {'valid':>8}  {'test':>8}")
    for k in keys:
        print(f"  {k:<{width}}  {valid.get(k, float('nan')):>8.4f}  {test[k]:>8.4f}")
    for label, key in (("checkpoint", "model_file"), ("log", "log_file"), ("LE files", "le_dir")):
        if result.get(key):
            print(f"  {label + ':':<12}{result[key]}")
    times = result.get("times_s") or {}
    if times:
        parts = []
        if "le" in times:
            parts.append(f"LE {_minutes(times['le'])} ({'built' if result.get('le_built') else 'reused'})")
        epochs = len(result.get("epoch_times") or [])
        for name, key in (("data", "data"), (f"training ({epochs} epochs)", "train"), ("test", "test")):
            if key in times:
                parts.append(f"{name} {_minutes(times[key])}")
        parts.append(f"total {_minutes(times.get('total', 0.0))}")
        print(f"  {'time:':<12}" + ", ".join(parts))
    switch = result.get("sa2c_switch")
    if switch and not switch.get("reached"):
        print(
            f"  note:       SA2C never reached its advantage phase (switch at step {switch['switch_step']}): SNQN's update"
        )
