"""LC-Rec JSON (``<X>.inter.json`` + ``<X>.item.json``) to atomic files.

``<X>.inter.json`` is ``{"user_idx": [item_idx, ...]}`` with each list in chronological order and
no timestamps; ``<X>.item.json`` is ``{"item_idx": {"title", "description", "brand",
"categories"}}``. The files are small (the whole JSON is parsed at once). Each row gets a
synthesised timestamp, its position in the file (0, 1, 2, ...), so every sequence keeps its order.
"""

from __future__ import annotations

import glob
import json
import os

from recbole_lea.datasets.amazon import amazon_spec
from recbole_lea.datasets.common import DatasetError, EventBuffer
from recbole_lea.datasets.options import ConvertOptions
from recbole_lea.datasets.writer import ConversionReport, finalize_events, write_dataset

#: ``.item`` field <- LC-Rec item key (override with ``--fields title=title,...``).
DEFAULT_FIELD_KEYS = {"title": "title", "category": "categories", "brand": "brand", "description": "description"}


def find_files(source: str) -> tuple[str, str]:
    """``source`` is a folder holding exactly one ``*.inter.json`` and one ``*.item.json``."""
    if not os.path.isdir(source):
        raise DatasetError(
            f"LC-Rec source {source} is not a folder; pass the folder holding *.inter.json and *.item.json, "
            "or the files with --inter-json and --item-json"
        )
    found = []
    for pattern in ("*.inter.json", "*.item.json"):
        hits = sorted(glob.glob(os.path.join(source, pattern)))
        if len(hits) != 1:
            raise DatasetError(
                f"{source}: expected exactly one {pattern}, found {len(hits)} ({hits}); "
                "name the files with --inter-json and --item-json"
            )
        found.append(hits[0])
    return found[0], found[1]


def _load_json(path: str, option: str) -> object:
    if not os.path.isfile(path):
        raise DatasetError(f"LC-Rec file not found: {path} (pass the right path with {option})")
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except json.JSONDecodeError as exc:
        raise DatasetError(
            f"{path}: line {exc.lineno}, column {exc.colno}: invalid JSON ({exc.msg}); fix the file or re-export it"
        ) from None
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path}: not UTF-8 at byte {exc.start}; re-encode the file as UTF-8") from None


def _item_key(value: object) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def convert_lcrec(
    inter_json: str,
    item_json: str | None,
    name: str,
    opts: ConvertOptions | None = None,
    field_keys: dict[str, str] | None = None,
) -> ConversionReport:
    """Convert one LC-Rec dataset; returns the report (the dataset is in ``opts.out``)."""
    opts = opts or ConvertOptions()
    if opts.sessions is not None:
        raise opts.sessions.needs_time(
            f"LC-Rec JSON ({inter_json}) has no timestamps (each row's time is its file position)",
            f"drop {opts.sessions.option}, or convert a source with times "
            "(raw Amazon reviews: `amazon --reviews ... --meta ...`; a CSV with --time-col)",
        )
    keys = dict(DEFAULT_FIELD_KEYS)
    if field_keys:
        unknown = sorted(set(field_keys) - set(keys))
        if unknown:
            raise DatasetError(f"--fields names {unknown}; the .item fields are {sorted(keys)}")
        keys.update(field_keys)
    spec = amazon_spec(name, "lcrec", "file position (LC-Rec has no time): keeps each sequence's order", verb=opts.verb)
    spec.validate()
    report = ConversionReport(name=name, command="lcrec")

    data = _load_json(inter_json, "--inter-json")
    if not isinstance(data, dict):
        raise DatasetError(f'{inter_json}: expected an object {{"user": [item, ...]}}, got {type(data).__name__}')
    bad = opts.bad_lines(inter_json)
    buf = EventBuffer(inter_json)
    position = 0
    for user, seq in data.items():
        if not isinstance(seq, list):
            bad.add(f"user {user!r}", f"value is {type(seq).__name__}, not a list of items")
            continue
        for j, raw in enumerate(seq):
            item = _item_key(raw)
            if item is None:
                bad.add(f"user {user!r} position {j}", f"item {raw!r} is not an id")
                continue
            buf.add(str(user), item, float(position), f"user {user!r} position {j}")
            position += 1
    bad.lines_read = len(data)
    report.add_file("interactions", bad)
    bad.check()
    ev = finalize_events(buf.freeze(), report, min_inter=opts.min_inter, drop_duplicates=opts.drop_duplicates)

    texts: dict[int, list[object]] = {}
    if item_json:
        items = _load_json(item_json, "--item-json")
        if not isinstance(items, dict):
            raise DatasetError(
                f'{item_json}: expected an object {{"item": {{"title": ...}}}}, got {type(items).__name__}'
            )
        ibad = opts.bad_lines(item_json)
        ibad.lines_read = len(items)
        for item, meta in items.items():
            code = buf.items_map.get(str(item).strip())
            if code is None:
                continue
            if not isinstance(meta, dict):
                ibad.add(f"item {item!r}", f"value is {type(meta).__name__}, not an object")
                continue
            texts[code] = [meta.get(keys[f.name]) for f in spec.text_fields]
        report.add_file("items", ibad)
        ibad.check()
    else:
        report.notes.append("no item file given: every item has empty text")
    write_dataset(ev, texts, spec, opts.out, report, yaml_out=opts.yaml_out, max_words=opts.max_words)
    return report
