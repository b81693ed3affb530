"""Sessions: ``--session-window DAYS`` / ``--session-gap HOURS`` cut each user's log into
sessions, each one sequence ``<user>|<k>``; ``--min-inter`` runs after cutting; ``stats`` counts
sessions and their users (recbole_lea.datasets.sessions)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from recbole_lea.datasets import ConvertOptions, DatasetError, convert_amazon, convert_csv, dataset_stats
from recbole_lea.datasets.cli import main
from recbole_lea.datasets.common import Events
from recbole_lea.datasets.ml100k import convert_ml100k, wheel_dir
from recbole_lea.datasets.sessions import SessionCut, cut_sessions, session_events, split_session_id

DAY = 86400
HOUR = 3600


def log(rows: list[tuple[str, float]]) -> Events:
    """Events from ``(user, time)`` rows in this order (item = row index, to follow the rows)."""
    tokens = sorted({u for u, _ in rows})
    return Events(
        np.array([tokens.index(u) for u, _ in rows], dtype=np.int32),
        np.arange(len(rows), dtype=np.int32),
        np.array([t for _, t in rows], dtype=np.float64),
        tokens,
        [str(i) for i in range(len(rows))],
    )


def session_of_rows(rows: list[tuple[str, float]], cut: SessionCut) -> list[str]:
    ev, _ = session_events(log(rows), cut)
    return [ev.user_tokens[u] for u in ev.users]


def read_inter(path: Path) -> list[list[str]]:
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "user_id:token\titem_id:token\ttimestamp:float"
    return [line.split("\t") for line in lines[1:]]


# --------------------------------------------------------------------------- cutting


def test_window_cuts_the_same_calendar_windows_for_every_user() -> None:
    rows = [
        ("u0", 90000),  # day 1
        ("u0", 100),  # day 0
        ("u1", DAY - 1),  # day 0, last second
        ("u0", DAY - 1),  # day 0
        ("u1", DAY),  # day 1, first second: a new window, 1 s after the last event
        ("u0", 3 * DAY),  # day 3 (day 2 is empty: numbers count sessions, not windows)
        ("u0", 100),  # tie with row 1
    ]
    assert session_of_rows(rows, SessionCut("window", 1.0)) == ["u0|2", "u0|1", "u1|1", "u0|1", "u1|2", "u0|3", "u0|1"]


def test_window_origin_moves_the_boundaries() -> None:
    rows = [("a", 23 * HOUR), ("a", DAY + HOUR)]  # 23:00 and 01:00 the next day (UTC)
    assert session_of_rows(rows, SessionCut("window", 1.0)) == ["a|1", "a|2"]
    noon = SessionCut.from_options(window_days="1", origin="1970-01-01T12:00:00")
    assert noon is not None and noon.origin == 12 * HOUR
    assert session_of_rows(rows, noon) == ["a|1", "a|1"]
    # windows are not anchored at each user's first event: 3-day windows from the origin
    rows = [("a", 2 * DAY), ("a", 4 * DAY)]
    assert session_of_rows(rows, SessionCut("window", 3.0)) == ["a|1", "a|2"]
    assert session_of_rows(rows, SessionCut("window", 3.0, origin=2 * DAY)) == ["a|1", "a|1"]


def test_gap_starts_a_session_after_more_than_the_gap() -> None:
    rows = [
        ("b", 20000),  # 12,699 s after 7,301: new
        ("a", 0),
        ("a", HOUR),  # exactly one hour: same session
        ("b", 7300),
        ("a", 2 * HOUR + 1),  # 3,601 s: new
        ("a", 2 * HOUR + 50),
        ("b", 7301),
        ("b", 0),  # 7,300 s before the next: b's first session alone
    ]
    assert session_of_rows(rows, SessionCut("gap", 1.0)) == ["b|3", "a|1", "a|1", "b|2", "a|2", "a|2", "b|2", "b|1"]
    assert session_of_rows(rows, SessionCut("gap", 3.0)) == ["b|2", "a|1", "a|1", "b|1", "a|1", "a|1", "b|1", "b|1"]


def _reference(users: np.ndarray, times: np.ndarray, cut: SessionCut) -> list[tuple[int, int]]:
    """(user, k) per row, one event at a time in plain Python."""
    out: list[tuple[int, int]] = [(0, 0)] * len(users)
    for u in set(users.tolist()):
        rows = sorted((i for i in range(len(users)) if users[i] == u), key=lambda i: times[i])
        k, prev = 0, None
        for i in rows:
            if cut.mode == "window":
                key = np.floor((times[i] - (cut.origin or 0.0)) / cut.seconds)
                new = prev is None or key != prev
                prev = key
            else:
                new = prev is None or times[i] - prev > cut.seconds
                prev = times[i]
            k += new
            out[i] = (u, k)
    return out


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("cut", [SessionCut("window", 0.5, origin=1234.0), SessionCut("gap", 2.0)])
def test_vectorised_cut_matches_a_plain_loop(seed: int, cut: SessionCut) -> None:
    rng = np.random.default_rng(seed)
    users = rng.integers(0, 30, 2000).astype(np.int32)
    times = rng.integers(0, 5 * DAY, 2000).astype(np.float64)
    s = cut_sessions(users, times, cut)
    got = list(zip(s.session_user[s.row_session].tolist(), s.session_number[s.row_session].tolist()))
    assert got == _reference(users, times, cut)
    assert len(s) == len(set(got))  # one code per (user, k)


def test_session_ids_keep_the_user_recoverable() -> None:
    rows = [("x|1", 0), ("x", 0), ("x", 10 * DAY), ("x|1", 10 * DAY)]
    ids = session_of_rows(rows, SessionCut("window", 1.0))
    assert ids == ["x|1|1", "x|1", "x|2", "x|1|2"]
    assert [split_session_id(i) for i in ids] == [("x|1", 1), ("x", 1), ("x", 2), ("x|1", 2)]
    assert len(set(ids)) == 4
    with pytest.raises(ValueError, match="not a session id"):
        split_session_id("plain")


# --------------------------------------------------------------------------- converters


def write_csv(path: Path, rows: list[tuple[str, str, int]], header: str = "user,item,ts") -> Path:
    path.write_text(header + "\n" + "".join(f"{u},{i},{t}\n" for u, i, t in rows))
    return path


def options(tmp_path: Path, **kw: object) -> ConvertOptions:
    kw.setdefault("out", str(tmp_path / "out"))
    kw.setdefault("yaml_out", str(tmp_path / "ds.yaml"))
    return ConvertOptions(**kw)  # type: ignore[arg-type]


def test_min_inter_filters_sessions_after_cutting(tmp_path: Path) -> None:
    rows = [
        ("a", "1", 10),
        ("a", "2", 20),
        ("a", "3", 30),
        ("a", "1", DAY + 10),  # a's second day: a session of 2, dropped by --min-inter 3
        ("a", "2", DAY + 20),
        ("b", "1", 10),
        ("b", "2", 20),
        ("b", "3", 30),
        ("c", "1", 10),
        ("c", "2", 20),
        ("c", "4", 30),  # item 4 is rare: then c's session has 2 left and goes in round 2
        ("d", "1", 10),
        ("d", "2", 20),
        ("d", "3", 30),
    ]
    inter = write_csv(tmp_path / "log.csv", rows)
    cut = SessionCut.from_options(window_days=1)
    report = convert_csv(
        str(inter),
        None,
        "log",
        options(tmp_path, min_inter=3, sessions=cut),
        user_col="user",
        item_col="item",
        time_col="ts",
    )
    assert read_inter(tmp_path / "out" / "log" / "log.inter") == [
        ["a|1", "1", "10"],
        ["a|1", "2", "20"],
        ["a|1", "3", "30"],
        ["b|1", "1", "10"],
        ["b|1", "2", "20"],
        ["b|1", "3", "30"],
        ["d|1", "1", "10"],
        ["d|1", "2", "20"],
        ["d|1", "3", "30"],
    ]
    c = report.counts
    assert (c["users_before_filter"], c["sessions_before_filter"]) == (4, 5)
    assert (c["sessions"], c["sequences"], c["session_users"], c["items"], c["interactions"]) == (3, 3, 3, 3, 9)
    assert c["filter_rounds"] == 2
    # without sessions the same filter keeps a's second day (a has 5 interactions)
    convert_csv(
        str(inter), None, "log", options(tmp_path, min_inter=3), user_col="user", item_col="item", time_col="ts"
    )
    kept = read_inter(tmp_path / "out" / "log" / "log.inter")
    assert ["a", "1", str(DAY + 10)] in kept and len(kept) == 11


def test_csv_cli_records_the_sessions_in_report_yaml_and_stats(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [("7", "i1", 0), ("7", "i2", 1800), ("7", "i2", 7200), ("10", "i1", 50), ("10", "i2", 60), ("7", "i1", 7300)]
    inter = write_csv(tmp_path / "clicks.csv", rows, header="user_id,item_id,timestamp")
    out = tmp_path / "data"
    argv = ["csv", "--inter", str(inter), "--out", str(out), "--yaml-out", str(tmp_path / "c.yaml")]
    assert main([*argv, "--session-gap", "1", "--min-inter", "2"]) == 0
    printed = capsys.readouterr().out
    assert "sessions (--session-gap 1): a new session after more than 1 hours (3600 s)" in printed
    # users in numeric order, then session number (7 before 10, 7|1 before 7|2)
    assert read_inter(out / "clicks" / "clicks.inter") == [
        ["7|1", "i1", "0"],
        ["7|1", "i2", "1800"],
        ["7|2", "i2", "7200"],
        ["7|2", "i1", "7300"],
        ["10|1", "i1", "50"],
        ["10|1", "i2", "60"],
    ]
    report = json.loads((out / "clicks" / "conversion_report.json").read_text())
    assert report["sessions"]["mode"] == "gap" and report["sessions"]["gap_hours"] == 1.0
    assert report["sessions"]["user_id_format"] == "<user>|<k>" and report["sessions"]["min_inter_after_cutting"] == 2
    assert (report["counts"]["sessions"], report["counts"]["session_users"]) == (3, 2)
    text = (tmp_path / "c.yaml").read_text()
    assert "# Sessions (--session-gap 1): a new session after more than 1 hours" in text
    assert "--min-inter 2 applied to sessions and items after cutting" in text
    assert yaml.safe_load(text)["USER_ID_FIELD"] == "user_id"
    assert "one session = one interaction sequence: '<user>|<k>'" in text

    s = dataset_stats("clicks", str(out))
    assert (s["items"], s["sequences"], s["interactions"]) == (2, 3, 6)
    assert (s["sessions"]["sessions"], s["sessions"]["users"]) == (3, 2)
    assert main(["stats", "clicks", "--data_path", str(out)]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["Dataset", "#items", "#sequences", "#interactions", "#users", "item", "text"]
    assert table[2].split() == ["clicks", "2", "3", "6", "2", "-"]
    assert "3 sessions from 2 users, 1.50 per user" in table[4]

    # without a session option: no session line anywhere, stats as before
    assert main([*argv, "--quiet"]) == 0
    assert "Sessions" not in (tmp_path / "c.yaml").read_text()
    assert "sessions" not in json.loads((out / "clicks" / "conversion_report.json").read_text())
    s = dataset_stats("clicks", str(out))
    assert "sessions" not in s and s["sequences"] == 2
    main(["stats", "clicks", "--data_path", str(out)])
    assert "#users" not in capsys.readouterr().out


def test_amazon_reviews_cut_into_sessions(tmp_path: Path) -> None:
    reviews = [
        {"reviewerID": "U1", "asin": "P1", "unixReviewTime": 1 * DAY},
        {"reviewerID": "U1", "asin": "P2", "unixReviewTime": 1 * DAY},
        {"reviewerID": "U1", "asin": "P3", "unixReviewTime": 9 * DAY},
        {"reviewerID": "U2", "asin": "P1", "unixReviewTime": 2 * DAY},
        {"reviewerID": "U2", "asin": "P3", "unixReviewTime": 3 * DAY},
    ]
    path = tmp_path / "Tools.json.gz"
    path.write_bytes(gzip.compress("".join(json.dumps(r) + "\n" for r in reviews).encode()))
    report = convert_amazon(str(path), None, "tools", options(tmp_path, sessions=SessionCut.from_options(gap_hours=48)))
    assert read_inter(tmp_path / "out" / "tools" / "tools.inter") == [
        ["U1|1", "P1", str(DAY)],
        ["U1|1", "P2", str(DAY)],
        ["U1|2", "P3", str(9 * DAY)],
        ["U2|1", "P1", str(2 * DAY)],
        ["U2|1", "P3", str(3 * DAY)],
    ]
    assert report.counts["sessions"] == 3 and report.sessions is not None and report.sessions.mode == "gap"


@pytest.fixture
def lfm_dir(tmp_path: Path) -> Path:
    d = tmp_path / "LFM-1b"
    d.mkdir()
    t0 = 1_370_000_000  # 2013-05-31T11:33:20Z: not a UTC midnight
    les = [
        f"7\t1\t10\t100\t{t0 + 10}",
        f"7\t1\t10\t101\t{t0 + 50}",
        f"7\t1\t10\t102\t{t0 + 50_000}",  # after the next UTC midnight, inside the slice's first day
        f"7\t2\t20\t200\t{t0 + DAY + 5}",  # the slice's second day
        f"8\t1\t10\t100\t{t0 + 20}",
        f"8\t2\t20\t200\t{t0 + 30}",
        f"9\t2\t20\t200\t{t0 + 3 * DAY}",  # outside the 2-day slice
    ]
    (d / "LFM-1b_LEs.txt").write_text("\n".join(les) + "\n")
    (d / "LFM-1b_tracks.txt").write_text("100\tSong\t1\n101\tOther\t1\n102\tThird\t1\n200\tFourth\t2\n")
    return d


def test_lfm1b_windows_start_at_its_slice(tmp_path: Path, lfm_dir: Path) -> None:
    out = tmp_path / "out"
    base = ["lfm1b", str(lfm_dir), "--days", "2", "--start", "1370000000", "--out", str(out), "--yaml-out", "none"]
    assert main([*base, "--session-window", "1", "--quiet"]) == 0
    rows = read_inter(out / "lfm" / "lfm.inter")
    assert [(r[0], r[1]) for r in rows] == [
        ("7|1", "100"),
        ("7|1", "101"),
        ("7|1", "102"),
        ("7|2", "200"),
        ("8|1", "100"),
        ("8|1", "200"),
    ]
    report = json.loads((out / "lfm" / "conversion_report.json").read_text())
    assert report["sessions"]["origin"] == 1_370_000_000 and report["counts"]["events_outside_window"] == 1
    # the paper's setting: the slice is one window, one session per user
    assert main([*base, "--session-window", "2", "--quiet"]) == 0
    assert {r[0] for r in read_inter(out / "lfm" / "lfm.inter")} == {"7|1", "8|1"}
    # --session-origin overrides the slice's start: UTC days split 7's first day at midnight
    assert main([*base, "--session-window", "1", "--session-origin", "1970-01-01", "--quiet"]) == 0
    assert [r[0] for r in read_inter(out / "lfm" / "lfm.inter")] == ["7|1", "7|1", "7|2", "7|2", "8|1", "8|1"]
    assert main([*base, "--session-gap", "10", "--quiet"]) == 0
    assert [r[0] for r in read_inter(out / "lfm" / "lfm.inter")] == ["7|1", "7|1", "7|2", "7|3", "8|1", "8|1"]


def test_ml100k_sessions_match_pandas(tmp_path: Path) -> None:
    report = convert_ml100k(options(tmp_path, yaml_out=None, sessions=SessionCut("gap", 1.0)), name="ml-gap")
    wheel = pd.read_csv(f"{wheel_dir()}/ml-100k.inter", sep="\t")
    wheel.columns = [c.split(":")[0] for c in wheel.columns]
    wheel = wheel.sort_values(["user_id", "timestamp"], kind="stable")
    new = wheel.groupby("user_id")["timestamp"].diff().fillna(np.inf) > HOUR
    assert report.counts["sessions"] == int(new.sum()) > report.counts["session_users"] == 943
    written = pd.read_csv(tmp_path / "out" / "ml-gap" / "ml-gap.inter", sep="\t", dtype=str)
    assert written["user_id:token"].nunique() == int(new.sum()) and len(written) == len(wheel)
    with pytest.raises(DatasetError, match=r"--session-gap 1 on ml100k needs --name \(e.g. --name ml-100k-sessions\)"):
        convert_ml100k(options(tmp_path, sessions=SessionCut("gap", 1.0)))


# --------------------------------------------------------------------------- bad input


def test_lcrec_has_no_timestamps(tmp_path: Path) -> None:
    src = tmp_path / "lc"
    src.mkdir()
    (src / "X.inter.json").write_text(json.dumps({"0": [1, 2, 3]}))
    (src / "X.item.json").write_text(json.dumps({"1": {"title": "a"}}))
    with pytest.raises(SystemExit) as info:
        main(["lcrec", str(src), "--session-window", "3", "--out", str(tmp_path / "o"), "--yaml-out", "none"])
    message = str(info.value)
    assert message.startswith("recbole_lea.datasets lcrec: error: --session-window 3 cuts sessions by time, but ")
    assert "LC-Rec JSON" in message and "has no timestamps" in message and "drop --session-window 3" in message
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    ("header", "extra", "said"),
    [
        ("user_id,item_id,ts", [], "it has no column 'timestamp'"),
        ("user_id,item_id,ts", ["--time-col", "none"], "--time-col none"),
    ],
)
def test_csv_without_a_time_column(tmp_path: Path, header: str, extra: list[str], said: str) -> None:
    inter = write_csv(tmp_path / "x.csv", [("a", "1", 5)], header=header)
    argv = ["csv", "--inter", str(inter), "--session-gap", "0.5", "--out", str(tmp_path / "o"), "--yaml-out", "none"]
    with pytest.raises(SystemExit) as info:
        main([*argv, *extra])
    message = str(info.value)
    assert f"--session-gap 0.5 cuts sessions by time, but {inter} is read without a time column ({said})" in message
    assert "pass --time-col COLUMN" in message


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--session-window", "3", "--session-gap", "1"], "--session-window and --session-gap are exclusive: pass one"),
        (["--session-gap", "1", "--session-origin", "0"], "--session-origin '0' anchors --session-window windows only"),
        (["--session-window", "0"], r"--session-window '0' must be a positive number of days, e.g. --session-window 3"),
        (["--session-gap", "nan"], r"--session-gap 'nan' must be a positive number of hours"),
        (["--session-window", "x"], r"--session-window 'x' must be a positive number of days"),
        (
            ["--session-window", "1", "--session-origin", "noon"],
            r"--session-origin 'noon' is not unix seconds or an ISO",
        ),
    ],
)
def test_bad_session_options_name_the_option(tmp_path: Path, flags: list[str], expected: str) -> None:
    inter = write_csv(tmp_path / "x.csv", [("a", "1", 5)], header="user_id,item_id,timestamp")
    with pytest.raises(SystemExit, match=expected):
        main(["csv", "--inter", str(inter), *flags, "--out", str(tmp_path / "o"), "--yaml-out", "none"])
    assert not (tmp_path / "o").exists()


def test_millisecond_times_warn(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    inter = write_csv(tmp_path / "ms.csv", [("a", "1", 1_700_000_000_000), ("a", "2", 1_700_000_100_000)])
    report = convert_csv(
        str(inter),
        None,
        "ms",
        options(tmp_path, sessions=SessionCut("gap", 1.0)),
        user_col="user",
        item_col="item",
        time_col="ts",
    )
    assert any("look like milliseconds" in w for w in report.warnings)
    assert "divide the times by 1000" in caplog.text


def test_a_session_dataset_loads_in_recbole(tmp_path: Path) -> None:
    from recbole.config import Config
    from recbole.data import create_dataset

    from recbole_lea.datasets.validate import check_atomic_inter

    cut = SessionCut.from_options(window_days=1)
    yaml_path = tmp_path / "ml-days.yaml"
    report = convert_ml100k(options(tmp_path, yaml_out=str(yaml_path), min_inter=3, sessions=cut), name="ml-days")
    inter = tmp_path / "out" / "ml-days" / "ml-days.inter"
    check_atomic_inter(inter, {"user_id": "token", "item_id": "token", "timestamp": "float"})
    config = Config(
        model="SASRec",
        dataset="ml-days",
        config_file_list=[str(yaml_path)],
        config_dict={
            "data_path": str(tmp_path / "out"),
            "train_neg_sample_args": None,
            "show_progress": False,
            "save_dataset": False,
            "checkpoint_dir": str(tmp_path / "saved"),
        },
    )
    ds = create_dataset(config)
    assert ds.user_num == report.counts["sessions"] + 1  # + [PAD]
    assert ds.inter_num == report.counts["interactions"]
    assert report.counts["sessions"] > report.counts["session_users"]
