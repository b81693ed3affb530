"""python -m recbole_lea.le build --dataset ml-100k --profile cpu [--key value ...]
python -m recbole_lea.le check --dataset ml-100k"""

from __future__ import annotations

import argparse
import logging
import sys

from recbole_lea import LOG_FORMAT
from recbole_lea.errors import ConfigError

from .build import build_le, check_le_dataset
from .config import LEConfig


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m recbole_lea.le", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("command", choices=["build", "check", "options"])
    ap.add_argument("--dataset", default="ml-100k")
    ap.add_argument("--data_path", default="atomic_datasets")
    ap.add_argument("--profile", default="cpu", help="cpu | paper | path to a yaml")
    args, rest = ap.parse_known_args(argv)
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    if args.command == "options":
        for k, v in LEConfig.help().items():
            print(f"--{k}: {v}")
        return 0
    overrides: dict[str, str] = {}
    i = 0
    while i < len(rest):
        tok = rest[i]
        if not tok.startswith("--"):
            ap.error(f"unexpected argument {tok!r}; options are --key value")
        if "=" in tok:
            k, v = tok[2:].split("=", 1)
            i += 1
        else:
            if i + 1 >= len(rest):
                ap.error(f"option {tok} needs a value")
            k, v = tok[2:], rest[i + 1]
            i += 2
        overrides[k] = v
    try:
        if args.command == "check":
            check_le_dataset(args.data_path, args.dataset, args.profile if overrides else None, overrides or None)
            print(f"{args.dataset}-lea is up to date")
            return 0
        out = build_le(args.dataset, args.data_path, args.profile, overrides)
    except ConfigError as e:  # LEInputError included: one message naming the thing and the fix
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
