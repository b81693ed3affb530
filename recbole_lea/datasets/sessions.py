"""Cutting each user's log into sessions, each session one RecBole sequence.

Two ways, chosen by one option of every converter whose data has timestamps:

* ``--session-window DAYS``: fixed windows of ``DAYS`` days, the same windows for every user:
  window ``k`` is ``[origin + k * DAYS * 86400, origin + (k + 1) * DAYS * 86400)`` (unix seconds).
  ``origin`` is ``--session-origin`` (unix seconds or an ISO date, timezone.utc), by default
  1970-01-01T00:00:00Z, so windows are calendar-aligned in UTC (``--session-window 1`` = UTC
  days); LFM-1b's default origin is the start of its ``--days``/``--start`` slice, so the paper's
  3-day slice cut with ``--session-window 3`` is one session per user. A session is a user's
  events inside one window.
* ``--session-gap HOURS``: a user's events in time order; a new session starts where more than
  ``HOURS`` hours pass between two consecutive events of the user (a gap of exactly ``HOURS``
  stays in the session).

Each session becomes one sequence with user id ``<user>|<k>``: the converter's user token, the
separator ``|`` and ``k = 1, 2, ...``, the session's number among the user's sessions in time
order, counted before ``--min-inter`` (so a session keeps its id whatever the filter drops). The
user is the text before the last ``|`` (:func:`split_session_id`), also when the user id holds a
``|`` itself, and two sessions never share an id. Rows that tie on time keep their input order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any, Literal

import numpy as np

from recbole_lea.datasets.common import DatasetError, Events

#: between the user token and the session number of a session's user id: ``<user>|<k>``
SESSION_SEP = "|"
DAY = 86400.0
HOUR = 3600.0
#: times above this look like milliseconds (year 5138 in seconds); a warning says so
MILLISECONDS_LIKELY = 1e11


def parse_instant(value: str | float | int) -> float:
    """Unix seconds from a number or an ISO date/time (UTC when it has no zone); ``ValueError``
    when it is neither."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        t = float(value)
    else:
        text = str(value).strip()
        try:
            t = float(text)
        except ValueError:
            moment = datetime.fromisoformat(text)
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=timezone.utc)
            t = moment.timestamp()
    if not math.isfinite(t):
        raise ValueError(f"{value!r} is not finite")
    return t


def iso_utc(t: float) -> str:
    """``1370044800 -> '2013-06-01T00:00:00Z'`` (for reports and yaml comments)."""
    return datetime.fromtimestamp(t, timezone.utc).isoformat().replace("+00:00", "Z")


def split_session_id(session_id: str) -> tuple[str, int]:
    """``"u7|3" -> ("u7", 3)``: the user and the session number of a session's user id."""
    user, sep, k = session_id.rpartition(SESSION_SEP)
    if not sep or not k.isdigit():
        raise ValueError(f"{session_id!r} is not a session id <user>{SESSION_SEP}<k>")
    return user, int(k)


def _number(value: float | str, option: str, unit: str, example: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if not math.isfinite(number) or number <= 0:
        raise DatasetError(f"{option} {value!r} must be a positive number of {unit}, e.g. {option} {example}")
    return number


@dataclass(frozen=True)
class SessionCut:
    """How to cut logs into sessions (``--session-window``, ``--session-gap``, ``--session-origin``)."""

    mode: Literal["window", "gap"]
    size: float  # days (window) or hours (gap), as given
    origin: float | None = None  # window start, unix seconds; None: the converter's default (0, or LFM-1b's slice)

    @classmethod
    def from_options(
        cls,
        window_days: float | str | None = None,
        gap_hours: float | str | None = None,
        origin: float | str | None = None,
    ) -> SessionCut | None:
        """The cut the options ask for (``None``: no session option); bad values raise one
        :class:`DatasetError` naming the option and the fix."""
        if window_days is not None and gap_hours is not None:
            raise DatasetError(
                "--session-window and --session-gap are exclusive: pass one (--session-window DAYS: fixed "
                "windows, the paper's LFM uses 3; --session-gap HOURS: a new session after that much inactivity)"
            )
        if origin is not None and window_days is None:
            raise DatasetError(
                f"--session-origin {origin!r} anchors --session-window windows only: add --session-window DAYS "
                "or drop --session-origin"
            )
        if window_days is not None:
            start: float | None = None
            if origin is not None:
                try:
                    start = parse_instant(origin)
                except (ValueError, OverflowError):
                    raise DatasetError(
                        f"--session-origin {origin!r} is not unix seconds or an ISO date/time like 2013-06-01"
                    ) from None
            return cls("window", _number(window_days, "--session-window", "days", "3"), start)
        if gap_hours is not None:
            return cls("gap", _number(gap_hours, "--session-gap", "hours", "0.5"))
        return None

    @property
    def option(self) -> str:
        """The option as typed, for messages: ``--session-window 3``."""
        return f"--session-{self.mode} {self.size:g}"

    @property
    def seconds(self) -> float:
        return self.size * (DAY if self.mode == "window" else HOUR)

    def anchored(self, default_origin: float) -> SessionCut:
        """This cut with ``default_origin`` as window start unless ``--session-origin`` set one."""
        if self.mode == "window" and self.origin is None:
            return replace(self, origin=float(default_origin))
        return self

    def describe(self) -> str:
        if self.mode == "window":
            origin = self.origin or 0.0
            return (
                f"{self.size:g}-day windows from {iso_utc(origin)} (unix {origin:g}), the same for every user: "
                f"window k = [origin + k*{self.seconds:g} s, origin + (k+1)*{self.seconds:g} s)"
            )
        return f"a new session after more than {self.size:g} hours ({self.seconds:g} s) without an event of the user"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mode": self.mode, "option": self.option}
        if self.mode == "window":
            out.update(window_days=self.size, origin=self.origin or 0.0, origin_utc=iso_utc(self.origin or 0.0))
        else:
            out["gap_hours"] = self.size
        out.update(
            separator=SESSION_SEP,
            user_id_format=f"<user>{SESSION_SEP}<k>",
            description=self.describe(),
        )
        return out

    def needs_time(self, source: str, fix: str) -> DatasetError:
        """The error for data without timestamps: names the option and the fix."""
        return DatasetError(f"{self.option} cuts sessions by time, but {source}; {fix}")


@dataclass
class Sessions:
    """A cut log: ``row_session`` (per row, session code), and per session its user code and number."""

    row_session: np.ndarray  # int64, one per row of the input events
    session_user: np.ndarray  # int64 user code of each session
    session_number: np.ndarray  # int64 k = 1, 2, ... among the user's sessions

    def __len__(self) -> int:
        return int(self.session_user.shape[0])


def cut_sessions(users: np.ndarray, times: np.ndarray, cut: SessionCut) -> Sessions:
    """Cut the rows (``users``, ``times``, any order) into sessions; session codes are numbered
    by user code, then time. Vectorised: two stable sorts and a few passes over the rows."""
    n = int(users.shape[0])
    if n == 0:
        empty = np.zeros(0, dtype=np.int64)
        return Sessions(empty, empty, empty)
    order = np.argsort(times, kind="stable")
    order = order[np.argsort(users[order], kind="stable")]
    u = users[order]
    t = times[order]
    new = np.empty(n, dtype=bool)
    new[0] = True
    np.not_equal(u[1:], u[:-1], out=new[1:])
    if cut.mode == "window":
        window = np.floor((t - (cut.origin or 0.0)) / cut.seconds)
        new[1:] |= window[1:] != window[:-1]
    else:
        new[1:] |= np.diff(t) > cut.seconds
    sorted_session = np.cumsum(new, dtype=np.int64) - 1
    starts = np.flatnonzero(new)
    session_user = u[starts].astype(np.int64)
    n_sessions = starts.shape[0]
    first = np.empty(n_sessions, dtype=bool)
    first[0] = True
    np.not_equal(session_user[1:], session_user[:-1], out=first[1:])
    user_start = np.flatnonzero(first)
    lengths = np.diff(np.append(user_start, n_sessions))
    number = np.arange(n_sessions, dtype=np.int64) - np.repeat(user_start, lengths) + 1
    row_session = np.empty(n, dtype=np.int64)
    row_session[order] = sorted_session
    return Sessions(row_session, session_user, number)


def session_events(ev: Events, cut: SessionCut) -> tuple[Events, Sessions]:
    """``ev`` with each row's user replaced by its session (tokens ``<user>|<k>``)."""
    sessions = cut_sessions(ev.users, ev.times, cut)
    tokens = [
        f"{ev.user_tokens[u]}{SESSION_SEP}{k}"
        for u, k in zip(sessions.session_user.tolist(), sessions.session_number.tolist())
    ]
    return Events(sessions.row_session.astype(np.int32), ev.items, ev.times, tokens, ev.item_tokens), sessions
