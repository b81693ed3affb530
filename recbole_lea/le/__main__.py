"""python -m recbole_lea.le build --dataset ml-100k --profile cpu [--key value ...]
python -m recbole_lea.le check --dataset ml-100k [--profile cpu] [--key value ...]
python -m recbole_lea.le options [--dataset ml-100k --profile cpu]

Several processes (one per GPU, or CPU processes with --le_device cpu) split the build:
accelerate launch --multi_gpu --num_processes N -m recbole_lea.le build --dataset D --profile paper ...
torchrun --nproc_per_node N -m recbole_lea.le build --dataset D ..."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from recbole_lea import LOG_DATEFMT, LOG_FORMAT
from recbole_lea.errors import ConfigError


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m recbole_lea.le", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("command", choices=["build", "check", "options"])
    ap.add_argument("--dataset", default="ml-100k")
    ap.add_argument("--data_path", default="atomic_datasets")
    ap.add_argument("--profile", default="cpu", help="cpu | paper | path to a yaml")
    args, rest = ap.parse_known_args(argv)
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT, datefmt=LOG_DATEFMT)
    from recbole_lea.options import parse_overrides

    try:
        overrides = parse_overrides(rest)
    except SystemExit as e:
        ap.error(str(e).removeprefix("error: "))
    from recbole_lea.compat import quiet_third_party_warnings

    quiet_third_party_warnings()
    from recbole_lea.options import check_dataset_name

    from .build import build_le, check_le_dataset
    from .config import SPECS, resolve_config

    try:
        check_dataset_name(args.dataset)
        cfg = resolve_config(args.dataset, args.profile, overrides, args.data_path)
        if args.command == "options":
            print(f"LE build options (value for dataset {args.dataset!r}, profile {args.profile!r}; cache stages):")
            for name, spec in SPECS.items():
                stages = ", ".join(spec.stages) or "none (cannot change a result)"
                print(f"--{name} = {getattr(cfg, name)!r}  ({spec.type_name()}; stages: {stages})\n    {spec.help}")
            return 0
        if args.command == "check":
            path = check_le_dataset(args.data_path, args.dataset, args.profile, overrides)
            print(f"{path} is up to date and matches its manifest")
            return 0
        out = build_le(args.dataset, args.data_path, cfg=cfg)
    except ConfigError as e:  # LEInputError included: one message naming the thing and the fix
        if _main_process():  # the processes of a launched build stop together: one of them says why
            print(f"error: {e}", file=sys.stderr)
        return 2
    if _main_process():
        print(out)
    return 0


def _main_process() -> bool:
    """Process 0 of a launched multi-process build (or the only process)."""
    return os.environ.get("RANK", "0").strip() in ("", "0")


if __name__ == "__main__":
    sys.exit(main())
