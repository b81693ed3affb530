"""Output side shared by every converter.

The paper's k-core filter (to a fixed point), the row order of the written ``.inter``, the
atomic write of ``<out>/<name>/`` (temp dir next to the target, then rename) and the dataset
yaml with its comments.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from recbole_lea.datasets.common import BadLines, DatasetError, Events, clean_text
from recbole_lea.datasets.sessions import MILLISECONDS_LIKELY, SESSION_SEP, SessionCut, session_events

INTER_HEADER = "user_id:token\titem_id:token\ttimestamp:float\n"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_RESERVED = {"user_id", "item_id", "timestamp"}
_CHUNK = 1 << 18
_WORDS = re.compile(r"[A-Za-z][A-Za-z' -]*")
#: ``le_item_verb`` when a converter has no better one: "The user has interacted with these items".
DEFAULT_VERB = "interacted with"
logger = logging.getLogger("recbole_lea.datasets")


@dataclass(frozen=True)
class TextField:
    """One ``.item`` text column: ``token`` (one categorical value) or ``token_seq`` (words)."""

    name: str
    kind: str = "token_seq"


@dataclass
class DatasetSpec:
    """What the yaml says about a dataset: its text fields, LE sentence template, noun and verb
    (the LE instruction reads "The user has <verb> these <noun>s ...")."""

    name: str
    text_fields: list[TextField]
    template: str
    noun: str
    command: str  # sub-command of `python -m recbole_lea.datasets` that writes it
    time_comment: str = "orders each sequence (unix seconds)"
    verb: str = DEFAULT_VERB

    def validate(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise DatasetError(
                f"dataset name {self.name!r} must be letters, digits, '_', '-' or '.' (used as folder and file name)"
            )
        names = [f.name for f in self.text_fields]
        for f in self.text_fields:
            if not _FIELD.fullmatch(f.name) or f.name in _RESERVED:
                raise DatasetError(
                    f"text field name {f.name!r} is not usable: use letters, digits and '_', not {sorted(_RESERVED)}"
                )
            if f.kind not in ("token", "token_seq"):
                raise DatasetError(f"text field {f.name!r} has kind {f.kind!r}; use token or token_seq")
        if len(set(names)) != len(names):
            raise DatasetError(f"duplicate text field names: {names}")
        if "[item]" not in self.template:
            raise DatasetError(f"item template {self.template!r} must contain the [item] marker")
        unknown = [p for p in _PLACEHOLDER.findall(self.template) if p not in names]
        if unknown:
            raise DatasetError(f"item template {self.template!r} names {unknown}, which are not text fields {names}")
        if not re.fullmatch(r"[A-Za-z][A-Za-z -]*", self.noun):
            raise DatasetError(f"item noun {self.noun!r} must be a plain word, e.g. product")
        check_verb(self.verb)


def check_verb(verb: str) -> None:
    """``--verb``: a past participle for "The user has <verb> these <noun>s" (letters, spaces, ' and -)."""
    if not _WORDS.fullmatch(verb) or verb != verb.strip() or "  " in verb:
        raise DatasetError(
            f"--verb {verb!r} must be plain words completing 'The user has ___ these items', "
            "e.g. watched, bought, 'listened to'"
        )


def default_template(noun: str, fields: Sequence[str]) -> str:
    """``[item] {title}, {category}, {brand}`` for sources without a hand-written sentence: the
    item text only, in field order, so a cut sentence (the cpu profile keeps 8 tokens) spends its
    tokens on the values, not on field names. Without text fields: ``[item] <noun>``."""
    parts = ", ".join(f"{{{f}}}" for f in fields)
    return f"[item] {parts}" if parts else f"[item] {noun}"


# --------------------------------------------------------------------------- report


@dataclass
class ConversionReport:
    """Everything a conversion counted; printed by the CLI and saved as conversion_report.json."""

    name: str
    command: str
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    dataset_dir: str = ""
    yaml_path: str | None = None
    sessions: SessionCut | None = None  # how the logs were cut into sessions (None: one sequence per user)

    def add_file(self, role: str, bad: BadLines) -> None:
        self.files[role] = {"path": bad.path, **bad.summary()}

    def set(self, key: str, value: int) -> None:
        self.counts[key] = int(value)

    def warn(self, message: str) -> None:
        """Log ``message`` once as a warning (logger ``recbole_lea.datasets``; the CLI prints it on
        stderr) and keep it in conversion_report.json; the printed report does not repeat it."""
        if message not in self.warnings:
            self.warnings.append(message)
            logger.warning("dataset %s: %s", self.name, message)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "command": self.command,
            "files": self.files,
            "counts": self.counts,
            "notes": self.notes,
            "warnings": self.warnings,
            "dataset_dir": self.dataset_dir,
            "yaml_path": self.yaml_path,
        }
        if self.sessions is not None:  # absent without a session option: default reports stay as they were
            out["sessions"] = {
                **self.sessions.to_dict(),
                "min_inter_after_cutting": self.counts.get("filter_min_inter", 0),
            }
        return out

    def format(self) -> str:
        lines = [f"dataset {self.name} ({self.command})"]
        for role, info in self.files.items():
            lines.append(
                f"  {role}: {info['path']}: {info['lines_read']} lines/entries read, {info['malformed']} malformed"
            )
            for ex in info["examples"]:
                where = ex["where"]
                lines.append(f"      {'line ' if isinstance(where, int) else ''}{where}: {ex['reason']}")
        width = max((len(k) for k in self.counts), default=0)
        for key, value in self.counts.items():
            lines.append(f"  {key.ljust(width)}  {value:>12,}")
        if self.sessions is not None:
            lines.append(f"  sessions ({self.sessions.option}): {self.sessions.describe()}")
            lines.append(f"      each session is one sequence, user_id '<user>{SESSION_SEP}<k>'")
        lines.extend(f"  note: {n}" for n in self.notes)
        if self.dataset_dir:
            lines.append(f"  wrote {self.dataset_dir}")
        if self.yaml_path:
            lines.append(f"  wrote {self.yaml_path}")
        return "\n".join(lines)


# --------------------------------------------------------------------------- filtering and order


def filter_min_inter(users: np.ndarray, items: np.ndarray, k: int) -> tuple[np.ndarray, int]:
    """The paper's filter: drop items and sequences with fewer than ``k`` interactions, repeated
    until nothing changes. Returns ``(keep_mask, rounds)``; ``rounds`` counts passes that removed rows.
    """
    keep = np.ones(users.shape[0], dtype=bool)
    if k <= 1 or users.shape[0] == 0:
        return keep, 0
    n_users = int(users.max()) + 1
    n_items = int(items.max()) + 1
    rounds = 0
    while True:
        ucount = np.bincount(users[keep], minlength=n_users)
        icount = np.bincount(items[keep], minlength=n_items)
        new_keep = keep & (ucount[users] >= k) & (icount[items] >= k)
        if int(new_keep.sum()) == int(keep.sum()):
            return keep, rounds
        keep = new_keep
        rounds += 1


def duplicate_mask(ev: Events) -> np.ndarray:
    """True for rows repeating an earlier row's (user, item, time); the first occurrence is False."""
    n = len(ev)
    dup = np.zeros(n, dtype=bool)
    if n < 2:
        return dup
    key = ev.users.astype(np.int64) * (int(ev.items.max()) + 1) + ev.items.astype(np.int64)
    order = np.argsort(ev.times, kind="stable")
    order = order[np.argsort(key[order], kind="stable")]
    k, t = key[order], ev.times[order]
    same = (k[1:] == k[:-1]) & (t[1:] == t[:-1])
    dup[order[1:][same]] = True
    return dup


_DIGITS = re.compile(r"[0-9]{1,18}")


def natural_order(tokens: Sequence[str], codes: np.ndarray) -> np.ndarray:
    """``codes`` sorted by their token: numerically when every token is a decimal number, else
    as strings (the order of users in ``.inter`` and of rows in ``.item``)."""
    codes = np.unique(codes)
    toks = [tokens[c] for c in codes]
    if all(_DIGITS.fullmatch(t) for t in toks):
        order = sorted(range(len(toks)), key=lambda j: (int(toks[j]), toks[j]))
    else:
        order = sorted(range(len(toks)), key=lambda j: toks[j])
    return codes[np.asarray(order, dtype=np.int64)] if len(order) else codes


def sort_rows(ev: Events, rank: np.ndarray | None = None) -> Events:
    """Rows by user (natural token order, or ``rank[user code]`` when given), then timestamp; a
    stable sort keeps input order on ties."""
    if len(ev) == 0:
        return ev
    if rank is None:
        sorted_users = natural_order(ev.user_tokens, ev.users)
        rank = np.zeros(len(ev.user_tokens), dtype=np.int64)
        rank[sorted_users] = np.arange(sorted_users.shape[0])
    order = np.argsort(ev.times, kind="stable")
    order = order[np.argsort(rank[ev.users[order]], kind="stable")]
    return ev.take(order)


def finalize_events(
    ev: Events,
    report: ConversionReport,
    *,
    min_inter: int = 0,
    drop_duplicates: bool = False,
    keep_order: bool = False,
    sessions: SessionCut | None = None,
) -> Events:
    """Count duplicates (drop them when asked), cut the logs into sessions (when asked: each
    session becomes one sequence), apply the k filter to the sequences, order the rows."""
    report.set("interactions_parsed", len(ev))
    dup = duplicate_mask(ev)
    n_dup = int(dup.sum())
    report.set("duplicate_user_item_time_rows", n_dup)
    if drop_duplicates and n_dup:
        ev = ev.take(~dup)
        report.set("duplicate_rows_dropped", n_dup)
    elif n_dup:
        report.notes.append(
            f"{n_dup} rows repeat an earlier (user, item, timestamp) and were kept; --drop-duplicates removes them"
        )
    report.set("users_before_filter", np.unique(ev.users).shape[0])
    report.set("items_before_filter", np.unique(ev.items).shape[0])
    report.set("interactions_before_filter", len(ev))
    session_rank: np.ndarray | None = None
    session_user: np.ndarray | None = None
    if sessions is not None:
        ev, session_rank, session_user = _cut(ev, sessions, report)
    if min_inter > 1:
        keep, rounds = filter_min_inter(ev.users, ev.items, min_inter)
        report.set("filter_min_inter", min_inter)
        report.set("filter_rounds", rounds)
        report.set("interactions_removed_by_filter", int((~keep).sum()))
        ev = ev.take(keep)
    if len(ev) == 0:
        hint = f"; lower --min-inter (now {min_inter})" if min_inter > 1 else ""
        raise DatasetError(f"no interactions left to write for dataset {report.name}{hint}")
    if not keep_order:
        ev = sort_rows(ev, session_rank)
    ucount = np.bincount(ev.users)
    report.set("sequences", int((ucount > 0).sum()))
    if session_user is not None:
        report.set("sessions", int((ucount > 0).sum()))
        report.set("session_users", np.unique(session_user[np.unique(ev.users)]).shape[0])
    report.set("items", np.unique(ev.items).shape[0])
    report.set("interactions", len(ev))
    n_single = int((ucount == 1).sum())
    report.set("users_with_one_interaction", n_single)
    if n_single:
        who = "sessions" if sessions is not None else "users"
        report.notes.append(
            f"{n_single} {who} have a single interaction (no training target); --min-inter 2 or more removes them"
        )
    return ev


def _cut(ev: Events, cut: SessionCut, report: ConversionReport) -> tuple[Events, np.ndarray, np.ndarray]:
    """``ev`` cut into sessions (each one sequence), the row-order rank of each session (the
    user's natural order, then the session number) and each session's user code."""
    report.sessions = cut
    if len(ev) and float(np.median(ev.times)) > MILLISECONDS_LIKELY:
        report.warn(
            f"{cut.option}: the timestamps look like milliseconds (median {float(np.median(ev.times)):.0f}); "
            "sessions are cut in seconds, so divide the times by 1000 first"
        )
    users = natural_order(ev.user_tokens, ev.users)
    user_rank = np.zeros(len(ev.user_tokens), dtype=np.int64)
    user_rank[users] = np.arange(users.shape[0])
    cut_ev, sessions = session_events(ev, cut)
    order = np.lexsort((sessions.session_number, user_rank[sessions.session_user]))
    rank = np.empty(len(sessions), dtype=np.int64)
    rank[order] = np.arange(len(sessions))
    report.set("sessions_before_filter", len(sessions))
    return cut_ev, rank, sessions.session_user


# --------------------------------------------------------------------------- yaml


def render_dataset_yaml(spec: DatasetSpec, sessions: SessionCut | None = None, min_inter: int = 0) -> str:
    """The dataset yaml: RecBole's keys plus the LE's, every key with a one-line comment. A
    dataset cut into ``sessions`` says so in comments (the keys are the same)."""
    spec.validate()
    user_comment = "one user = one interaction sequence"
    if sessions is not None:
        user_comment = f"one session = one interaction sequence: '<user>{SESSION_SEP}<k>'"
    fields = [f.name for f in spec.text_fields]
    item_cols = ", ".join(["item_id", *fields])
    rows: list[tuple[str, str, str]] = [
        ("field_separator", json.dumps("\t"), "columns of the atomic files are tab-separated"),
        ("seq_separator", json.dumps(" "), "words of a token_seq value are space-separated"),
        ("USER_ID_FIELD", "user_id", user_comment),
        ("ITEM_ID_FIELD", "item_id", "item column of .inter and .item"),
        ("TIME_FIELD", "timestamp", spec.time_comment),
        ("load_col", "", "columns RecBole loads from each atomic file"),
        ("  inter", "[user_id, item_id, timestamp]", "interactions (no rating: one kind of behaviour)"),
        ("  item", f"[{item_cols}]", "item id and the item text fields"),
        ("normalize_all", "False", "never rescale float fields (timestamps, later the LE rewards/states)"),
        ("item_text_fields", f"[{', '.join(fields)}]", ".item columns the LE may read (token_seq = words)"),
        (
            "le_item_template",
            json.dumps(spec.template),
            "item sentence: [item] = the item token, {field} = .item column",
        ),
        ("le_item_noun", spec.noun, "noun of the LE instruction prompt"),
        ("le_item_verb", json.dumps(spec.verb), f"the LE instruction: 'The user has {spec.verb} these {spec.noun}s'"),
    ]
    width = min(max(len(k) + 2 + len(v) for k, v, _ in rows), 56)
    out = [
        f"# Dataset {spec.name}: written by `python -m recbole_lea.datasets {spec.command}`.",
        "# Regenerate it with that command rather than editing it; files: atomic_datasets/"
        f"{spec.name}/{spec.name}.inter and .item",
    ]
    if sessions is not None:
        flt = f"--min-inter {min_inter} applied to sessions and items after cutting" if min_inter > 1 else "no filter"
        out += [
            f"# Sessions ({sessions.option}): {sessions.describe()}.",
            f"# Each session is one sequence, user_id '<user>{SESSION_SEP}<k>' (k = 1, 2, ... per user in time order,",
            f"# numbered before filtering; the user is the text before the last '{SESSION_SEP}'); {flt}.",
        ]
    for key, value, comment in rows:
        text = f"{key}: {value}" if value else f"{key}:"
        out.append(f"{text.ljust(width)}  # {comment}")
    return "\n".join(out) + "\n"


def _write_text_atomic(path: str, text: str) -> str:
    """Write ``text`` to a temp file next to ``path``; return the temp path (not yet renamed)."""
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=parent, prefix=f".{os.path.basename(path)}.tmp-")
    with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
        fh.write(text)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600
    return tmp


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# --------------------------------------------------------------------------- writing


def _format_times(times: np.ndarray) -> list[str] | np.ndarray:
    if times.size and np.all(np.isfinite(times)) and np.all(times == np.round(times)) and np.abs(times).max() < 2**53:
        return times.astype(np.int64).astype(str)
    return [repr(float(t)) for t in times]


def write_inter_file(path: str, ev: Events) -> None:
    """``user_id:token, item_id:token, timestamp:float`` rows in the order of ``ev``."""
    utok = np.asarray(ev.user_tokens, dtype=object)
    itok = np.asarray(ev.item_tokens, dtype=object)
    with open(path, "w", encoding="utf-8", newline="\n") as fh:
        fh.write(INTER_HEADER)
        for start in range(0, len(ev), _CHUNK):
            stop = start + _CHUNK
            users = utok[ev.users[start:stop]]
            items = itok[ev.items[start:stop]]
            times = _format_times(ev.times[start:stop])
            fh.write("".join(f"{u}\t{i}\t{t}\n" for u, i, t in zip(users, items, times)))


def write_item_file(
    path: str,
    ev: Events,
    spec: DatasetSpec,
    texts: Mapping[int, Sequence[object]],
    report: ConversionReport,
    max_words: int | None,
) -> None:
    """One row per item of ``ev`` (natural token order); items without metadata get empty text."""
    header = "\t".join(["item_id:token", *(f"{f.name}:{f.kind}" for f in spec.text_fields)])
    n_fields = len(spec.text_fields)
    missing = no_text = truncated = 0
    filled = [0] * n_fields
    with open(path, "w", encoding="utf-8", newline="\n") as fh:
        fh.write(header + "\n")
        for code in natural_order(ev.item_tokens, ev.items):
            values = texts.get(int(code))
            if values is None:
                missing += 1
                values = [""] * n_fields
            cells = []
            for j in range(n_fields):
                text, cut = clean_text(values[j] if j < len(values) else "", max_words)
                truncated += cut
                if text:
                    filled[j] += 1
                cells.append(text)
            if not any(cells):
                no_text += 1
            fh.write("\t".join([ev.item_tokens[code], *cells]) + "\n")  # no trailing tab without fields
    report.set("items_without_metadata", missing)
    report.set("items_without_any_text", no_text)
    report.set("text_values_truncated", truncated)
    for f, n in zip(spec.text_fields, filled):
        report.set(f"items_with_{f.name}", n)
    if missing:
        report.notes.append(
            f"{missing} items of the interactions have no metadata row; they keep an empty-text .item row"
        )
    if truncated:
        report.notes.append(f"{truncated} text values were cut to --max-words {max_words}")


def _commit_dir(tmp: str, target: str, overwrite: bool) -> bool:
    """Rename ``tmp`` to ``target``. With ``overwrite`` an existing target is moved aside first
    and removed after; without it an existing target wins and ``tmp`` is discarded (False)."""
    if not os.path.lexists(target):
        try:
            os.rename(tmp, target)
            return True
        except OSError:
            if overwrite or not os.path.isdir(target):
                raise
            shutil.rmtree(tmp, ignore_errors=True)  # another process finished first
            return False
    if not overwrite:
        shutil.rmtree(tmp, ignore_errors=True)
        return False
    old = tempfile.mkdtemp(dir=os.path.dirname(target), prefix=f".{os.path.basename(target)}.old-")
    aside = os.path.join(old, "previous")
    os.rename(target, aside)
    try:
        os.rename(tmp, target)
    except OSError:
        os.rename(aside, target)
        raise
    finally:
        shutil.rmtree(old, ignore_errors=True)
    return True


def write_dataset(
    ev: Events,
    texts: Mapping[int, Sequence[object]],
    spec: DatasetSpec,
    out_root: str,
    report: ConversionReport,
    *,
    yaml_out: str | None = None,
    max_words: int | None = None,
    overwrite: bool = True,
) -> str:
    """Write ``<out_root>/<name>/`` (.inter, .item, <name>.yaml, conversion_report.json)
    atomically, and the yaml to ``yaml_out`` when given. Returns the dataset folder."""
    spec.validate()
    out_root = os.path.abspath(out_root)
    os.makedirs(out_root, exist_ok=True)
    target = os.path.join(out_root, spec.name)
    tmp = tempfile.mkdtemp(dir=out_root, prefix=f".{spec.name}.tmp-")
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700; the dataset folder gets normal permissions
    yaml_tmp: str | None = None
    try:
        write_inter_file(os.path.join(tmp, f"{spec.name}.inter"), ev)
        write_item_file(os.path.join(tmp, f"{spec.name}.item"), ev, spec, texts, report, max_words)
        yaml_text = render_dataset_yaml(spec, report.sessions, report.counts.get("filter_min_inter", 0))
        with open(os.path.join(tmp, f"{spec.name}.yaml"), "w", encoding="utf-8", newline="\n") as fh:
            fh.write(yaml_text)
        report.dataset_dir = target
        if yaml_out:
            yaml_tmp = _write_text_atomic(yaml_out, yaml_text)
            report.yaml_path = os.path.abspath(yaml_out)
        with open(os.path.join(tmp, "conversion_report.json"), "w", encoding="utf-8") as fh:
            json.dump(report.to_dict(), fh, indent=2)
            fh.write("\n")
        committed = _commit_dir(tmp, target, overwrite)
        if yaml_tmp is not None:
            if committed:
                os.replace(yaml_tmp, yaml_out)  # type: ignore[arg-type]
            else:
                os.unlink(yaml_tmp)
            yaml_tmp = None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if yaml_tmp is not None and os.path.exists(yaml_tmp):
            os.unlink(yaml_tmp)
        raise
    return target
