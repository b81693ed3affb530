"""Raw Amazon Review Data 2018: ``<Category>.json`` / ``<Category>_5.json`` reviews and
``meta_<Category>.json`` metadata (JSON lines, gzip or plain) to atomic files.

Reviews give (reviewerID, asin, unixReviewTime); metadata gives the paper's Industry text:
title, category (list), brand, description (list). Both files are streamed: reviews become
int arrays, and metadata is read afterwards for the items that survive the filter only.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from typing import Any

import numpy as np

from recbole_lea.datasets.common import BadLines, EventBuffer, Progress, iter_lines, loads_json_line, strip_html
from recbole_lea.datasets.options import ConvertOptions
from recbole_lea.datasets.writer import (
    ConversionReport,
    DatasetSpec,
    TextField,
    finalize_events,
    write_dataset,
)

#: Item text of the Amazon datasets (raw 2018 dumps and the LC-Rec copy alike).
AMAZON_FIELDS = [
    TextField("title", "token_seq"),
    TextField("category", "token_seq"),
    TextField("brand", "token"),
    TextField("description", "token_seq"),
]
AMAZON_TEMPLATE = "[item] product is titled {title}, brand: {brand}, categories: {category}, description: {description}"
AMAZON_NOUN = "product"
AMAZON_VERB = "bought"


def amazon_spec(name: str, command: str, time_comment: str | None = None, verb: str | None = None) -> DatasetSpec:
    return DatasetSpec(
        name=name,
        text_fields=list(AMAZON_FIELDS),
        template=AMAZON_TEMPLATE,
        noun=AMAZON_NOUN,
        command=command,
        time_comment=time_comment or "orders each sequence (unixReviewTime, day resolution: ties keep file order)",
        verb=verb or AMAZON_VERB,
    )


def default_name(reviews_path: str) -> str:
    """``Industrial_and_Scientific_5.json.gz`` -> ``amazon-industrial-and-scientific``."""
    stem = os.path.basename(reviews_path)
    stem = re.sub(r"(\.gz)?$", "", stem)
    stem = re.sub(r"\.json$", "", stem)
    stem = re.sub(r"_5$", "", stem)
    return "amazon-" + re.sub(r"[^a-z0-9]+", "-", stem.lower()).strip("-")


def _as_time(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None


def _json_lines(
    path: str, what: str, option: str, bad: BadLines, label: str, progress: bool
) -> Iterator[tuple[int, Any]]:
    """``(line number, parsed JSON)`` of each line under a progress bar; malformed JSON is
    counted in ``bad`` and skipped, and ``bad.lines_read`` ends at the last line read."""
    last = 0
    with Progress(label, progress) as bar:
        for number, line in iter_lines(path, what, option):
            last = number
            bar.tick()
            try:
                obj = loads_json_line(line)
            except ValueError as exc:
                bad.add(number, str(exc))
                continue
            yield number, obj
    bad.lines_read = max(bad.lines_read, last)


def read_reviews(path: str, opts: ConvertOptions, report: ConversionReport) -> EventBuffer:
    """Stream the review file into compact arrays; malformed lines are counted."""
    buf = EventBuffer(path)
    bad = opts.bad_lines(path)
    for number, obj in _json_lines(path, "Amazon review file", "--reviews", bad, "reviews", opts.progress):
        if not isinstance(obj, dict):
            bad.add(number, "not a JSON object")
            continue
        user, item = obj.get("reviewerID"), obj.get("asin")
        if not isinstance(user, (str, int)) or isinstance(user, bool) or str(user).strip() == "":
            bad.add(number, "missing or empty field 'reviewerID'")
            continue
        if not isinstance(item, (str, int)) or isinstance(item, bool) or str(item).strip() == "":
            bad.add(number, "missing or empty field 'asin'")
            continue
        time = _as_time(obj.get("unixReviewTime"))
        if time is None:
            bad.add(number, f"field 'unixReviewTime' is not a number: {str(obj.get('unixReviewTime'))[:40]!r}")
            continue
        buf.add(str(user), str(item), time, number)
    report.add_file("reviews", bad)
    bad.check()
    return buf


def _join(value: object, sep: str) -> str:
    if isinstance(value, list):
        return sep.join(str(v) for v in value if isinstance(v, (str, int, float)) and str(v).strip())
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return str(value)
    return ""


def read_meta(
    path: str, buf: EventBuffer, wanted: np.ndarray, opts: ConvertOptions, report: ConversionReport
) -> dict[int, list[object]]:
    """Text of the wanted items (codes of ``buf.items_map``) from the metadata file."""
    texts: dict[int, list[object]] = {}
    bad = opts.bad_lines(path)
    dup = other = 0
    for number, obj in _json_lines(path, "Amazon metadata file", "--meta", bad, "metadata", opts.progress):
        if not isinstance(obj, dict) or not isinstance(obj.get("asin"), (str, int)):
            bad.add(number, "missing field 'asin'")
            continue
        code = buf.items_map.get(str(obj["asin"]))
        if code is None or not wanted[code]:
            other += 1
            continue
        if code in texts:
            dup += 1
            continue
        texts[code] = [
            strip_html(_join(obj.get("title"), " ")),
            strip_html(_join(obj.get("category"), ", ")),
            strip_html(_join(obj.get("brand"), " ")),
            strip_html(_join(obj.get("description"), " ")),
        ]
    report.add_file("metadata", bad)
    bad.check()
    report.set("metadata_rows_of_other_items", other)
    report.set("metadata_duplicate_asin_rows", dup)
    if dup:
        report.notes.append(f"{dup} metadata rows repeat an asin already read; the first row was used")
    return texts


def convert_amazon(
    reviews: str,
    meta: str | None,
    name: str | None = None,
    opts: ConvertOptions | None = None,
) -> ConversionReport:
    """Convert one Amazon 2018 category; returns the report (the dataset is in ``opts.out``)."""
    opts = opts or ConvertOptions()
    name = name or default_name(reviews)
    spec = amazon_spec(name, "amazon", verb=opts.verb)
    spec.validate()
    report = ConversionReport(name=name, command="amazon")
    buf = read_reviews(reviews, opts, report)
    ev = finalize_events(
        buf.freeze(), report, min_inter=opts.min_inter, drop_duplicates=opts.drop_duplicates, sessions=opts.sessions
    )
    wanted = np.zeros(len(ev.item_tokens), dtype=bool)
    wanted[ev.items] = True
    if meta:
        texts = read_meta(meta, buf, wanted, opts, report)
    else:
        texts = {}
        report.notes.append("no metadata file given: every item has empty text")
    write_dataset(ev, texts, spec, opts.out, report, yaml_out=opts.yaml_out, max_words=opts.max_words)
    return report
