"""A generic pair of CSV/TSV files (header row required, gzip or plain) to atomic files.

Interactions: a user column, an item column and an optional time column (numbers, or dates with
``--time-format``); without a time column each row's file position is its timestamp, so sequences
keep their file order. Items: an id column and any text columns. ``.csv`` files are parsed with
CSV quoting; ``.tsv``/``.tab``/``.txt`` files are split on tabs without quoting.
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone

import numpy as np

from recbole_lea.datasets.common import (
    BadLines,
    ConvertOptions,
    DatasetError,
    EventBuffer,
    Progress,
    open_binary,
)
from recbole_lea.datasets.writer import (
    ConversionReport,
    DatasetSpec,
    TextField,
    default_template,
    finalize_events,
    write_dataset,
)

_TAB_EXT = (".tsv", ".tab", ".txt")


def guess_sep(path: str, sep: str | None) -> str:
    """``--sep`` (``tab``, ``\\t``, ``,``, ``;``, ...) or the file extension's separator."""
    if sep:
        return "\t" if sep in ("tab", "\\t", "\t", "TAB") else sep
    stem = re.sub(r"\.gz$", "", path.lower())
    return "\t" if stem.endswith(_TAB_EXT) else ","


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
    path: str, sep: str, bad: BadLines, what: str, option: str
) -> Iterator[tuple[int, dict[str, int], list[str]]]:
    """Yield ``(line_number, header_index, row)`` for well-formed rows; others are counted bad."""
    quoting = csv.QUOTE_NONE if sep == "\t" else csv.QUOTE_MINIMAL
    reader = csv.reader(_physical_lines(path, what, option, bad), delimiter=sep, quoting=quoting)
    header: dict[str, int] | None = None
    width = 0
    try:
        for row in reader:
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            number = reader.line_num
            bad.lines_read = number
            if header is None:
                names = [h.strip().lstrip("\ufeff") for h in row]
                header = {n: i for i, n in enumerate(names)}
                width = len(names)
                continue
            if len(row) != width:
                bad.add(number, f"{len(row)} columns, expected {width}")
                continue
            yield number, header, row
    except csv.Error as exc:
        raise DatasetError(f"{path}: line {reader.line_num}: {exc}; fix the quoting or pass --sep") from None
    if header is None:
        raise DatasetError(f"{path}: empty file (a header row naming the columns is required)")


def _need(header: dict[str, int], names: Sequence[str], path: str, option: str) -> list[int]:
    missing = [n for n in names if n not in header]
    if missing:
        raise DatasetError(f"{path}: no column {missing} (columns: {list(header)}); set {option}")
    return [header[n] for n in names]


def convert_csv(
    inter: str,
    items: str | None,
    name: str,
    opts: ConvertOptions | None = None,
    *,
    user_col: str = "user_id",
    item_col: str = "item_id",
    time_col: str | None = None,
    item_id_col: str | None = None,
    text_cols: Sequence[str] | None = None,
    token_cols: Sequence[str] = (),
    sep: str | None = None,
    items_sep: str | None = None,
    time_format: str | None = None,
    noun: str = "item",
    template: str | None = None,
) -> ConversionReport:
    """Convert a generic interactions file (+ items file); returns the report."""
    opts = opts or ConvertOptions()
    early = [_field_name(f) for f in text_cols or ()]
    DatasetSpec(  # fail on a bad name, noun or template before reading a big file
        name=name,
        text_fields=[TextField(f) for f in early],
        template=template if template and text_cols else "[item]",
        noun=noun,
        command="csv",
    ).validate()
    report = ConversionReport(name=name, command="csv")
    isep = guess_sep(inter, sep)
    bad = opts.bad_lines(inter)
    buf = EventBuffer()
    position = 0
    cols: list[int] | None = None
    with Progress("interactions", opts.progress) as bar:
        for number, header, row in iter_rows(inter, isep, bad, "interactions file", "--inter"):
            bar.tick()
            if cols is None:
                wanted = [user_col, item_col] + ([time_col] if time_col else [])
                cols = _need(header, wanted, inter, "--user-col/--item-col/--time-col")
            user, item = row[cols[0]].strip(), row[cols[1]].strip()
            if not user or not item:
                bad.add(number, "empty user or item id")
                continue
            if time_col:
                value = row[cols[2]].strip()
                try:
                    if time_format:
                        moment = datetime.strptime(value, time_format)
                        if moment.tzinfo is None:
                            moment = moment.replace(tzinfo=timezone.utc)
                        t = moment.timestamp()
                    else:
                        t = float(value)
                    if t != t:  # NaN
                        raise ValueError
                except ValueError:
                    fmt = f"format {time_format!r}" if time_format else "a number (or set --time-format)"
                    bad.add(number, f"time {value[:30]!r} is not {fmt}")
                    continue
            else:
                t = float(position)
            position += 1
            buf.add(user, item, t)
    report.add_file("interactions", bad)
    bad.check()
    ev = finalize_events(buf.freeze(), report, min_inter=opts.min_inter, drop_duplicates=opts.drop_duplicates)

    texts: dict[int, list[object]] = {}
    fields: list[str] = list(text_cols) if text_cols else []
    if items:
        jsep = guess_sep(items, items_sep or sep)
        ibad = opts.bad_lines(items)
        id_name = item_id_col or item_col
        wanted_items = np.zeros(len(ev.item_tokens), dtype=bool)
        wanted_items[ev.items] = True
        idx: list[int] | None = None
        dup = 0
        with Progress("items", opts.progress) as bar:
            for _number, header, row in iter_rows(items, jsep, ibad, "items file", "--items"):
                bar.tick()
                if idx is None:
                    if not fields:
                        fields = [h for h in header if h != id_name]
                    idx = _need(header, [id_name, *fields], items, "--item-id-col/--text-cols")
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
    elif not fields:
        report.notes.append("no items file: the .item file has ids only")
    token_set = set(token_cols)
    unknown = sorted(token_set - set(fields))
    if unknown:
        raise DatasetError(f"--token-cols {unknown} are not text columns {fields}")
    spec = DatasetSpec(
        name=name,
        text_fields=[TextField(_field_name(f), "token" if f in token_set else "token_seq") for f in fields],
        template=template or default_template(noun, [_field_name(f) for f in fields]),
        noun=noun,
        command="csv",
        time_comment=(f"orders each sequence (column {time_col})" if time_col else "file position (no time column)"),
    )
    spec.validate()
    write_dataset(ev, texts, spec, opts.out, report, yaml_out=opts.yaml_out, max_words=opts.max_words)
    return report


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
