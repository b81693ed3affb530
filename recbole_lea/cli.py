"""Command line of ``run_recbole_lea.py`` (and ``python -m recbole_lea``).

``--model`` and ``--dataset`` pick what runs; ``--config_files`` adds yaml files; every other
``--key=value`` (or ``--key value``) becomes a RecBole/recbole_lea option, its value parsed as
YAML with RecBole's number rule (``--epochs=5``, ``--w_ah=0.1``, ``--topk=[5,10]``).
``--help-options`` lists every option the run would read. Errors about bad input end the
program with one message and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def parse_overrides(tokens: list[str]) -> dict[str, Any]:
    """``['--epochs=5', '--backbone', 'GRU4Rec']`` -> ``{'epochs': 5, 'backbone': 'GRU4Rec'}``."""
    from recbole_lea.options import parse_value

    out: dict[str, Any] = {}
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if not tok.startswith("--") or tok == "--":
            raise SystemExit(f"error: unexpected argument {tok!r}; options look like --key=value.")
        key, eq, value = tok[2:].partition("=")
        if not eq:
            if i + 1 < len(tokens) and not tokens[i + 1].startswith("--"):
                value = tokens[i + 1]
                i += 1
            else:
                value = "true"
        key = key.replace("-", "_")
        out[key] = parse_value(value) if value != "" else None
        i += 1
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="run_recbole_lea.py",
        description="Train and evaluate a recommender (SNQN, SA2C, SNQN_LEA, SA2C_LEA or any RecBole "
        "model) on an atomic dataset. Any other --key=value is a config option: --help-options lists "
        "every option the run reads, with its value and help.",
    )
    p.add_argument("--model", "-m", default="SA2C_LEA", help="model name (ours or RecBole's)")
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
    p.add_argument("--no-save", dest="saved", action="store_false", help="do not write checkpoints")
    p.add_argument("--json", dest="json_out", default=None, help="also write the run result to this JSON file")
    return p


def main(argv: list[str] | None = None) -> int:
    args, rest = build_parser().parse_known_args(argv)
    overrides = parse_overrides(rest)
    from recbole_lea.errors import ConfigError
    from recbole_lea.quick_start import describe_options, ensure_le, resolve_run, run_recbole_lea

    try:
        if args.help_options:
            print(describe_options(resolve_run(args.model, args.dataset, args.config_files, overrides)))
            return 0
        if args.build_le:
            model = args.model if args.model.endswith("_LEA") else "SA2C_LEA"
            path = ensure_le(resolve_run(model, args.dataset, args.config_files, overrides))
            print(f"LE atomic files ready in {path}")
            return 0
        result = run_recbole_lea(args.model, args.dataset, args.config_files, overrides, saved=args.saved)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print_result(result)
    if args.json_out:
        with open(args.json_out, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2, default=str)
    return 0


def print_result(result: dict[str, Any]) -> None:
    test = result["test_result"]
    valid = result["best_valid_result"]
    keys = list(test)
    width = max(len(k) for k in keys) if keys else 10
    print(f"\n{result['model']} on {result['dataset']}")
    print(f"{'metric':<{width}}  {'valid':>8}  {'test':>8}")
    for k in keys:
        print(f"{k:<{width}}  {valid.get(k, float('nan')):>8.4f}  {test[k]:>8.4f}")
    if result.get("model_file"):
        print(f"model saved to {result['model_file']}")
    if result.get("le_dir"):
        print(f"LE files read from {result['le_dir']}")
