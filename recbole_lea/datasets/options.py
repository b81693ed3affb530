"""The options every converter shares: :class:`ConvertFlags` declares the common flags of
``python -m recbole_lea.datasets <source>`` (type, default, help: the one home of each), and
:class:`ConvertOptions` is what the converters read, parsed from them (:meth:`ConvertFlags.options`)."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

from recbole_lea.datasets.common import DEFAULT_MAX_BAD, DEFAULT_MAX_WORDS, BadLimit, BadLines, DatasetError
from recbole_lea.datasets.sessions import SessionCut
from recbole_lea.datasets.writer import check_verb
from recbole_lea.options import opt


@dataclass
class ConvertFlags:
    """The command-line flags every converter shares (``--min-inter`` for ``min_inter``)."""

    out: str = opt("atomic_datasets", "parent folder of the dataset folder", flags=("--data_path",))
    yaml_out: str | None = opt(
        None, "also write the dataset yaml here (it is always written beside the atomic files, where runs read it)"
    )
    min_inter: int = opt(
        0, "drop items and sequences with fewer than K interactions, until stable (paper: 3; 0: off)", ge=0, metavar="K"
    )
    max_bad_lines: str = opt(
        DEFAULT_MAX_BAD, "fail when a file has more malformed lines than N, or than P% of its lines", metavar="N|P%"
    )
    max_words: int = opt(DEFAULT_MAX_WORDS, "keep the first N words of each item text value (0: no limit)", metavar="N")
    drop_duplicates: bool = opt(
        False, "drop rows repeating an earlier (user, item, timestamp); default: keep and report them"
    )
    verb: str | None = opt(
        None,
        "le_item_verb of the dataset yaml, for the LE instruction 'The user has <verb> these <noun>s' (default: "
        "watched for ml100k, bought for amazon and lcrec, 'listened to' for lfm1b, 'interacted with' for csv)",
    )
    quiet: bool = opt(False, "no progress bars and no report on stdout (warnings still)")
    session_window: str | None = opt(
        None,
        "cut each user's log into fixed windows of DAYS days, the same for every user, counted from "
        "--session-origin (the paper's LFM: 3); exclusive with --session-gap",
        metavar="DAYS",
    )
    session_gap: str | None = opt(
        None, "a new session after more than HOURS hours without an event of the user", metavar="HOURS"
    )
    session_origin: str | None = opt(
        None,
        "start of the --session-window windows: unix seconds or an ISO date (UTC) (default 1970-01-01, so windows "
        "are aligned to UTC days; lfm1b: the start of its --days/--start slice)",
        metavar="TIME",
    )

    def options(self) -> ConvertOptions:
        """The converters' options from these flags; a bad value is a :class:`DatasetError`."""
        yaml_out = self.yaml_out
        if yaml_out is not None and yaml_out.lower() in ("none", "-", ""):
            yaml_out = None
        if self.max_words < 0:
            raise DatasetError(f"--max-words {self.max_words} must be >= 0")
        if self.verb is not None:
            check_verb(self.verb)
        return ConvertOptions(
            out=self.out,
            yaml_out=yaml_out,
            min_inter=self.min_inter,
            max_bad=BadLimit.parse(self.max_bad_lines),
            max_words=self.max_words or None,
            drop_duplicates=self.drop_duplicates,
            progress=not self.quiet and sys.stderr.isatty(),
            verb=self.verb,
            sessions=SessionCut.from_options(self.session_window, self.session_gap, self.session_origin),
        )


@dataclass
class ConvertOptions:
    """What the converters read, parsed from :class:`ConvertFlags` (the defaults are those of the
    flags; ``max_words`` None is no limit, ``sessions`` None one sequence per user)."""

    out: str = "atomic_datasets"
    yaml_out: str | None = None
    min_inter: int = 0
    max_bad: BadLimit = field(default_factory=lambda: BadLimit.parse(DEFAULT_MAX_BAD))
    max_words: int | None = DEFAULT_MAX_WORDS
    drop_duplicates: bool = False
    progress: bool = False
    verb: str | None = None
    sessions: SessionCut | None = None

    def bad_lines(self, path: str) -> BadLines:
        return BadLines(path=path, limit=self.max_bad)
