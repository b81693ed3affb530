"""A generic pair of CSV/TSV files (header row required, gzip or plain) to atomic files.

Interactions: a user column, an item column and the time: one column (numbers, or dates with
``--time-format``), several (``--time-col year,month,day``), RecBole's ``timestamp`` column when
none is named, or none at all: then each row's file position is its timestamp, so sequences keep
their file order (with a warning). Items: an id column and any text columns.

The separator is the one the header uses (tab, comma or semicolon) unless ``--sep`` says; tab
files are split without quoting, the others parsed with CSV quotes. RecBole's own atomic files
(``user_id:token`` headers, tab-separated) are read as they are: the ``:type`` suffixes are
stripped from the column names, and an items file's ``token`` columns stay ``token``.
"""

from __future__ import annotations

import csv
import io
import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np

from recbole_lea.datasets.common import BadLines, DatasetError, EventBuffer, Events, Progress, open_binary
from recbole_lea.datasets.options import ConvertOptions
from recbole_lea.datasets.validate import RECBOLE_TYPES
from recbole_lea.datasets.writer import (
    DEFAULT_VERB,
    ConversionReport,
    DatasetSpec,
    TextField,
    default_template,
    finalize_events,
    write_dataset,
)

_TAB_EXT = (".tsv", ".tab", ".txt", ".inter", ".item")
#: separators found by looking at the header (when --sep is not given), with their names
_CANDIDATES = {"\t": "tab", ",": "comma", ";": "semicolon"}
_SEP_NAMES = {"tab": "\t", "\\t": "\t", "comma": ",", "semicolon": ";", "pipe": "|", "space": " "}
_SAMPLE = 1 << 16  # bytes looked at to tell the separator
#: at most this many --time-col columns without --time-format: year, month, day, hour, minute, second
_DATE_PARTS = ("year", "month", "day", "hour", "minute", "second")
#: the time column used when --time-col is not given (RecBole's own name for it)
AUTO_TIME_COL = "timestamp"
NO_TIME_WARNING = (
    "no time column, so each sequence is in file order (rows get their file position as timestamp); "
    "pass --time-col COLUMN (or several: --time-col year,month,day) if the file has times"
)


def parse_sep(sep: str, option: str = "--sep") -> str:
    """``--sep``: one character, or ``tab``/``\\t``, ``comma``, ``semicolon``, ``pipe``, ``space``."""
    value = _SEP_NAMES.get(sep.lower(), sep) if len(sep) > 1 else sep
    if len(value) != 1 or value in '\r\n"':
        raise DatasetError(f"{option} {sep!r} must be one character, or tab, comma, semicolon, pipe or space")
    return value


def _is_tab_file(path: str) -> bool:
    return re.sub(r"\.gz$", "", path.lower()).endswith(_TAB_EXT)


def _quoting(sep: str) -> int:
    """TSV (and RecBole atomic files) are split on tabs without quoting; other separators use CSV quotes."""
    return csv.QUOTE_NONE if sep == "\t" else csv.QUOTE_MINIMAL


def _sample(path: str, what: str, option: str) -> tuple[str, bool]:
    """The first complete lines of ``path`` (up to 64 KiB) and whether the file goes on."""
    with open_binary(path, what, option) as fh:
        data = fh.read(_SAMPLE + 1)
    more = len(data) > _SAMPLE
    if more:
        data = data[: data.rfind(b"\n", 0, _SAMPLE) + 1] or data[:_SAMPLE]
    return data.decode("utf-8", "replace"), more


def _records(text: str, sep: str) -> list[list[str]]:
    try:
        rows = list(csv.reader(io.StringIO(text), delimiter=sep, quoting=_quoting(sep)))
    except csv.Error:
        return []
    return [r for r in rows if r and not (len(r) == 1 and not r[0].strip())]


def detect_sep(path: str, sep: str | None, what: str, option: str, sep_option: str = "--sep") -> str:
    """``sep`` (``sep_option``'s value) when given; else the separator the header uses (tab, comma
    or semicolon). When the header has several, the one that splits the first lines (64 KiB) into
    equal column counts wins, then the file extension's (``.tsv``/``.inter``/... tab, ``.csv``
    comma); otherwise the error names ``sep_option``."""
    if sep:
        return parse_sep(sep, sep_option)
    text, more = _sample(path, what, option)
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise DatasetError(f"{path}: empty file (a header row naming the columns is required)")
    header = lines[0].lstrip("\ufeff")
    found = [c for c in _CANDIDATES if c in header]
    if not found:
        raise DatasetError(
            f"{path}: cannot tell the column separator: the header {header[:80]!r} has no tab, comma or "
            f"semicolon; pass {sep_option} (e.g. {sep_option} '|')"
        )
    if len(found) == 1:
        return found[0]
    even = []
    for c in found:
        rows = _records(text, c)
        if more and len(rows) > 1:
            rows = rows[:-1]  # the sample may cut the last record
        if rows and len(rows[0]) > 1 and all(len(r) == len(rows[0]) for r in rows):
            even.append(c)
    if len(even) == 1:
        return even[0]
    pool = even or found
    by_extension = "\t" if _is_tab_file(path) else "," if re.search(r"\.csv(\.gz)?$", path.lower()) else None
    if by_extension in pool:
        return by_extension
    names = " and ".join(_CANDIDATES[c] for c in pool)
    verdict = "each splits its first lines evenly" if even else "none splits its first lines evenly"
    raise DatasetError(
        f"{path}: cannot tell the column separator: the header has {names} and {verdict}; "
        f"pass {sep_option} ({' or '.join(f'{sep_option} {_CANDIDATES[c]}' for c in pool)})"
    )


def split_type(column: str) -> tuple[str, str | None]:
    """``"title:token_seq" -> ("title", "token_seq")`` for RecBole's typed headers; other names as they are."""
    name, colon, typ = column.strip().rpartition(":")
    if colon and name and ":" not in name and typ in RECBOLE_TYPES:
        return name.strip(), typ
    return column.strip(), None


@dataclass
class Header:
    """A header row: column positions by name (RecBole types stripped) and the declared types."""

    path: str
    index: dict[str, int]
    types: dict[str, str | None]
    sep: str
    sep_option: str

    def need(self, names: Sequence[str], option: str) -> list[int]:
        """Positions of ``names`` (typed names accepted); the error names ``option`` and, when the
        header reads as one column holding another separator, ``sep_option``."""
        wanted = [split_type(n)[0] for n in names]
        missing = [n for n in wanted if n not in self.index]
        if missing:
            if len(self.index) == 1:
                only = next(iter(self.index))
                other = [c for c in (*_CANDIDATES, "|") if c in only and c != self.sep]
                if other:  # the separator is wrong, not the column names
                    raise DatasetError(
                        f"{self.path}: no column {missing}: with separator {self.sep!r} the header reads as one "
                        f"column {only[:60]!r}; pass {self.sep_option} {_CANDIDATES.get(other[0], repr(other[0]))}"
                    )
            raise DatasetError(f"{self.path}: no column {missing} (columns: {list(self.index)}); set {option}")
        return [self.index[n] for n in wanted]


def _physical_lines(path: str, what: str, option: str, bad: BadLines) -> Iterator[str]:
    """Decoded lines, one per physical line (undecodable ones become empty and are counted)."""
    with open_binary(path, what, option) as fh:
        for number, raw in enumerate(fh, start=1):
            try:
                yield raw.decode("utf-8")
            except UnicodeDecodeError:
                bad.add(number, "not UTF-8")
                yield "\n"


def iter_rows(
    path: str,
    sep: str,
    bad: BadLines,
    what: str,
    option: str,
    sep_option: str = "--sep",
    on_header: Callable[[Header], None] | None = None,
) -> Iterator[tuple[int, Header, list[str]]]:
    """Yield ``(line_number, header, row)`` for well-formed rows; others are counted bad.
    ``on_header`` sees the header first (so a header-only file still gets its columns checked)."""
    reader = csv.reader(_physical_lines(path, what, option, bad), delimiter=sep, quoting=_quoting(sep))
    header: Header | None = None
    width = 0
    try:
        for row in reader:
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            number = reader.line_num
            bad.lines_read = number
            if header is None:
                header = _header(path, row, sep, sep_option)
                width = len(row)
                if on_header is not None:
                    on_header(header)
                continue
            if len(row) != width:
                bad.add(number, f"{len(row)} columns, expected {width}")
                continue
            yield number, header, row
    except csv.Error as exc:
        raise DatasetError(f"{path}: line {reader.line_num}: {exc}; fix the quoting or pass {sep_option}") from None
    if header is None:
        raise DatasetError(f"{path}: empty file (a header row naming the columns is required)")


def _header(path: str, row: list[str], sep: str, sep_option: str) -> Header:
    index: dict[str, int] = {}
    types: dict[str, str | None] = {}
    for i, cell in enumerate(row):
        name, typ = split_type(cell.lstrip("\ufeff"))
        if name in index:
            raise DatasetError(
                f"{path}: line 1: columns {index[name] + 1} and {i + 1} are both named {name!r}; rename one"
            )
        index[name] = i
        types[name] = typ
    return Header(path, index, types, sep, sep_option)


def time_columns(time_col: str | Sequence[str] | None, time_format: str | None) -> list[str] | None:
    """``--time-col``: ``None`` = not given (the ``timestamp`` column when the file has one, else
    file order); ``"none"`` = file order; ``"ts"`` one column; ``"year,month,day"`` several."""
    if time_col is None:
        return None
    raw = time_col.split(",") if isinstance(time_col, str) else list(time_col)
    cols = [split_type(c)[0] for c in raw if c.strip()]
    if [c.lower() for c in cols] in ([], ["none"]):
        return []
    if len(set(cols)) != len(cols):
        raise DatasetError(f"--time-col {','.join(cols)} names a column twice")
    if len(cols) > len(_DATE_PARTS) and not time_format:
        raise DatasetError(
            f"--time-col {','.join(cols)}: without --time-format at most {len(_DATE_PARTS)} columns are read, as "
            f"{', '.join(_DATE_PARTS)}; give --time-format for their values joined with spaces"
        )
    return cols


def time_parser(cols: Sequence[str], time_format: str | None) -> tuple[Callable[[list[str]], float], str]:
    """A function from the time columns' values to unix seconds (raising ``ValueError``) and what it
    expects, for the bad-line reason. One column: a number, or ``strptime(value, time_format)``.
    Several: ``strptime`` of the values joined with single spaces, or without a format whole numbers
    read in order as year, month, day, hour, minute, second (two columns: year and month, day 1).
    Dates without a zone are UTC."""

    def moment(value: datetime) -> float:
        return (value if value.tzinfo else value.replace(tzinfo=timezone.utc)).timestamp()

    if len(cols) == 1 and not time_format:

        def number(values: list[str]) -> float:
            t = float(values[0])
            if t != t or t in (float("inf"), float("-inf")):
                raise ValueError
            return t

        return number, "a number (or set --time-format)"
    if time_format:
        fmt = time_format

        def formatted(values: list[str]) -> float:
            return moment(datetime.strptime(" ".join(v.strip() for v in values), fmt))

        joined = " (the columns' values joined with spaces)" if len(cols) > 1 else ""
        return formatted, f"format {time_format!r}{joined}"
    parts = _DATE_PARTS[: len(cols)]

    def numbers(values: list[str]) -> float:
        ints = [int(v) for v in values]
        if len(ints) == 2:
            ints.append(1)
        return moment(datetime(*ints))

    return numbers, f"whole numbers {', '.join(parts)} (or set --time-format)"


def convert_csv(
    inter: str,
    items: str | None,
    name: str,
    opts: ConvertOptions | None = None,
    *,
    user_col: str = "user_id",
    item_col: str = "item_id",
    time_col: str | Sequence[str] | None = None,
    item_id_col: str | None = None,
    text_cols: Sequence[str] | None = None,
    token_cols: Sequence[str] = (),
    sep: str | None = None,
    items_sep: str | None = None,
    time_format: str | None = None,
    noun: str = "item",
    template: str | None = None,
) -> ConversionReport:
    """Convert a generic interactions file (+ items file); returns the report.

    ``time_col``: see :func:`time_columns` (``None``: the ``timestamp`` column if there is one, else
    file order with a warning). RecBole atomic files (``name:type`` headers) are read as they are:
    types are stripped from the names, and an items file's ``token`` columns stay ``token``.
    """
    opts = opts or ConvertOptions()
    _validate_early(name, text_cols, template, noun, opts)
    tcols = time_columns(time_col, time_format)
    report = ConversionReport(name=name, command="csv")
    buf, tcols = _read_interactions(
        inter, sep, opts, report, tcols, time_col, time_format, user_col=user_col, item_col=item_col
    )
    ev = finalize_events(
        buf.freeze(), report, min_inter=opts.min_inter, drop_duplicates=opts.drop_duplicates, sessions=opts.sessions
    )

    texts: dict[int, list[object]] = {}
    fields: list[str] = [split_type(f)[0] for f in text_cols] if text_cols else []
    kinds: dict[str, str | None] = {}
    if items:
        texts, fields, kinds = _read_items(
            items, ev, buf, opts, report, fields, sep=sep, items_sep=items_sep, id_col=item_id_col or item_col
        )
    elif not fields:
        report.notes.append("no items file: the .item file has ids only")
    spec = _dataset_spec(name, fields, kinds, token_cols, tcols, template, noun, opts)
    spec.validate()
    write_dataset(ev, texts, spec, opts.out, report, yaml_out=opts.yaml_out, max_words=opts.max_words)
    return report


def _validate_early(
    name: str, text_cols: Sequence[str] | None, template: str | None, noun: str, opts: ConvertOptions
) -> None:
    """Fail on a bad name, noun, verb or template before reading a big file."""
    early = [_field_name(split_type(f)[0]) for f in text_cols or ()]
    DatasetSpec(
        name=name,
        text_fields=[TextField(f) for f in early],
        template=template if template and text_cols else "[item]",
        noun=noun,
        command="csv",
        verb=opts.verb or DEFAULT_VERB,
    ).validate()


def _settle_time_columns(
    header: Header,
    tcols: list[str] | None,
    time_col: str | Sequence[str] | None,
    inter: str,
    opts: ConvertOptions,
    report: ConversionReport,
) -> list[str]:
    """The time columns once the header is known: ``timestamp`` when none was named and the file
    has it; a session option without any time column is an error."""
    if tcols is None:
        tcols = [AUTO_TIME_COL] if AUTO_TIME_COL in header.index else []
        if tcols:
            report.notes.append(f"time column {AUTO_TIME_COL!r} found and used (--time-col none keeps file order)")
    if opts.sessions is not None and not tcols:
        said = "--time-col none" if time_col is not None else f"it has no column {AUTO_TIME_COL!r}"
        raise opts.sessions.needs_time(
            f"{inter} is read without a time column ({said})",
            "pass --time-col COLUMN (or several: --time-col year,month,day), or drop the session option",
        )
    return tcols


def _read_interactions(
    inter: str,
    sep: str | None,
    opts: ConvertOptions,
    report: ConversionReport,
    tcols: list[str] | None,
    time_col: str | Sequence[str] | None,
    time_format: str | None,
    *,
    user_col: str,
    item_col: str,
) -> tuple[EventBuffer, list[str]]:
    """Stream the interactions file into an event buffer (bad rows counted, the file reported);
    returns the buffer and the time columns used (empty: file order, with a warning)."""
    isep = detect_sep(inter, sep, "interactions file", "--inter")
    bad = opts.bad_lines(inter)
    buf = EventBuffer(inter)
    position = 0
    cols: list[int] = []
    parse_time: Callable[[list[str]], float] | None = None
    expected = ""

    def columns(header: Header) -> None:
        nonlocal tcols, cols, parse_time, expected
        tcols = _settle_time_columns(header, tcols, time_col, inter, opts, report)
        cols = header.need([user_col, item_col, *tcols], "--user-col/--item-col/--time-col")
        if tcols:
            parse_time, expected = time_parser(tcols, time_format)

    with Progress("interactions", opts.progress) as bar:
        for number, _header, row in iter_rows(inter, isep, bad, "interactions file", "--inter", on_header=columns):
            bar.tick()
            user, item = row[cols[0]].strip(), row[cols[1]].strip()
            if not user or not item:
                bad.add(number, "empty user or item id")
                continue
            if parse_time is not None:
                t = _row_time(row, number, cols[2:], parse_time, tcols or [], expected, bad)
                if t is None:
                    continue
            else:
                t = float(position)
            position += 1
            buf.add(user, item, t, number)
    report.add_file("interactions", bad)
    bad.check()
    if not position and not bad.count:
        raise DatasetError(f"{inter}: no interaction rows under the header (pass the right file with --inter)")
    tcols = tcols or []
    if not tcols:
        report.warn(NO_TIME_WARNING)
    return buf, tcols


def _row_time(
    row: list[str],
    number: int,
    positions: list[int],
    parse_time: Callable[[list[str]], float],
    tcols: list[str],
    expected: str,
    bad: BadLines,
) -> float | None:
    """The row's time from its time columns, or ``None`` (the line counted bad) when it does not parse."""
    values = [row[j].strip() for j in positions]
    try:
        return parse_time(values)
    except (ValueError, OverflowError):
        shown = " ".join(values)[:30]
        bad.add(number, f"time {shown!r} ({','.join(tcols)}) is not {expected}")
        return None


def _read_items(
    items: str,
    ev: Events,
    buf: EventBuffer,
    opts: ConvertOptions,
    report: ConversionReport,
    fields: list[str],
    *,
    sep: str | None,
    items_sep: str | None,
    id_col: str,
) -> tuple[dict[int, list[object]], list[str], dict[str, str | None]]:
    """The text of every kept item from the items file (the first row of a repeated id); returns
    ``code -> values``, the text columns (all but the id when none were named) and their types."""
    jsep = detect_sep(
        items, items_sep or sep, "items file", "--items", "--items-sep" if items_sep or not sep else "--sep"
    )
    ibad = opts.bad_lines(items)
    id_name = split_type(id_col)[0]
    wanted_items = np.zeros(len(ev.item_tokens), dtype=bool)
    wanted_items[ev.items] = True
    texts: dict[int, list[object]] = {}
    kinds: dict[str, str | None] = {}
    idx: list[int] = []
    dup = 0

    def item_columns(header: Header) -> None:
        nonlocal fields, idx, kinds
        if not fields:
            fields = [h for h in header.index if h != id_name]
        idx = header.need([id_name, *fields], "--item-id-col/--text-cols")
        kinds = header.types

    with Progress("items", opts.progress) as bar:
        for _number, _header, row in iter_rows(
            items, jsep, ibad, "items file", "--items", "--items-sep", on_header=item_columns
        ):
            bar.tick()
            code = buf.items_map.get(row[idx[0]].strip())
            if code is None or not wanted_items[code]:
                continue
            if code in texts:
                dup += 1
                continue
            texts[code] = [row[j] for j in idx[1:]]
    report.add_file("items", ibad)
    ibad.check()
    report.set("item_rows_repeating_an_id", dup)
    if dup:
        report.notes.append(f"{dup} item rows repeat an id already read; the first row was used")
    return texts, fields, kinds


def _dataset_spec(
    name: str,
    fields: list[str],
    kinds: dict[str, str | None],
    token_cols: Sequence[str],
    tcols: list[str],
    template: str | None,
    noun: str,
    opts: ConvertOptions,
) -> DatasetSpec:
    """The dataset's spec: one text field per column (``token`` for ``--token-cols`` and columns
    typed ``token``/``float``, else ``token_seq``); unknown ``--token-cols`` are an error."""
    token_set = {split_type(c)[0] for c in token_cols}
    unknown = sorted(token_set - set(fields))
    if unknown:
        raise DatasetError(f"--token-cols {unknown} are not text columns {fields}")

    def kind(column: str) -> str:
        if column in token_set or kinds.get(column) in ("token", "float"):
            return "token"
        return "token_seq"

    names = [_field_name(f) for f in fields]
    return DatasetSpec(
        name=name,
        text_fields=[TextField(n, kind(f)) for n, f in zip(names, fields)],
        template=template or default_template(noun, names),
        noun=noun,
        command="csv",
        verb=opts.verb or DEFAULT_VERB,
        time_comment=(
            f"orders each sequence (column{'s' if len(tcols) > 1 else ''} {','.join(tcols)})"
            if tcols
            else "file position (no time column): sequences keep file order"
        ),
    )


def _field_name(column: str) -> str:
    """A column name usable as a RecBole field (letters, digits, '_')."""
    name = re.sub(r"[^A-Za-z0-9_]+", "_", column.strip()).strip("_") or "text"
    if name[0].isdigit():
        name = "f_" + name
    if name in ("user_id", "item_id", "timestamp"):
        name = "item_" + name
    return name


def default_name(path: str) -> str:
    stem = os.path.basename(path)
    stem = re.sub(r"(\.gz)?$", "", stem)
    stem = re.sub(r"\.[A-Za-z]+$", "", stem)
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", stem).strip("-") or "dataset"
