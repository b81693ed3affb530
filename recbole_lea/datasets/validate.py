"""Check a RecBole atomic ``.inter`` file before RecBole reads it.

RecBole 1.2.1 reads atomic files with pandas and is lenient where it should not be: a line
missing a field gets a NaN that RecBole fills with the column mean (a wrong timestamp, silently),
a value pandas takes for missing (``NA``, ``null``, ``nan``, ...) turns into a missing value, a
value starting with ``"`` makes pandas read a quoted field across separators and lines (the
lines it swallows vanish without a word), while an
empty file, a header-only file, an untyped header or a non-numeric float value end in a raw
traceback. :func:`check_atomic_inter` reads the file once, streaming, and raises one
:class:`recbole_lea.errors.ConfigError` naming the file, the line, the field and the fix for the
first such problem.

Speed (measured, see docs/datasets.md): 0.9-1.0 s per million 3-column lines
(``user_id:token``, ``item_id:token``, ``timestamp:float``) on one core of the 2-core
development machine (another job running), 10.8 s for a 10-million-line file; RecBole's own
read of the 1M-line file took 2.9 s. Memory stays flat (4 MiB blocks).
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from recbole_lea.errors import ConfigError

#: The feature types RecBole 1.2.1 accepts in an atomic file's header (``name:type``).
RECBOLE_TYPES = ("token", "token_seq", "float", "float_seq")

#: Values pandas' ``read_csv`` turns into NaN by default (its ``na_values``): in a token field RecBole
#: then gets a missing id instead of the value, in a float field the column mean.
PANDAS_NA = frozenset(
    s.encode()
    for s in (
        "",
        "#N/A",
        "#N/A N/A",
        "#NA",
        "-1.#IND",
        "-1.#QNAN",
        "-NaN",
        "-nan",
        "1.#IND",
        "1.#QNAN",
        "<NA>",
        "N/A",
        "NA",
        "NULL",
        "NaN",
        "None",
        "n/a",
        "nan",
        "null",
    )
)

_BLOCK = 1 << 22  # bytes read at a time
#: The longest value RecBole can read: it reads atomic files with pandas' python engine, i.e. Python's
#: csv module, whose default ``csv.field_size_limit()`` is 131072 characters ("field larger than
#: field limit" beyond it). pandas' C engine (the LE build's reader) has no such limit.
FIELD_LIMIT = 131072
_BOM = b"\xef\xbb\xbf"
_BLANK = re.compile(rb"(?m)^[ \t\x0b\x0c]+$")  # a whitespace-only value among "\n"-joined ones


def _fail(path: Path, where: str, problem: str, fix: str) -> ConfigError:
    return ConfigError(f"{path}: {where}: {problem}; fix: {fix}")


def _show(value: bytes, width: int = 40) -> str:
    text = value.decode("utf-8", "replace")
    return repr(text if len(text) <= width else text[:width] + "...")


def read_atomic_header(path: Path, *, sep: str = "\t") -> dict[str, str]:
    """``name -> type`` of an atomic file's header, checked as RecBole parses it (every column
    ``name:type`` with a type RecBole knows). Raises :class:`ConfigError` for a missing or
    empty file and a bad header; a header-only file is fine here."""
    path = Path(path)
    with _open(path) as fh:
        return _parse_header(path, fh.readline(), sep)


def _open(path: Path):  # noqa: ANN202 - a binary file object
    if not path.is_file():
        raise ConfigError(
            f"{path}: atomic file not found; fix: convert the dataset first "
            "(`python -m recbole_lea.datasets --help`) or point data_path at the folder holding "
            f"{path.parent.name or '<dataset>'}/{path.name}"
        )
    return open(path, "rb")


def _parse_header(path: Path, line: bytes, sep: str) -> dict[str, str]:
    if not line.strip():
        raise _fail(
            path,
            "line 1",
            "the file is empty",
            "write a header row of name:type columns (e.g. user_id:token, item_id:token, timestamp:float) "
            "and one line per interaction",
        )
    if line.startswith(_BOM):
        raise _fail(path, "line 1", "the file starts with a UTF-8 byte-order mark", "save it as UTF-8 without BOM")
    line = line[:-1] if line.endswith(b"\n") else line
    if line.endswith(b"\r"):
        raise _fail(
            path,
            "line 1",
            "the header ends with a carriage return (Windows line endings), which RecBole reads as part of "
            "the last column's type",
            f"convert the line endings to \\n (e.g. `sed -i 's/\\r$//' {path}`)",
        )
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        raise _fail(path, "line 1", "the header is not UTF-8", "save the file as UTF-8") from None
    types: dict[str, str] = {}
    for col, cell in enumerate(text.split(sep), start=1):
        name, colon, typ = cell.partition(":")
        if not colon or ":" in typ or not name:
            hint = "" if sep in cell or len(text.split(sep)) > 1 else f" (is the file separated by {sep!r}?)"
            raise _fail(
                path,
                f"line 1, column {col}",
                f"header cell {cell!r} is not name:type{hint}",
                f"write it as name:type with type one of {', '.join(RECBOLE_TYPES)} "
                "(e.g. user_id:token, timestamp:float)",
            )
        if typ not in RECBOLE_TYPES:
            raise _fail(
                path,
                f"line 1, column {col}",
                f"field '{name}' has type {typ!r}, which RecBole does not know",
                f"use one of {', '.join(RECBOLE_TYPES)}",
            )
        if name in types:
            raise _fail(path, f"line 1, column {col}", f"field '{name}' appears twice in the header", "rename one")
        types[name] = typ
    return types


def check_atomic_inter(path: Path, fields: dict[str, str], *, sep: str = "\t") -> None:
    """Check the RecBole atomic file ``path`` for the ``fields`` a run loads (``name -> RecBole
    type``, e.g. ``{"user_id": "token", "item_id": "token", "timestamp": "float"}``); ``sep`` is
    RecBole's ``field_separator``. Reads the file once, streaming, and raises one
    :class:`recbole_lea.errors.ConfigError` naming the file, the line, the field and the fix at the
    first problem: missing file, empty file, header only, a header cell that is not ``name:type``,
    a needed field absent from the header or of another type, a line with fewer or more fields than
    the header, an empty or pandas-missing (``NA``, ``null``, ...) value in a loaded ``token`` or
    ``float`` field, a non-numeric or non-finite value in a loaded ``float``/``float_seq`` field, a
    value starting with ``"`` (pandas would read a quoted field), bytes that are not UTF-8, a value
    (in any field) longer than RecBole's reader accepts (:data:`FIELD_LIMIT` characters). Blank
    lines are skipped, as pandas skips them; a trailing ``\\r`` on data lines is accepted.
    """
    path = Path(path)
    for name, typ in fields.items():
        if typ not in RECBOLE_TYPES:  # a caller's mistake, not the file's
            raise ValueError(f"check_atomic_inter: field {name!r} has type {typ!r}; use one of {RECBOLE_TYPES}")
    with _open(path) as fh:
        header = fh.readline()
        types = _parse_header(path, header, sep)
        names = list(types)
        typed = [f"{n}:{t}" for n, t in types.items()]
        for name, typ in fields.items():
            if name not in types:
                raise _fail(
                    path,
                    "line 1",
                    f"the header has no field '{name}' (the run loads {name}:{typ}; typed columns: {typed})",
                    f"add a column '{name}:{typ}' to the file, or set the dataset's field option "
                    "(USER_ID_FIELD / ITEM_ID_FIELD / TIME_FIELD, load_col) to a column it has",
                )
            if types[name] != typ:
                raise _fail(
                    path,
                    "line 1",
                    f"field '{name}' is typed {types[name]} but the run needs {typ}",
                    f"change its header cell to '{name}:{typ}'",
                )
        checks = [(names.index(n), n, t) for n, t in fields.items()]
        _check_rows(path, fh, names, checks, sep.encode())


def _check_rows(path: Path, fh, names: list[str], checks: list[tuple[int, str, str]], sep: bytes) -> None:  # noqa: ANN001
    width = len(names)
    number = 1  # lines consumed so far (the header)
    rows = 0
    tail = b""
    while True:
        block = fh.read(_BLOCK)
        if not block:
            break
        block = tail + block
        cut = block.rfind(b"\n") + 1
        if cut == 0:  # no newline yet: a very long line, keep reading
            tail = block
            continue
        tail = block[cut:]
        _check_block_sizes(path, block[:cut], number, sep, names)
        rows += _check_block(path, block[:cut], number, width, checks, sep)
        number += block.count(b"\n", 0, cut)
    if tail:
        _check_block_sizes(path, tail + b"\n", number, sep, names)
        rows += _check_block(path, tail + b"\n", number, width, checks, sep)
    if rows == 0:
        raise _fail(
            path,
            f"line {number + 1}",
            "the file has a header but no interactions",
            "write one line per interaction under the header (or convert the dataset again)",
        )


def _check_block(
    path: Path, block: bytes, first: int, width: int, checks: list[tuple[int, str, str]], sep: bytes
) -> int:
    """Check the complete lines of ``block`` (line ``first + 1`` onwards); returns the data rows seen."""
    try:
        block.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = first + block.count(b"\n", 0, exc.start) + 1
        raise _fail(path, f"line {line}", "bytes that are not UTF-8", "save the file as UTF-8") from None
    if _block_is_clean(block, width, checks, sep):
        return block.count(b"\n")
    lines = block.split(b"\n")
    lines.pop()  # the block ends with "\n": the last piece is empty
    rows = 0
    number = first
    na = PANDAS_NA
    for line in lines:
        number += 1
        if line.endswith(b"\r"):
            line = line[:-1]
        if not line:
            continue
        rows += 1
        parts = line.split(sep)
        if len(parts) != width:
            what = "fewer" if len(parts) < width else "more"
            raise _fail(
                path,
                f"line {number}",
                f"{len(parts)} fields, {what} than the header's {width} (RecBole would fill a missing float "
                "with the column mean and shift or drop the rest)",
                f"give every line exactly {width} {sep.decode()!r}-separated values, in the header's order",
            )
        for index, name, typ in checks:
            value = parts[index]
            if typ == "token" or typ == "float":
                if not value.strip() or value in na:
                    problem = (
                        "empty value" if not value.strip() else f"value {_show(value)}, which pandas reads as missing"
                    )
                    raise _fail(
                        path,
                        f"line {number}, field '{name}'",
                        problem,
                        "give the line a value there or remove the line",
                    )
                if typ == "float":
                    _check_float(path, number, name, value)
            elif typ == "float_seq":
                for element in value.split():
                    _check_float(path, number, name, element)
        if b'"' in line:
            for index, value in enumerate(parts):
                if value.startswith(b'"'):
                    raise _fail(
                        path,
                        f"line {number}, column {index + 1}",
                        f"value {_show(value)} starts with a double quote, so pandas would read a quoted field "
                        "across separators and lines",
                        "remove the quote or replace it (e.g. with '')",
                    )
    return rows


def _block_is_clean(block: bytes, width: int, checks: list[tuple[int, str, str]], sep: bytes) -> bool:
    """Fast path: True when every line of ``block`` is certainly fine (column-wise, in C loops);
    False when a line may be bad or the block is unusual, and the line-by-line check decides."""
    if b"\r" in block or b'"' in block or b"\n\n" in block or block.startswith(b"\n"):
        return False
    lines = block.count(b"\n")
    if block.count(sep) != (width - 1) * lines:
        return False
    cells = block.replace(b"\n", sep).split(sep)
    for index, _name, typ in checks:
        column = cells[index::width][:lines]
        if typ == "token":
            distinct = set(column)
            if not distinct.isdisjoint(PANDAS_NA) or _BLANK.search(b"\n".join(distinct)):
                return False
        elif typ == "float":
            try:
                values = list(map(float, column))
            except ValueError:
                return False
            if not all(map(math.isfinite, values)):
                return False
        elif typ == "float_seq":
            return False
    return True


def _check_block_sizes(path: Path, block: bytes, first: int, sep: bytes, names: list[str]) -> None:
    """Raise at the first value of ``block`` (complete lines, line ``first + 1`` onwards) longer
    than :data:`FIELD_LIMIT` characters. Line lengths come from one numpy pass over the newlines;
    only a line over the limit is split."""
    if len(block) <= FIELD_LIMIT:
        return
    import numpy as np

    ends = np.flatnonzero(np.frombuffer(block, dtype=np.uint8) == 10)
    starts = np.concatenate(([0], ends[:-1] + 1))
    for index in np.flatnonzero(ends - starts > FIELD_LIMIT).tolist():
        line = block[starts[index] : ends[index]]
        for column, value in enumerate(line.split(sep)):
            size = len(value.decode("utf-8", "replace"))
            if size > FIELD_LIMIT:
                name = names[column] if column < len(names) else f"column {column + 1}"
                raise _fail(path, f"line {first + index + 1}, field '{name}'", *_oversized(size))


def _oversized(size: int) -> tuple[str, str]:
    """(problem, fix) of a value of ``size`` characters over :data:`FIELD_LIMIT`."""
    return (
        f"a value of {size} characters, over the {FIELD_LIMIT} characters RecBole's reader accepts (it reads "
        "atomic files with Python's csv module: 'field larger than field limit')",
        "shorten the value (the converters cut text to --max-words words) or drop the field from the file",
    )


def check_field_sizes(path: Path, *, sep: str = "\t") -> None:
    """Raise :class:`ConfigError` naming the line and field of the first value of the atomic file
    ``path`` longer than RecBole can read (:data:`FIELD_LIMIT`); reads the file once, in blocks
    (a file under the limit is not read at all)."""
    path = Path(path)
    if path.stat().st_size <= FIELD_LIMIT:
        return
    with _open(path) as fh:
        first = fh.readline(FIELD_LIMIT + 1)
        names = [cell.partition(":")[0] for cell in first.rstrip(b"\r\n").decode("utf-8", "replace").split(sep)]
        fh.seek(0)
        number, tail = 0, b""  # the header is checked too
        while block := fh.read(_BLOCK):
            block = tail + block
            cut = block.rfind(b"\n") + 1
            tail = block[cut:]
            if cut:
                _check_block_sizes(path, block[:cut], number, sep.encode(), names)
                number += block.count(b"\n", 0, cut)
        if tail:
            _check_block_sizes(path, tail + b"\n", number, sep.encode(), names)


def check_run_inter(dataset: str, data_path: str, options: dict[str, Any] | None = None) -> Path:
    """Path of ``<data_path>/<dataset>/<dataset>.inter`` after checking every line of the fields a
    run loads (:func:`check_atomic_inter`); converts ml-100k on first use. ``options``: the run's
    merged options (field names, ``load_col``, separator). Imports neither torch nor RecBole (nor
    pandas), so the CLI can call it before the heavy imports and answer a bad line in about a second."""
    from recbole_lea.datasets.ml100k import ensure_bundled

    inter = Path(data_path) / dataset / f"{dataset}.inter"
    ensure_bundled(data_path, dataset)
    if not inter.is_file():
        raise ConfigError(
            f"No atomic files for dataset '{dataset}': expected {inter}. Convert your data first "
            "(`python -m recbole_lea.datasets --help`, see atomic_datasets/README.md), or point "
            "--data_path at the folder that holds <dataset>/<dataset>.inter."
        )
    options = options or {}
    sep = str(options.get("field_separator") or "\t")
    needed = {
        str(options.get("USER_ID_FIELD") or "user_id"): "token",
        str(options.get("ITEM_ID_FIELD") or "item_id"): "token",
        str(options.get("TIME_FIELD") or "timestamp"): "float",
    }
    loaded = (options.get("load_col") or {}).get("inter") or []
    header = read_atomic_header(inter, sep=sep)
    for name in loaded:
        if name not in needed and name in header:
            needed[name] = header[name]
    check_atomic_inter(inter, needed, sep=sep)
    return inter


def _check_float(path: Path, number: int, name: str, value: bytes) -> None:
    try:
        number_value = float(value)
    except ValueError:
        number_value = None
    if number_value is None or not math.isfinite(number_value):
        raise _fail(
            path,
            f"line {number}, field '{name}'",
            f"value {_show(value)} is not a finite number",
            "write a number there (e.g. unix seconds for a timestamp), or convert the file with "
            "`python -m recbole_lea.datasets csv --time-format ...` for dates",
        )
