"""Converters of recbole_lea.datasets on small fixtures written here (plus the shared LC-Rec copy)."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import numpy as np
import pytest
import yaml

from recbole_lea.datasets import (
    ConvertOptions,
    DatasetError,
    convert_amazon,
    convert_csv,
    convert_lcrec,
    convert_lfm1b,
    dataset_stats,
    filter_min_inter,
)
from recbole_lea.datasets import writer as writer_mod
from recbole_lea.datasets.amazon import amazon_spec
from recbole_lea.datasets.cli import main
from recbole_lea.datasets.common import BadLimit, clean_text
from recbole_lea.datasets.lfm1b import lfm_spec
from recbole_lea.datasets.ml100k import ensure_ml100k, ml100k_spec, wheel_dir
from recbole_lea.datasets.writer import render_dataset_yaml
from recbole_lea.options import PROPERTIES

REPO = Path(__file__).resolve().parents[1]


def tracked_yaml(name: str) -> Path:
    """The shipped dataset yaml (part of the installed package)."""
    return PROPERTIES / "dataset" / f"{name}.yaml"


LCREC = Path(os.environ.get("LEA_SHARED", REPO.parent / "shared")) / "datasets" / "amazon-scientific"


def read_tsv(path: Path) -> tuple[list[str], list[list[str]]]:
    lines = path.read_text(encoding="utf-8").split("\n")
    assert lines[-1] == "", "atomic files end with a newline"
    rows = [line.split("\t") for line in lines[1:-1]]
    header = lines[0].split("\t")
    assert all(len(r) == len(header) for r in rows), "every row has the header's column count"
    return header, rows


def assert_is_tracked_yaml(rendered: str, name: str) -> None:
    """``rendered`` is the shipped ``properties/dataset/<name>.yaml``, and it words the
    LE instruction with a verb."""
    assert "\nle_item_verb:" in rendered
    assert tracked_yaml(name).read_text() == rendered


def opts(tmp_path: Path, **kw: object) -> ConvertOptions:
    kw.setdefault("out", str(tmp_path / "out"))
    kw.setdefault("yaml_out", str(tmp_path / "yaml" / "ds.yaml"))
    return ConvertOptions(**kw)  # type: ignore[arg-type]


def write_lines(path: Path, lines: list[str], gz: bool = False) -> Path:
    data = ("\n".join(lines) + "\n").encode("utf-8")
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


# --------------------------------------------------------------------------- text and filter


def test_clean_text_makes_one_tsv_safe_line() -> None:
    assert clean_text("a\tb\nc  \r\n d") == ("a b c d", False)
    assert clean_text('12" ruler\x00') == ("12'' ruler", False)
    assert clean_text(["x", "", None, "y z"]) == ("x, y z", False)
    assert clean_text("one two three four", max_words=2) == ("one two", True)
    assert clean_text(None) == ("", False)


def test_bad_limit_parses_counts_and_percentages() -> None:
    assert BadLimit.parse("10").allowed(10**6) == 10
    assert BadLimit.parse("0.1%").allowed(10**6) == 1000
    assert BadLimit.parse("0.1%").allowed(100) == 0
    with pytest.raises(DatasetError, match="max-bad-lines"):
        BadLimit.parse("lots")


def test_filter_needs_several_rounds_for_a_cascade() -> None:
    # users 0, 2, 4 share items 1-3 (a 3-core); items 8 and 9 are rare, and dropping them
    # leaves users 1 and 3 short, which then have to go as well
    users = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4])
    items = np.array([1, 2, 3, 1, 8, 9, 1, 2, 3, 2, 3, 8, 1, 2, 3])
    keep, rounds = filter_min_inter(users, items, 3)
    assert rounds == 2
    assert keep.tolist() == [True] * 3 + [False] * 3 + [True] * 3 + [False] * 3 + [True] * 3


def naive_k_core(users: np.ndarray, items: np.ndarray, k: int) -> np.ndarray:
    """Reference: remove users, then items, one side at a time, with Python counters."""
    from collections import Counter

    keep = np.ones(len(users), dtype=bool)
    while True:
        changed = False
        for side in (users, items):
            count = Counter(side[keep].tolist())
            for row in np.flatnonzero(keep):
                if count[side[row]] < k:
                    keep[row] = False
                    changed = True
        if not changed:
            return keep


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("k", [2, 3, 5])
def test_filter_reaches_the_fixed_point(seed: int, k: int) -> None:
    rng = np.random.default_rng(seed)
    n = 2000
    users = rng.integers(0, 300, n)
    items = (rng.pareto(1.2, n) * 20).astype(np.int64) % 500  # long tail: many rare items
    keep, _ = filter_min_inter(users, items, k)
    u, i = users[keep], items[keep]
    if keep.any():
        assert np.bincount(u)[np.unique(u)].min() >= k
        assert np.bincount(i)[np.unique(i)].min() >= k
    again, rounds = filter_min_inter(u, i, k)
    assert again.all() and rounds == 0
    # the largest such subset is unique, so any removal order reaches the same rows
    assert (keep == naive_k_core(users, items, k)).all()


# --------------------------------------------------------------------------- LC-Rec


@pytest.mark.skipif(not LCREC.is_dir(), reason="shared LC-Rec copy not present")
def test_lcrec_amazon_scientific_counts_and_yaml(tmp_path: Path) -> None:
    report = convert_lcrec(
        str(LCREC / "Scientific.inter.json"), str(LCREC / "Scientific.item.json"), "amazon-scientific", opts(tmp_path)
    )
    c = report.counts
    assert (c["sequences"], c["items"], c["interactions"]) == (8317, 4344, 58492)
    assert c["items_with_description"] == 4221 and c["items_with_brand"] == 4332 and c["items_with_category"] == 4213
    folder = tmp_path / "out" / "amazon-scientific"
    header, rows = read_tsv(folder / "amazon-scientific.inter")
    assert header == ["user_id:token", "item_id:token", "timestamp:float"]
    assert len(rows) == 58492
    seq = json.loads((LCREC / "Scientific.inter.json").read_text())
    assert [r[1] for r in rows if r[0] == "3"] == [str(i) for i in seq["3"]]  # order kept
    times = [float(r[2]) for r in rows]
    assert times == sorted(times)  # users come in numeric order, synthesised times increase
    iheader, irows = read_tsv(folder / "amazon-scientific.item")
    assert iheader == ["item_id:token", "title:token_seq", "category:token_seq", "brand:token", "description:token_seq"]
    assert len(irows) == 4344
    assert irows[0][:2] == ["0", "SUPCO SPP6 Relay/Capacitor Hard Start Kit with 500% Increase Starting Torque."]
    assert max(len(r[4].split(" ")) for r in irows) <= 64
    # the yaml it writes is the tracked one
    generated = (tmp_path / "yaml" / "ds.yaml").read_text()
    assert_is_tracked_yaml(generated, "amazon-scientific")
    assert yaml.safe_load(generated)["le_item_verb"] == "bought"
    stats = dataset_stats("amazon-scientific", str(tmp_path / "out"))
    assert (stats["items"], stats["sequences"], stats["interactions"]) == (4344, 8317, 58492)
    assert stats["item_text_fields"] == ["title", "category", "brand", "description"]


@pytest.mark.skipif(not LCREC.is_dir(), reason="shared LC-Rec copy not present")
def test_lcrec_with_paper_filter_is_a_fixed_point(tmp_path: Path) -> None:
    report = convert_lcrec(
        str(LCREC / "Scientific.inter.json"), str(LCREC / "Scientific.item.json"), "sci3", opts(tmp_path, min_inter=3)
    )
    _, rows = read_tsv(tmp_path / "out" / "sci3" / "sci3.inter")
    users = np.unique([r[0] for r in rows], return_inverse=True)[1]
    items = np.unique([r[1] for r in rows], return_inverse=True)[1]
    assert np.bincount(users).min() >= 3 and np.bincount(items).min() >= 3
    assert filter_min_inter(users, items, 3)[0].all()
    assert report.counts["interactions"] == len(rows)


def test_lcrec_folder_cli_and_bad_entries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "mini-lc"
    src.mkdir()
    (src / "Mini.inter.json").write_text(json.dumps({"0": [0, 1, 2], "1": [2, 1], "2": "oops", "3": [1, None, 0]}))
    (src / "Mini.item.json").write_text(
        json.dumps(
            {"0": {"title": "A\tthing", "categories": "X,Y", "brand": "B", "description": "d"}, "1": {"title": "B"}}
        )
    )
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit, match=r"Mini.inter.json: too many malformed.*user '2'"):
        main(["lcrec", str(src), "--quiet"])
    assert not (tmp_path / "atomic_datasets" / "mini-lc").exists()
    assert main(["lcrec", str(src), "--quiet", "--max-bad-lines", "2"]) == 0
    folder = tmp_path / "atomic_datasets" / "mini-lc"
    _, rows = read_tsv(folder / "mini-lc.inter")
    assert rows == [
        ["0", "0", "0"],
        ["0", "1", "1"],
        ["0", "2", "2"],
        ["1", "2", "3"],
        ["1", "1", "4"],
        ["3", "1", "5"],
        ["3", "0", "6"],
    ]
    _, irows = read_tsv(folder / "mini-lc.item")
    assert irows == [["0", "A thing", "X,Y", "B", "d"], ["1", "B", "", "", ""], ["2", "", "", "", ""]]
    rep = json.loads((folder / "conversion_report.json").read_text())
    assert rep["files"]["interactions"]["malformed"] == 2
    assert rep["counts"]["items_without_metadata"] == 1 and rep["counts"]["items_without_any_text"] == 1
    assert (folder / "mini-lc.yaml").is_file()  # runs read the yaml beside the atomic files
    assert not (tmp_path / "properties").exists()  # and nothing else is written


def test_lcrec_invalid_json_names_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "X.inter.json"
    bad.write_text('{"0": [1, 2],\n "1": [3,, 4]}')
    with pytest.raises(DatasetError, match=r"X.inter.json: line 2, column \d+: invalid JSON"):
        convert_lcrec(str(bad), None, "x", opts(tmp_path))


# --------------------------------------------------------------------------- Amazon 2018


def review(user: str, asin: str, t: object, **extra: object) -> str:
    return json.dumps(
        {
            "overall": 5.0,
            "reviewerID": user,
            "asin": asin,
            "unixReviewTime": t,
            "reviewText": "fine\tproduct\nreally",
            **extra,
        }
    )


@pytest.fixture
def amazon_files(tmp_path: Path) -> tuple[Path, Path]:
    reviews = [
        review("U2", "P1", 300),
        review("U1", "P2", 200),
        review("U1", "P1", 100),
        "{not json",  # line 4
        review("U2", "P3", 100),
        json.dumps({"reviewerID": "U3", "unixReviewTime": 5}),  # line 6: no asin
        review("U1", "P3", 200),  # same day as P2: ties keep file order (P2 first)
        review("U3", "P1", "yesterday"),  # line 8: non-numeric time
        review("U2", "P1", 300),  # duplicate of line 1
        review("U3", "P4", 50),
        "",  # blank lines are skipped, not malformed
    ]
    meta = [
        json.dumps(
            {
                "asin": "P1",
                "title": 'Drill "Pro"\t2000',
                "category": ["Industrial & Scientific", "Tools"],
                "brand": "Bosch",
                "description": ["<b>Strong</b> drill", "for &amp; wood"],
            }
        ),
        json.dumps({"asin": "P2", "title": "Saw", "category": [], "brand": "", "description": []}),
        "garbage",  # line 3
        json.dumps({"asin": "P1", "title": "second copy"}),
        json.dumps({"asin": "P9", "title": "never reviewed"}),
        json.dumps({"asin": "P4", "title": "Glue " + "word " * 100}),
    ]
    return (
        write_lines(tmp_path / "Tools_5.json.gz", reviews, gz=True),
        write_lines(tmp_path / "meta_Tools.json", meta),
    )


def test_amazon_fields_order_and_counts(tmp_path: Path, amazon_files: tuple[Path, Path]) -> None:
    reviews, meta = amazon_files
    report = convert_amazon(str(reviews), str(meta), "tools", opts(tmp_path, max_bad=BadLimit.parse("5")))
    folder = tmp_path / "out" / "tools"
    header, rows = read_tsv(folder / "tools.inter")
    assert header == ["user_id:token", "item_id:token", "timestamp:float"]
    assert rows == [
        ["U1", "P1", "100"],
        ["U1", "P2", "200"],
        ["U1", "P3", "200"],
        ["U2", "P3", "100"],
        ["U2", "P1", "300"],
        ["U2", "P1", "300"],
        ["U3", "P4", "50"],
    ]
    iheader, irows = read_tsv(folder / "tools.item")
    assert iheader == ["item_id:token", "title:token_seq", "category:token_seq", "brand:token", "description:token_seq"]
    items = {r[0]: r[1:] for r in irows}
    assert list(items) == ["P1", "P2", "P3", "P4"]
    assert items["P1"] == ["Drill ''Pro'' 2000", "Industrial & Scientific, Tools", "Bosch", "Strong drill for & wood"]
    assert items["P2"] == ["Saw", "", "", ""]
    assert items["P3"] == ["", "", "", ""]  # no metadata row: kept with empty text, counted
    assert len(items["P4"][0].split(" ")) == 64
    f = report.files
    assert f["reviews"]["malformed"] == 3
    assert [e["where"] for e in f["reviews"]["examples"]] == [4, 6, 8]
    assert "unixReviewTime" in f["reviews"]["examples"][2]["reason"]
    assert f["metadata"]["malformed"] == 1 and f["metadata"]["examples"][0]["where"] == 3
    c = report.counts
    assert c["duplicate_user_item_time_rows"] == 1
    assert c["items_without_metadata"] == 1 and c["items_without_any_text"] == 1
    assert c["metadata_duplicate_asin_rows"] == 1 and c["metadata_rows_of_other_items"] == 1
    assert c["users_with_one_interaction"] == 1 and c["text_values_truncated"] == 1
    conf = yaml.safe_load((tmp_path / "yaml" / "ds.yaml").read_text())
    assert conf["item_text_fields"] == ["title", "category", "brand", "description"]
    assert conf["load_col"] == {
        "inter": ["user_id", "item_id", "timestamp"],
        "item": ["item_id", "title", "category", "brand", "description"],
    }
    assert conf["le_item_noun"] == "product" and conf["le_item_template"].startswith("[item] product")
    assert conf["normalize_all"] is False and conf["TIME_FIELD"] == "timestamp"


def test_amazon_drop_duplicates_and_filter(tmp_path: Path, amazon_files: tuple[Path, Path]) -> None:
    reviews, meta = amazon_files
    report = convert_amazon(
        str(reviews), str(meta), "tools", opts(tmp_path, max_bad=BadLimit.parse("5"), drop_duplicates=True, min_inter=2)
    )
    _, rows = read_tsv(tmp_path / "out" / "tools" / "tools.inter")
    # without the duplicate: P2 and P4 are seen once -> gone; then U1 {P1,P3}, U2 {P3,P1}; U3 gone
    assert rows == [["U1", "P1", "100"], ["U1", "P3", "200"], ["U2", "P3", "100"], ["U2", "P1", "300"]]
    assert report.counts["duplicate_rows_dropped"] == 1
    _, irows = read_tsv(tmp_path / "out" / "tools" / "tools.item")
    assert [r[0] for r in irows] == ["P1", "P3"]


def test_amazon_bad_lines_over_threshold_fail_cleanly(tmp_path: Path, amazon_files: tuple[Path, Path]) -> None:
    reviews, meta = amazon_files
    with pytest.raises(DatasetError) as err:
        convert_amazon(str(reviews), str(meta), "tools", opts(tmp_path))  # default 0.1%: 0 of 10 lines allowed
    msg = str(err.value)
    assert "Tools_5.json.gz" in msg and "3 malformed" in msg and "line 4: bad JSON" in msg and "--max-bad-lines" in msg
    with pytest.raises(DatasetError, match=r"so far"):  # an absolute limit stops reading early
        convert_amazon(str(reviews), str(meta), "tools", opts(tmp_path, max_bad=BadLimit.parse("1")))
    assert not (tmp_path / "out" / "tools").exists()
    assert not (tmp_path / "yaml").exists()


def test_amazon_missing_file_message(tmp_path: Path) -> None:
    with pytest.raises(
        DatasetError, match=r"Amazon review file not found: .*nope.json \(pass the right path with --reviews\)"
    ):
        convert_amazon(str(tmp_path / "nope.json"), None, "x", opts(tmp_path))


# --------------------------------------------------------------------------- LFM-1b


@pytest.fixture
def lfm_dir(tmp_path: Path) -> Path:
    d = tmp_path / "LFM-1b"
    d.mkdir()
    day = 86400
    t0 = 1_370_000_000
    les = [
        f"7\t1\t10\t100\t{t0 + 50}",
        f"7\t1\t10\t101\t{t0 + 10}",
        f"7\t2\t20\t200\t{t0 + day + 5}",  # outside a 1-day window
        f"8\t1\t11\t100\t{t0 + 20}",  # track 100 first seen with album 10 (line 1)
        "8\t1\t10\t101",  # line 5: 4 columns
        f"8\t2\t20\t200\t{t0 + 30}",
        "9\t1\t10\t100\tnoon",  # line 7: bad timestamp
        f"9\t3\t-1\t300\t{t0 - 5}",  # before the window
        f"9\t2\t20\t200\t{t0 + 40}",
    ]
    write_lines(d / "LFM-1b_LEs.txt", les)
    write_lines(
        d / "LFM-1b_tracks.txt", ["100\tSong\tOne\t1", "101\tSecond  Song", "200\tOther\t2", "300\tOld\t3"], gz=True
    )
    (d / "LFM-1b_tracks.txt").rename(d / "LFM-1b_tracks.txt.gz")
    write_lines(d / "LFM-1b_albums.txt", ["10\tFirst Album\t1", "11\tLive\t1", "20\tB-Sides\t2"])
    write_lines(d / "LFM-1b_artists.txt", ["1\tThe Band", "2\tSolo Artist", "3\tNobody"])
    return d


def test_lfm1b_window_and_text(tmp_path: Path, lfm_dir: Path) -> None:
    report = convert_lfm1b(str(lfm_dir), "lfm", opts(tmp_path, max_bad=BadLimit.parse("3")), days=1, start="1370000000")
    folder = tmp_path / "out" / "lfm"
    _, rows = read_tsv(folder / "lfm.inter")
    t0 = 1_370_000_000
    assert rows == [
        ["7", "101", str(t0 + 10)],
        ["7", "100", str(t0 + 50)],
        ["8", "100", str(t0 + 20)],
        ["8", "200", str(t0 + 30)],
        ["9", "200", str(t0 + 40)],
    ]
    header, irows = read_tsv(folder / "lfm.item")
    assert header == ["item_id:token", "title:token_seq", "album:token_seq", "artist:token"]
    assert irows == [
        ["100", "", "First Album", "The Band"],
        ["101", "", "First Album", "The Band"],
        ["200", "Other", "B-Sides", "Solo Artist"],
    ]
    tracks = report.files["tracks"]
    assert tracks["malformed"] == 2 and [e["where"] for e in tracks["examples"]] == [1, 2]
    ev = report.files["events"]
    assert ev["malformed"] == 2 and [e["where"] for e in ev["examples"]] == [5, 7]
    assert report.counts["events_outside_window"] == 2
    assert report.counts["window_start"] == t0 and report.counts["window_end"] == t0 + 86400
    assert report.counts["users_with_one_interaction"] == 1


def test_lfm1b_column_order_option_and_first_event_start(tmp_path: Path, lfm_dir: Path) -> None:
    write_lines(lfm_dir / "LFM-1b_tracks.txt.gz", ["100\t1\tSong One", "101\t1\tSecond Song", "200\t2\tOther"], gz=True)
    report = convert_lfm1b(
        str(lfm_dir),
        "lfm2",
        opts(tmp_path, max_bad=BadLimit.parse("3")),
        days=1,
        columns={"tracks": "track,artist,name"},
    )
    _, irows = read_tsv(tmp_path / "out" / "lfm2" / "lfm2.item")
    assert irows == [["100", "Song One", "First Album", "The Band"], ["200", "Other", "B-Sides", "Solo Artist"]]
    # the window opens at the first valid event of the file (line 1: t0 + 50)
    assert report.counts["window_start"] == 1_370_000_050
    with pytest.raises(DatasetError, match="lacks"):
        convert_lfm1b(str(lfm_dir), "lfm3", opts(tmp_path), columns={"les": "user,artist,album,timestamp"})


def test_lfm1b_yaml_is_the_tracked_template(tmp_path: Path) -> None:
    assert_is_tracked_yaml(render_dataset_yaml(lfm_spec("lfm")), "lfm")
    assert yaml.safe_load(render_dataset_yaml(lfm_spec("lfm")))["le_item_verb"] == "listened to"


# --------------------------------------------------------------------------- generic CSV / TSV


def test_csv_without_time_keeps_file_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    inter = tmp_path / "clicks.csv"
    inter.write_text("session,product,extra\ns2,a,1\ns1,b,1\ns2,c,1\ns1,a\ns1,c,1\n,a,1\n")
    items = tmp_path / "products.csv"
    items.write_text('product,name,shop,blurb\na,"Red, round ""ball""",Toys R,"long\ntext"\nb,Cube,Toys R,\n')
    monkeypatch.chdir(tmp_path)
    code = main(
        [
            "csv",
            "--inter",
            str(inter),
            "--items",
            str(items),
            "--user-col",
            "session",
            "--item-col",
            "product",
            "--token-cols",
            "shop",
            "--noun",
            "toy",
            "--max-bad-lines",
            "2",
            "--quiet",
        ]
    )
    assert code == 0
    folder = tmp_path / "atomic_datasets" / "clicks"
    _, rows = read_tsv(folder / "clicks.inter")
    assert rows == [["s1", "b", "1"], ["s1", "c", "3"], ["s2", "a", "0"], ["s2", "c", "2"]]
    header, irows = read_tsv(folder / "clicks.item")
    assert header == ["item_id:token", "name:token_seq", "shop:token", "blurb:token_seq"]
    assert irows == [
        ["a", "Red, round ''ball''", "Toys R", "long text"],
        ["b", "Cube", "Toys R", ""],
        ["c", "", "", ""],
    ]
    conf = yaml.safe_load((folder / "clicks.yaml").read_text())
    assert conf["le_item_template"] == "[item] {name}, {shop}, {blurb}"  # item text, not field names
    assert conf["le_item_noun"] == "toy" and conf["le_item_verb"] == "interacted with"
    rep = json.loads((folder / "conversion_report.json").read_text())
    assert [e["where"] for e in rep["files"]["interactions"]["examples"]] == [5, 7]


def test_tsv_with_time_format(tmp_path: Path) -> None:
    inter = tmp_path / "log.tsv"
    inter.write_text("u\ti\twhen\nx\t1\t2024-01-02 00:00:00\nx\t2\t2024-01-01 00:00:00\ny\t1\tsoon\n")
    report = convert_csv(
        str(inter),
        None,
        "log",
        opts(tmp_path, max_bad=BadLimit.parse("1")),
        user_col="u",
        item_col="i",
        time_col="when",
        time_format="%Y-%m-%d %H:%M:%S",
    )
    _, rows = read_tsv(tmp_path / "out" / "log" / "log.inter")
    assert rows == [["x", "2", "1704067200"], ["x", "1", "1704153600"]]
    assert report.files["interactions"]["examples"][0]["where"] == 4
    with pytest.raises(DatasetError, match=r"no column \['user'\]"):
        convert_csv(str(inter), None, "log", opts(tmp_path), user_col="user", item_col="i")


# --------------------------------------------------------------------------- atomic writes


def test_failed_write_leaves_nothing_and_keeps_the_old_dataset(
    tmp_path: Path, amazon_files: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    reviews, meta = amazon_files
    o = opts(tmp_path, max_bad=BadLimit.parse("5"))
    convert_amazon(str(reviews), str(meta), "tools", o)
    out = tmp_path / "out"
    before = {p.name: p.read_bytes() for p in (out / "tools").iterdir()}
    yaml_before = (tmp_path / "yaml" / "ds.yaml").read_bytes()

    def boom(*args: object, **kw: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(writer_mod, "write_item_file", boom)
    with pytest.raises(OSError, match="disk full"):
        convert_amazon(str(reviews), str(meta), "tools", opts(tmp_path, max_bad=BadLimit.parse("5"), min_inter=2))
    assert sorted(p.name for p in out.iterdir()) == ["tools"]  # no temp folder left
    assert {p.name: p.read_bytes() for p in (out / "tools").iterdir()} == before
    assert sorted(p.name for p in (tmp_path / "yaml").iterdir()) == ["ds.yaml"]
    assert (tmp_path / "yaml" / "ds.yaml").read_bytes() == yaml_before

    with pytest.raises(OSError):
        convert_amazon(str(reviews), str(meta), "fresh", o)
    assert sorted(p.name for p in out.iterdir()) == ["tools"]

    # failing at the last step (the rename) also removes the yaml's temp file
    monkeypatch.undo()
    monkeypatch.setattr(writer_mod, "_commit_dir", boom)
    with pytest.raises(OSError):
        convert_amazon(str(reviews), str(meta), "fresh", o)
    assert sorted(p.name for p in out.iterdir()) == ["tools"]
    assert sorted(p.name for p in (tmp_path / "yaml").iterdir()) == ["ds.yaml"]


# --------------------------------------------------------------------------- ml-100k, stats, yaml


def test_ensure_ml100k_converts_once_and_keeps_wheel_order(tmp_path: Path) -> None:
    data = tmp_path / "data"
    folder = Path(ensure_ml100k(str(data)))
    assert folder == data / "ml-100k"
    inter = folder / "ml-100k.inter"
    wheel = Path(wheel_dir())
    src = [line.split("\t") for line in (wheel / "ml-100k.inter").read_text().splitlines()]
    ours = [line.split("\t") for line in inter.read_text().splitlines()]
    assert ours[0] == ["user_id:token", "item_id:token", "timestamp:float"]
    assert ours[1:] == [[r[0], r[1], r[3]] for r in src[1:]]
    assert (folder / "ml-100k.item").read_text() == (wheel / "ml-100k.item").read_text()
    stamp = inter.stat().st_mtime_ns
    assert ensure_ml100k(str(data)) == str(folder)
    assert inter.stat().st_mtime_ns == stamp  # not converted again
    assert_is_tracked_yaml(render_dataset_yaml(ml100k_spec()), "ml-100k")
    assert yaml.safe_load(render_dataset_yaml(ml100k_spec()))["le_item_verb"] == "watched"


def test_stats_counts_quality_problems(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "d" / "q"
    folder.mkdir(parents=True)
    (folder / "q.inter").write_text(
        "user_id:token\titem_id:token\ttimestamp:float\n"
        "a\t1\t1\na\t2\t2\na\t2\t2\nb\t1\t5\nc\t3\t1\nc\t1\t2\nc\t2\t3\nc\t4\t4\n"
    )
    (folder / "q.item").write_text("item_id:token\ttitle:token_seq\tkind:token\n1\tOne\tx\n2\t\ty\n3\t\t\n")
    s = dataset_stats("q", str(tmp_path / "d"))
    assert (s["items"], s["sequences"], s["interactions"]) == (4, 3, 8)
    assert s["duplicate_user_item_time_rows"] == 1
    assert s["users_with_one_interaction"] == 1
    assert s["items_without_any_text"] == 2  # item 3 (empty) and item 4 (no .item row)
    assert s["items_missing_from_item_file"] == 1
    assert s["text_field_share_non_empty"] == {"title": 0.25, "kind": 0.5}
    assert s["sequence_length"]["p0"] == 1 and s["sequence_length"]["p100"] == 4
    assert main(["stats", "q", "--data_path", str(tmp_path / "d")]) == 0
    out = capsys.readouterr().out
    assert "#items" in out and "duplicate (user, item, timestamp) rows: 1" in out
    with pytest.raises(SystemExit, match="atomic file not found"):
        main(["stats", "missing", "--data_path", str(tmp_path / "d")])


@pytest.mark.parametrize("name", ["ml-100k", "amazon-scientific", "lfm"])
def test_tracked_dataset_yaml_has_a_comment_on_every_key(name: str) -> None:
    text = (tracked_yaml(name)).read_text()
    conf = yaml.safe_load(text)
    for line in text.splitlines():
        if line and not line.startswith("#"):
            assert " # " in line, line
    assert conf["USER_ID_FIELD"] == "user_id" and conf["ITEM_ID_FIELD"] == "item_id"
    assert conf["load_col"]["item"] == ["item_id", *conf["item_text_fields"]]
    for field in conf["item_text_fields"]:
        assert "{" + field + "}" in conf["le_item_template"]
    assert conf["le_item_template"].startswith("[item] " + conf["le_item_noun"])
    assert amazon_spec("x", "amazon").noun == "product"
