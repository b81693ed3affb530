"""ml-100k from the copy inside the recbole wheel (``recbole/dataset_example/ml-100k/``).

Writes ``ml-100k.inter`` (user_id, item_id, timestamp; the wheel's row order is kept, rating
dropped) and ``ml-100k.item`` (movie_title, release_year, class). :func:`ensure_ml100k`
converts only when the files are missing, so runs can name ``ml-100k`` without a setup step.
"""

from __future__ import annotations

import os
import time

from recbole_lea.datasets.common import DatasetError, EventBuffer, iter_lines
from recbole_lea.datasets.options import ConvertOptions
from recbole_lea.datasets.writer import (
    ConversionReport,
    DatasetSpec,
    TextField,
    finalize_events,
    logger,
    write_dataset,
)

NAME = "ml-100k"
ML100K_FIELDS = [
    TextField("movie_title", "token_seq"),
    TextField("release_year", "token"),
    TextField("class", "token_seq"),
]
ML100K_TEMPLATE = "[item] movie is titled {movie_title}, released {release_year}, genres: {class}"
ML100K_VERB = "watched"


def ml100k_spec(verb: str | None = None) -> DatasetSpec:
    return DatasetSpec(
        name=NAME,
        text_fields=list(ML100K_FIELDS),
        template=ML100K_TEMPLATE,
        noun="movie",
        command="ml100k",
        time_comment="orders each sequence (unix seconds; the wheel's row order is kept)",
        verb=verb or ML100K_VERB,
    )


def wheel_dir() -> str:
    """The ml-100k folder shipped inside the installed recbole package."""
    import recbole

    path = os.path.join(os.path.dirname(recbole.__file__), "dataset_example", NAME)
    if not os.path.isfile(os.path.join(path, f"{NAME}.inter")):
        raise DatasetError(f"{path}: the recbole wheel has no ml-100k copy; reinstall recbole==1.2.1")
    return path


def _columns(header: str, path: str, wanted: list[str]) -> list[int]:
    names = [h.split(":")[0] for h in header.split("\t")]
    missing = [w for w in wanted if w not in names]
    if missing:
        raise DatasetError(f"{path}: header lacks {missing} (has {names})")
    return [names.index(w) for w in wanted]


def convert_ml100k(opts: ConvertOptions | None = None, *, overwrite: bool = True, name: str = NAME) -> ConversionReport:
    """Convert the wheel's ml-100k into ``opts.out/<name>/`` (``name`` ml-100k by default; a
    conversion into sessions needs another name, so the dataset runs and :func:`ensure_ml100k`
    rely on stays one sequence per user)."""
    opts = opts or ConvertOptions()
    if opts.sessions is not None and name == NAME:
        raise DatasetError(
            f"{opts.sessions.option} on ml100k needs --name (e.g. --name {NAME}-sessions): the dataset "
            f"{NAME} is the one sequence per user that runs and ensure_ml100k use"
        )
    spec = ml100k_spec(opts.verb)
    spec.name = name
    report = ConversionReport(name=name, command="ml100k")
    src = wheel_dir()
    inter_path = os.path.join(src, f"{NAME}.inter")
    buf = EventBuffer(inter_path)
    bad = opts.bad_lines(inter_path)
    cols: list[int] = []
    for number, line in iter_lines(inter_path):
        text = line.decode("utf-8")
        if number == 1:
            cols = _columns(text, inter_path, ["user_id", "item_id", "timestamp"])
            continue
        parts = text.split("\t")
        try:
            buf.add(parts[cols[0]], parts[cols[1]], float(parts[cols[2]]), number)
        except (IndexError, ValueError):
            bad.add(number, "wrong column count or non-numeric timestamp")
        bad.lines_read = number
    report.add_file("interactions", bad)
    bad.check()
    ev = finalize_events(
        buf.freeze(),
        report,
        min_inter=opts.min_inter,
        drop_duplicates=opts.drop_duplicates,
        keep_order=True,
        sessions=opts.sessions,
    )
    item_path = os.path.join(src, f"{NAME}.item")
    texts: dict[int, list[object]] = {}
    for number, line in iter_lines(item_path):
        text = line.decode("utf-8")
        if number == 1:
            cols = _columns(text, item_path, ["item_id", *(f.name for f in spec.text_fields)])
            continue
        parts = text.split("\t")
        code = buf.items_map.get(parts[cols[0]])
        if code is not None:
            texts[code] = [parts[c] if c < len(parts) else "" for c in cols[1:]]
    write_dataset(ev, texts, spec, opts.out, report, yaml_out=opts.yaml_out, max_words=None, overwrite=overwrite)
    return report


def ensure_ml100k(data_path: str) -> str:
    """Make sure ``<data_path>/ml-100k/ml-100k.{inter,item}`` exist (converting from the recbole
    wheel only when one is missing) and return that folder. Safe when several processes race:
    the first complete conversion wins."""
    folder = os.path.join(data_path, NAME)
    if all(os.path.isfile(os.path.join(folder, f"{NAME}.{ext}")) for ext in ("inter", "item")):
        return folder
    overwrite = os.path.isdir(folder)  # an incomplete folder is replaced; a finished one is kept
    logger.info("converting ml-100k from the copy in the recbole wheel into %s (first use)", folder)
    start = time.time()
    convert_ml100k(ConvertOptions(out=data_path), overwrite=overwrite)
    logger.info("ml-100k converted in %.1f s", time.time() - start)
    return folder


def ensure_bundled(data_path: str, dataset: str) -> None:
    """The one place that converts a dataset on first use: ml-100k, from the copy in the recbole
    wheel, under a file lock in ``data_path`` (two processes started at once convert it once);
    any other dataset is left as it is (a missing one is reported by whoever reads it)."""
    if dataset != NAME or all(
        os.path.isfile(os.path.join(data_path, NAME, f"{NAME}.{ext}")) for ext in ("inter", "item")
    ):
        return
    from pathlib import Path

    from recbole_lea.files import locked

    with locked(Path(data_path) / f".{NAME}.lock"):
        ensure_ml100k(data_path)
