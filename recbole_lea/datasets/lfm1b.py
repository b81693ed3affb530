"""Raw LFM-1b (tab-separated, no header) to atomic files; an item is a track.

Default column orders (the dataset's documentation; change them with the ``--*-columns`` options):

* ``LFM-1b_LEs.txt``:     user-id, artist-id, album-id, track-id, timestamp (unix seconds)
* ``LFM-1b_tracks.txt``:  track-id, track-name, artist-id
* ``LFM-1b_albums.txt``:  album-id, album-name, artist-id
* ``LFM-1b_artists.txt``: artist-id, artist-name

The paper samples 3 days of listening events: ``days`` keeps events with
``start <= timestamp < start + days * 86400``. The events file (~1 billion lines) is streamed and
only events inside the window are stored, as int arrays. A track's album is the album of its
first kept event (the tracks file has no album column); its artist comes from the tracks file,
else from that event. Cut into sessions (``--session-window``/``--session-gap``, see
:mod:`recbole_lea.datasets.sessions`), the session windows start at that slice's ``start``
unless ``--session-origin`` says otherwise.
"""

from __future__ import annotations

import os
from array import array
from dataclasses import dataclass

import numpy as np

from recbole_lea.datasets.common import BadLines, DatasetError, EventBuffer, IdMap, Progress, iter_lines
from recbole_lea.datasets.options import ConvertOptions
from recbole_lea.datasets.sessions import parse_instant
from recbole_lea.datasets.writer import (
    ConversionReport,
    DatasetSpec,
    TextField,
    finalize_events,
    write_dataset,
)

FILES = {
    "les": "LFM-1b_LEs.txt",
    "tracks": "LFM-1b_tracks.txt",
    "albums": "LFM-1b_albums.txt",
    "artists": "LFM-1b_artists.txt",
}
DEFAULT_COLUMNS = {
    "les": "user,artist,album,track,timestamp",
    "tracks": "track,name,artist",
    "albums": "album,name,artist",
    "artists": "artist,name",
}
REQUIRED_COLUMNS = {
    "les": ("user", "track", "timestamp"),
    "tracks": ("track", "name"),
    "albums": ("album", "name"),
    "artists": ("artist", "name"),
}
LFM_FIELDS = [TextField("title", "token_seq"), TextField("album", "token_seq"), TextField("artist", "token")]
LFM_TEMPLATE = "[item] track is titled {title}, from the album {album}, by {artist}"
DAY = 86400


LFM_VERB = "listened to"


def lfm_spec(name: str, verb: str | None = None) -> DatasetSpec:
    return DatasetSpec(
        name=name,
        text_fields=list(LFM_FIELDS),
        template=LFM_TEMPLATE,
        noun="track",
        command="lfm1b",
        time_comment="orders each sequence (unix seconds of the listening event)",
        verb=verb or LFM_VERB,
    )


@dataclass(frozen=True)
class Columns:
    """Positions of the named columns in one file; ``width`` = expected column count."""

    width: int
    index: dict[str, int]

    @classmethod
    def parse(cls, kind: str, spec: str | None) -> Columns:
        names = [c.strip() for c in (spec or DEFAULT_COLUMNS[kind]).split(",")]
        missing = [c for c in REQUIRED_COLUMNS[kind] if c not in names]
        if missing:
            raise DatasetError(
                f"--{kind}-columns {spec!r} lacks {missing}; default is {DEFAULT_COLUMNS[kind]!r} "
                "(use any other name, e.g. '-', for columns to ignore)"
            )
        return cls(width=len(names), index={n: i for i, n in enumerate(names)})

    def get(self, name: str) -> int | None:
        return self.index.get(name)


def resolve(folder: str | None, kind: str, path: str | None) -> str | None:
    """Explicit path, else ``<folder>/<standard name>`` (or its ``.gz``), else None."""
    if path:
        return path
    if folder:
        base = os.path.join(folder, FILES[kind])
        for candidate in (base, base + ".gz"):
            if os.path.isfile(candidate):
                return candidate
        if kind == "les":
            return base  # reported as missing by the reader
    return None


def parse_start(value: str | int | None) -> int | str:
    """``first`` (first event of the file), ``earliest`` (extra pass), unix seconds or an ISO date (UTC)."""
    if value is None or value == "first":
        return "first"
    if value == "earliest":
        return "earliest"
    if isinstance(value, int):
        return value
    text = str(value).strip()
    if text.lstrip("-").isdigit():
        return int(text)
    try:
        return int(parse_instant(text))
    except (ValueError, OverflowError):
        raise DatasetError(
            f"--start {value!r} is not 'first', 'earliest', unix seconds or an ISO date like 2013-06-01"
        ) from None


def _split(line: bytes, number: int, cols: Columns, bad: BadLines) -> list[str] | None:
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        bad.add(number, "not UTF-8")
        return None
    parts = text.split("\t")
    if len(parts) != cols.width:
        bad.add(number, f"{len(parts)} columns, expected {cols.width}")
        return None
    return parts


def _earliest(path: str, cols: Columns) -> int | None:
    t_col = cols.index["timestamp"]
    best: int | None = None
    for _number, line in iter_lines(path, "LFM-1b events file", "--les"):
        parts = line.split(b"\t")
        if len(parts) != cols.width:
            continue
        try:
            t = int(parts[t_col])
        except ValueError:
            continue
        if best is None or t < best:
            best = t
    return best


def convert_lfm1b(
    folder: str | None = None,
    name: str = "lfm",
    opts: ConvertOptions | None = None,
    *,
    les: str | None = None,
    tracks: str | None = None,
    albums: str | None = None,
    artists: str | None = None,
    days: float | None = None,
    start: str | int | None = None,
    columns: dict[str, str | None] | None = None,
) -> ConversionReport:
    """Convert LFM-1b (optionally a time window of it); returns the report."""
    opts = opts or ConvertOptions()
    spec = lfm_spec(name, opts.verb)
    spec.validate()
    columns = columns or {}
    cols = {kind: Columns.parse(kind, columns.get(kind)) for kind in FILES}
    paths = {
        "les": resolve(folder, "les", les),
        "tracks": resolve(folder, "tracks", tracks),
        "albums": resolve(folder, "albums", albums),
        "artists": resolve(folder, "artists", artists),
    }
    les_path = paths["les"]
    if not les_path:
        raise DatasetError("no LFM-1b events file: pass the LFM-1b folder or --les PATH")
    if days is not None and days <= 0:
        raise DatasetError(f"--days {days} must be positive")
    report = ConversionReport(name=name, command="lfm1b")
    lo, use_window = _window_start(start, days, les_path, cols["les"])
    events = _read_events(les_path, cols["les"], opts, report, lo=lo, days=days, use_window=use_window)
    sessions = opts.sessions
    if sessions is not None and events.lo is not None:
        sessions = sessions.anchored(events.lo)  # the slice's start (the paper's 3 days: one session per user)
    ev = finalize_events(
        events.buf.freeze(), report, min_inter=opts.min_inter, drop_duplicates=opts.drop_duplicates, sessions=sessions
    )

    wanted = np.zeros(len(ev.item_tokens), dtype=bool)
    wanted[ev.items] = True
    t_album, t_artist = events.track_codes()
    titles = _read_tracks(paths["tracks"], cols["tracks"], events, wanted, t_artist, opts, report)
    album_names = _names(
        paths["albums"], "albums", cols["albums"], events.albums, t_album[wanted[: len(t_album)]], opts, report
    )
    artist_names = _names(
        paths["artists"], "artists", cols["artists"], events.artists, t_artist[wanted[: len(t_artist)]], opts, report
    )
    texts = _item_texts(wanted, titles, t_album, t_artist, album_names, artist_names)
    write_dataset(ev, texts, spec, opts.out, report, yaml_out=opts.yaml_out, max_words=opts.max_words)
    return report


def _window_start(start: str | int | None, days: float | None, les: str, cols: Columns) -> tuple[int | None, bool]:
    """The window's start from ``--start`` (``None`` for ``first``: the first valid event) and
    whether there is a window (``--days``, or ``--start`` as unix seconds or a date)."""
    lo: int | None = None
    start_mode = parse_start(start)
    if start_mode == "earliest":
        lo = _earliest(les, cols)
    elif isinstance(start_mode, int):
        lo = start_mode
    use_window = days is not None or isinstance(start_mode, int)
    return lo, use_window


@dataclass
class _EventPass:
    """The events pass: the kept events, each track's album and artist codes (``-1``: none) from
    its first kept event, and the window's start (``None`` when it never opened)."""

    buf: EventBuffer
    albums: IdMap
    artists: IdMap
    track_album: array
    track_artist: array
    lo: int | None

    def track_codes(self) -> tuple[np.ndarray, np.ndarray]:
        """Album and artist code of each track as int32 arrays (the artists' a writable copy)."""
        t_album = np.frombuffer(self.track_album, dtype=np.int32) if len(self.track_album) else np.zeros(0, np.int32)
        t_artist = (
            np.frombuffer(self.track_artist, dtype=np.int32).copy() if len(self.track_artist) else np.zeros(0, np.int32)
        )
        return t_album, t_artist


def _read_events(
    path: str,
    c: Columns,
    opts: ConvertOptions,
    report: ConversionReport,
    *,
    lo: int | None,
    days: float | None,
    use_window: bool,
) -> _EventPass:
    """Stream the events file, keeping the valid events inside the window (when there is one);
    reports the file and the window."""
    u_col, tr_col, t_col = c.index["user"], c.index["track"], c.index["timestamp"]
    al_col, ar_col = c.get("album"), c.get("artist")
    buf = EventBuffer(path)
    albums_map, artists_map = IdMap(path, "album"), IdMap(path, "artist")
    track_album, track_artist = array("i"), array("i")
    bad = opts.bad_lines(path)
    outside = last = 0
    hi: float | None = None
    with Progress("listening events", opts.progress) as bar:
        for number, line in iter_lines(path, "LFM-1b events file", "--les"):
            last = number
            bar.tick()
            parts = _split(line, number, c, bad)
            if parts is None:
                continue
            try:
                t = int(parts[t_col])
            except ValueError:
                bad.add(number, f"timestamp {parts[t_col][:30]!r} is not an integer")
                continue
            user, track = parts[u_col], parts[tr_col]
            if not user or not track:
                bad.add(number, "empty user or track id")
                continue
            if use_window:
                if lo is None:
                    lo = t  # --start first: the window opens at the first valid event
                if hi is None:
                    hi = lo + days * DAY if days is not None else float("inf")
                if t < lo or t >= hi:
                    outside += 1
                    continue
            code = buf.items_map.get(track)
            if code is None:
                code = buf.items_map.code(track, number)
                album = parts[al_col] if al_col is not None else ""
                artist = parts[ar_col] if ar_col is not None else ""
                track_album.append(albums_map.code(album) if album and album != "-1" else -1)
                track_artist.append(artists_map.code(artist) if artist and artist != "-1" else -1)
            buf.add_codes(buf.users_map.code(user, number), code, float(t))
    bad.lines_read = max(bad.lines_read, last)
    report.add_file("events", bad)
    bad.check()
    if use_window:
        report.set("window_start", lo if lo is not None else 0)
        report.set("window_end", int(hi) if hi is not None and hi != float("inf") else 0)
        report.set("events_outside_window", outside)
    return _EventPass(buf, albums_map, artists_map, track_album, track_artist, lo)


def _read_tracks(
    path: str | None,
    tc: Columns,
    events: _EventPass,
    wanted: np.ndarray,
    t_artist: np.ndarray,
    opts: ConvertOptions,
    report: ConversionReport,
) -> dict[int, str]:
    """``code -> title`` of the kept tracks from the tracks file; a track's artist there replaces
    the one of its first event (in ``t_artist``)."""
    titles: dict[int, str] = {}
    if not path:
        report.notes.append("no tracks file: titles are empty")
        return titles
    tbad = opts.bad_lines(path)
    last = 0
    id_col, name_col, art_col = tc.index["track"], tc.index["name"], tc.get("artist")
    with Progress("tracks", opts.progress) as bar:
        for number, line in iter_lines(path, "LFM-1b tracks file", "--tracks"):
            last = number
            bar.tick()
            parts = _split(line, number, tc, tbad)
            if parts is None:
                continue
            code = events.buf.items_map.get(parts[id_col])
            if code is None or not wanted[code] or code in titles:
                continue
            titles[code] = parts[name_col]
            if art_col is not None and parts[art_col]:
                t_artist[code] = events.artists.code(parts[art_col])
    tbad.lines_read = max(tbad.lines_read, last)
    report.add_file("tracks", tbad)
    tbad.check()
    return titles


def _item_texts(
    wanted: np.ndarray,
    titles: dict[int, str],
    t_album: np.ndarray,
    t_artist: np.ndarray,
    album_names: dict[int, str],
    artist_names: dict[int, str],
) -> dict[int, list[object]]:
    """``code -> [title, album, artist]`` of the kept tracks that have a title or any name."""
    texts: dict[int, list[object]] = {}
    for code in np.flatnonzero(wanted):
        code = int(code)
        al, ar = int(t_album[code]), int(t_artist[code])
        row = [
            titles.get(code, ""),
            album_names.get(al, "") if al >= 0 else "",
            artist_names.get(ar, "") if ar >= 0 else "",
        ]
        if code in titles or any(row):
            texts[code] = row
    return texts


def _names(
    path: str | None,
    kind: str,
    cols: Columns,
    ids: IdMap,
    needed_codes: np.ndarray,
    opts: ConvertOptions,
    report: ConversionReport,
) -> dict[int, str]:
    """``code -> name`` from the albums or artists file, for the needed codes only."""
    if not path:
        report.notes.append(f"no {kind} file: {kind[:-1]} names are empty")
        return {}
    needed = np.zeros(len(ids), dtype=bool)
    needed_codes = needed_codes[needed_codes >= 0]
    needed[needed_codes] = True
    key = kind[:-1]
    id_col, name_col = cols.index[key], cols.index["name"]
    names: dict[int, str] = {}
    bad = opts.bad_lines(path)
    last = 0
    with Progress(kind, opts.progress) as bar:
        for number, line in iter_lines(path, f"LFM-1b {kind} file", f"--{kind}"):
            last = number
            bar.tick()
            parts = _split(line, number, cols, bad)
            if parts is None:
                continue
            code = ids.get(parts[id_col])
            if code is not None and needed[code] and code not in names:
                names[code] = parts[name_col]
    bad.lines_read = max(bad.lines_read, last)
    report.add_file(kind, bad)
    bad.check()
    return names
