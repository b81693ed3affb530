"""Input side shared by every converter.

Errors the user can fix (:class:`DatasetError`), streaming line readers that understand gzip,
bad-line accounting with a user-set threshold (:class:`BadLines`), string-id to int maps
(:class:`IdMap`), compact growable event arrays (:class:`EventBuffer`) and text sanitising for
tab-separated atomic files.
"""

from __future__ import annotations

import gzip
import html
import io
import json
import os
import re
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import numpy as np

from recbole_lea.errors import ConfigError

try:  # orjson parses review lines several times faster; the stdlib parser is the fallback
    import orjson

    _json_loads: Callable[[bytes], Any] = orjson.loads
    _JSON_ERRORS: tuple[type[Exception], ...] = (orjson.JSONDecodeError, ValueError)
except ImportError:  # pragma: no cover - orjson is optional
    _json_loads = json.loads
    _JSON_ERRORS = (ValueError,)

#: How many example bad lines are kept (and printed) per input file.
MAX_EXAMPLES = 5
#: Default of ``--max-bad-lines``: fail when more than 0.1% of a file's lines are malformed.
DEFAULT_MAX_BAD = "0.1%"
#: Default of ``--max-words``: text fields keep at most this many words (0 = no limit).
DEFAULT_MAX_WORDS = 64


class DatasetError(ConfigError):
    """A conversion problem the user can fix (file, line/field and the fix in the message); the CLI
    prints it without a traceback. A :class:`recbole_lea.errors.ConfigError`, like all bad input."""


# --------------------------------------------------------------------------- reading files


def open_binary(path: str, what: str = "input file", option: str | None = None) -> BinaryIO:
    """Open ``path`` for binary reading; gzip is detected from the magic bytes, not the name."""
    if not os.path.isfile(path):
        hint = f" (pass the right path with {option})" if option else ""
        raise DatasetError(f"{what} not found: {path}{hint}")
    raw = open(path, "rb")  # noqa: SIM115 - returned to the caller, closed by its `with`
    magic = raw.read(2)
    raw.seek(0)
    if magic == b"\x1f\x8b":
        return io.BufferedReader(gzip.GzipFile(fileobj=raw, mode="rb"), buffer_size=1 << 20)  # type: ignore[arg-type]
    return raw


def iter_lines(path: str, what: str = "input file", option: str | None = None) -> Iterator[tuple[int, bytes]]:
    """Yield ``(line_number, raw_line)`` (1-based, line ending stripped), skipping blank lines."""
    with open_binary(path, what, option) as fh:
        for number, line in enumerate(fh, start=1):
            line = line.rstrip(b"\r\n")
            if line.strip():
                yield number, line


def decode(line: bytes) -> str | None:
    """UTF-8 decode one line; ``None`` when it is not valid UTF-8 (the caller counts it bad)."""
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError:
        return None


def loads_json_line(line: bytes) -> Any:
    """Parse one JSON line; raises ``ValueError`` with the parser's message when malformed."""
    try:
        return _json_loads(line)
    except _JSON_ERRORS as exc:
        raise ValueError(f"bad JSON ({str(exc).splitlines()[0][:80]})") from None


# --------------------------------------------------------------------------- bad lines


@dataclass(frozen=True)
class BadLimit:
    """``--max-bad-lines``: an absolute count (``"100"``) or a share of lines read (``"0.1%"``)."""

    count: int | None = None
    fraction: float | None = None

    @classmethod
    def parse(cls, text: str | int | float | BadLimit | None) -> BadLimit:
        if isinstance(text, BadLimit):
            return text
        if text is None:
            text = DEFAULT_MAX_BAD
        if isinstance(text, int):
            text = str(text)
        if isinstance(text, float):
            text = f"{text * 100}%"
        value = text.strip()
        try:
            if value.endswith("%"):
                pct = float(value[:-1])
                if not 0 <= pct <= 100:
                    raise ValueError
                return cls(fraction=pct / 100.0)
            count = int(value)
            if count < 0:
                raise ValueError
            return cls(count=count)
        except ValueError:
            raise DatasetError(
                f"--max-bad-lines {text!r} is neither a count (e.g. 100) nor a percentage (e.g. 0.5%)"
            ) from None

    def allowed(self, lines_read: int) -> int:
        """How many bad lines a file of ``lines_read`` lines may have."""
        if self.count is not None:
            return self.count
        assert self.fraction is not None
        return int(self.fraction * lines_read)

    def __str__(self) -> str:
        if self.count is not None:
            return str(self.count)
        return f"{(self.fraction or 0.0) * 100:g}%"


@dataclass
class BadLines:
    """Counts malformed lines (or entries) of one input file and keeps the first few."""

    path: str
    limit: BadLimit
    option: str = "--max-bad-lines"
    count: int = 0
    lines_read: int = 0
    examples: list[tuple[int | str, str]] = field(default_factory=list)

    def add(self, where: int | str, reason: str) -> None:
        self.count += 1
        if isinstance(where, int) and where > self.lines_read:
            self.lines_read = where
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append((where, reason))
        # an absolute limit can fail early: no need to read the rest of a broken 30 GB file
        if self.limit.count is not None and self.count > self.limit.count:
            self.fail(partial=True)

    def describe(self) -> str:
        shown = "; ".join(f"{'line ' if isinstance(w, int) else ''}{w}: {r}" for w, r in self.examples)
        more = f" (first {len(self.examples)} shown)" if self.count > len(self.examples) else ""
        return f"{self.count} malformed of {self.lines_read} read in {self.path}{more}: {shown}"

    def fail(self, partial: bool = False) -> None:
        read = "so far " if partial else ""
        raise DatasetError(
            f"{self.path}: too many malformed lines ({self.count} {read}> allowed "
            f"{self.limit.allowed(self.lines_read)} by --max-bad-lines {self.limit}). "
            f"{self.describe()}. Fix or remove those lines, or raise the limit, "
            "e.g. --max-bad-lines 1% or --max-bad-lines 1000."
        )

    def check(self) -> None:
        """Raise :class:`DatasetError` when the file is over its limit (call after reading it)."""
        if self.count > self.limit.allowed(self.lines_read):
            self.fail()

    def summary(self) -> dict[str, Any]:
        return {
            "lines_read": self.lines_read,
            "malformed": self.count,
            "examples": [{"where": w, "reason": r} for w, r in self.examples],
        }


# --------------------------------------------------------------------------- progress


class Progress:
    """Row counter on a tqdm bar (updated in batches so it costs nothing per row)."""

    STEP = 1 << 16

    def __init__(self, desc: str, enabled: bool) -> None:
        self._bar: Any = None
        self._pending = 0
        if enabled:
            from tqdm import tqdm

            self._bar = tqdm(desc=desc, unit=" rows", unit_scale=True, mininterval=1.0)

    def tick(self) -> None:
        if self._bar is not None:
            self._pending += 1
            if self._pending >= self.STEP:
                self._bar.update(self._pending)
                self._pending = 0

    def close(self) -> None:
        if self._bar is not None:
            self._bar.update(self._pending)
            self._bar.close()
            self._bar = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --------------------------------------------------------------------------- ids and events

_TOKEN_BAD = re.compile(r"[\s\"]")
_TOKEN_BREAK = re.compile(r"[\t\n\r]")

#: Where an id was read, for its error message: a line number of the source file, or a description
#: (``"user 'u1' position 3"``) for sources without lines.
Where = int | str | None


def clean_token(raw: str, source: str = "", where: Where = None, role: str = "") -> str:
    """An id as RecBole token: no whitespace (it would split columns) and no double quote.

    Spaces (and other whitespace) become ``_``; a tab or line break is refused with a
    :class:`DatasetError` naming ``source`` (the input file) and ``where`` (its line): it is a
    broken field, usually a quoting mistake, and replacing it could merge two different ids."""
    if _TOKEN_BAD.search(raw):
        if _TOKEN_BREAK.search(raw):
            place = f"line {where}" if isinstance(where, int) else (where or "an id")
            raise DatasetError(
                f"{source or 'input'}: {place}: {role + ' ' if role else ''}id {raw!r} holds a tab or line break, "
                "which RecBole's tab-separated atomic files cannot hold (it would split the line); fix the id "
                "(or the quoting around it) in that file"
            )
        return _TOKEN_BAD.sub("_", raw.strip())
    return raw


class IdMap:
    """Maps raw string ids to dense ints in order of first appearance. ``source`` (the input file)
    and ``role`` (``"user"``, ``"item"``) name an id that cannot be a token in the error."""

    def __init__(self, source: str = "", role: str = "") -> None:
        self.index: dict[str, int] = {}
        self.tokens: list[str] = []
        self.source = source
        self.role = role

    def code(self, raw: str, where: Where = None) -> int:
        found = self.index.get(raw)
        if found is None:
            token = clean_token(raw, self.source, where, self.role)
            found = len(self.tokens)
            self.index[raw] = found
            self.tokens.append(token)
        return found

    def get(self, raw: str) -> int | None:
        return self.index.get(raw)

    def __len__(self) -> int:
        return len(self.tokens)


@dataclass
class Events:
    """Interactions as parallel numpy arrays of codes, in input order."""

    users: np.ndarray  # int32 codes into user_tokens
    items: np.ndarray  # int32 codes into item_tokens
    times: np.ndarray  # float64
    user_tokens: list[str]
    item_tokens: list[str]

    def __len__(self) -> int:
        return int(self.users.shape[0])

    def take(self, index: np.ndarray) -> Events:
        """Rows selected by a boolean mask or an index array (tokens are shared)."""
        return Events(self.users[index], self.items[index], self.times[index], self.user_tokens, self.item_tokens)


class EventBuffer:
    """Growable compact arrays (4 + 4 + 8 bytes per event), so 10M events take ~160 MB."""

    def __init__(self, source: str = "") -> None:
        self.users_map = IdMap(source, "user")
        self.items_map = IdMap(source, "item")
        self._users = array("i")
        self._items = array("i")
        self._times = array("d")

    def add(self, user: str, item: str, time: float, where: Where = None) -> None:
        """One event; ``where`` (the line it was read from) is only used in an error message."""
        self._users.append(self.users_map.code(user, where))
        self._items.append(self.items_map.code(item, where))
        self._times.append(time)

    def add_codes(self, user: int, item: int, time: float) -> None:
        self._users.append(user)
        self._items.append(item)
        self._times.append(time)

    def __len__(self) -> int:
        return len(self._users)

    def freeze(self) -> Events:
        return Events(
            np.frombuffer(self._users, dtype=np.int32) if len(self._users) else np.zeros(0, np.int32),
            np.frombuffer(self._items, dtype=np.int32) if len(self._items) else np.zeros(0, np.int32),
            np.frombuffer(self._times, dtype=np.float64) if len(self._times) else np.zeros(0, np.float64),
            self.users_map.tokens,
            self.items_map.tokens,
        )


# --------------------------------------------------------------------------- text

_SPACE = re.compile(r"\s+")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_TAG = re.compile(r"<[^<>]{0,400}>")


def strip_html(text: str) -> str:
    """Remove HTML tags and unescape entities (Amazon metadata carries some HTML)."""
    if "<" in text:
        text = _TAG.sub(" ", text)
    if "&" in text:
        text = html.unescape(text)
    return text


def clean_text(value: object, max_words: int | None = None) -> tuple[str, bool]:
    """Text safe for a TSV atomic file: one line, single spaces, no double quotes.

    Tabs, newlines and other whitespace runs become one space; control characters go;
    ``"`` becomes ``''`` (a field starting with a quote would be parsed as quoted by RecBole's
    pandas reader). Lists are joined with ", ". Returns ``(text, truncated)``; with ``max_words``
    the text keeps its first ``max_words`` space-separated words.
    """
    if value is None:
        return "", False
    if isinstance(value, (list, tuple)):
        value = ", ".join(str(v) for v in value if v is not None and str(v).strip())
    text = str(value)
    if _CONTROL.search(text):
        text = _CONTROL.sub(" ", text)
    if '"' in text:
        text = text.replace('"', "''")
    text = _SPACE.sub(" ", text).strip()
    if max_words and max_words > 0:
        words = text.split(" ")
        if len(words) > max_words:
            return " ".join(words[:max_words]), True
    return text, False
