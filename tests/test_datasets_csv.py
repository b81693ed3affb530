"""The generic CSV/TSV converter (``python -m recbole_lea.datasets csv``) on small generated files."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from recbole_lea.datasets import BadLimit, ConvertOptions, DatasetError, convert_csv


def opts(tmp_path: Path, **kw: object) -> ConvertOptions:
    kw.setdefault("out", str(tmp_path / "out"))
    kw.setdefault("yaml_out", str(tmp_path / "yaml" / "ds.yaml"))
    return ConvertOptions(**kw)  # type: ignore[arg-type]


def columns_per_line(path: Path) -> list[int]:
    return [len(line.split("\t")) for line in path.read_text(encoding="utf-8").splitlines()]


# --------------------------------------------------------------------------- .item without an items file


def test_item_file_without_items_has_one_column_on_every_line(tmp_path: Path) -> None:
    inter = tmp_path / "log.csv"
    inter.write_text("user_id,item_id,t\nu1,i2,1\nu1,i1,2\nu2,i2,3\n")
    convert_csv(str(inter), None, "log", opts(tmp_path), time_col="t")
    item = tmp_path / "out" / "log" / "log.item"
    assert item.read_text() == "item_id:token\ni1\ni2\n"  # no trailing tab under the one-column header
    assert set(columns_per_line(item)) == {1}
    # read as the LE reads atomic files: the ids are the item_id column, not a pandas index
    df = pd.read_csv(item, sep="\t", dtype=str, keep_default_na=False, na_filter=False, quoting=3)
    assert list(df.columns) == ["item_id:token"]
    assert df["item_id:token"].tolist() == ["i1", "i2"]


# --------------------------------------------------------------------------- le_item_verb


def test_verb_defaults_per_converter_and_the_option(tmp_path: Path) -> None:
    import yaml

    from recbole_lea.datasets.cli import main

    inter = tmp_path / "log.csv"
    inter.write_text("user_id,item_id,t\nu1,i2,1\nu1,i1,2\n")
    conf = tmp_path / "log.yaml"
    common = ["--inter", str(inter), "--time-col", "t", "--out", str(tmp_path / "out"), "--yaml-out", str(conf)]
    assert main(["csv", *common, "--quiet"]) == 0
    assert yaml.safe_load(conf.read_text())["le_item_verb"] == "interacted with"
    assert main(["csv", *common, "--quiet", "--verb", "listened to", "--noun", "song"]) == 0
    text = conf.read_text()
    assert yaml.safe_load(text)["le_item_verb"] == "listened to"
    assert "# the LE instruction: 'The user has listened to these songs'" in text
    assert main(["ml100k", "--out", str(tmp_path / "out"), "--yaml-out", str(conf), "--quiet"]) == 0
    assert yaml.safe_load(conf.read_text())["le_item_verb"] == "watched"
    assert main(["ml100k", "--out", str(tmp_path / "out"), "--yaml-out", str(conf), "--quiet", "--verb", "rated"]) == 0
    assert yaml.safe_load(conf.read_text())["le_item_verb"] == "rated"


def test_a_bad_verb_names_the_option_before_reading(tmp_path: Path) -> None:
    from recbole_lea.datasets.cli import main

    with pytest.raises(SystemExit, match=r"--verb 'watched: \{x\}' must be plain words.*'listened to'"):
        main(["csv", "--inter", str(tmp_path / "absent.csv"), "--verb", "watched: {x}", "--quiet"])


# --------------------------------------------------------------------------- RecBole atomic files, separators

ATOMIC_INTER = (
    "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
    "7\t20\t4\t300\n7\t10\t5\t100\n8\t10\t3\t50\n7\t30\t1\t200\n"
)
ATOMIC_ITEM = "item_id:token\ttitle:token_seq\tbrand:token\n10\tRed Ball\tAcme Toys\n20\tBlue Cube\tZed\n30\tGreen Cone\tAcme Toys\n"


def load_yaml(path: Path) -> dict:
    import yaml

    return yaml.safe_load(path.read_text())


@pytest.mark.parametrize("suffix", [".inter", ".csv"])  # the content decides, not the name
def test_recbole_atomic_files_convert_without_options(tmp_path: Path, suffix: str) -> None:
    inter = tmp_path / f"toys{suffix}"
    inter.write_text(ATOMIC_INTER)
    item = tmp_path / f"toys-items{suffix.replace('inter', 'item')}"
    item.write_text(ATOMIC_ITEM)
    report = convert_csv(str(inter), str(item), "toys", opts(tmp_path))
    folder = tmp_path / "out" / "toys"
    assert (folder / "toys.inter").read_text().splitlines()[1:] == [
        "7\t10\t100",
        "7\t30\t200",
        "7\t20\t300",
        "8\t10\t50",
    ]
    header, *rows = (folder / "toys.item").read_text().splitlines()
    assert header == "item_id:token\ttitle:token_seq\tbrand:token"  # types stripped from names, token kept token
    assert rows == ["10\tRed Ball\tAcme Toys", "20\tBlue Cube\tZed", "30\tGreen Cone\tAcme Toys"]
    conf = load_yaml(tmp_path / "yaml" / "ds.yaml")
    assert conf["item_text_fields"] == ["title", "brand"]
    assert conf["le_item_template"] == "[item] {title}, {brand}"
    assert "token" not in conf["le_item_template"] and ":" not in "".join(conf["item_text_fields"])
    assert "time column 'timestamp' found and used (--time-col none keeps file order)" in report.notes
    assert not report.warnings


def test_typed_column_names_are_accepted_in_options(tmp_path: Path) -> None:
    inter = tmp_path / "toys.inter"
    inter.write_text(ATOMIC_INTER)
    convert_csv(
        str(inter), None, "toys", opts(tmp_path), user_col="user_id:token", item_col="item_id", time_col="rating:float"
    )
    rows = (tmp_path / "out" / "toys" / "toys.inter").read_text().splitlines()[1:]
    assert rows == ["7\t30\t1", "7\t20\t4", "7\t10\t5", "8\t10\t3"]  # ordered by rating


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("a.csv", "u;i;t\nx;1;5\nx;2;4\n"),  # semicolon in a .csv
        ("a.txt", "u,i,t\nx,1,5\nx,2,4\n"),  # comma in a .txt (tab by extension before)
        ("a.csv", "u\ti\tt\nx\t1\t5\nx\t2\t4\n"),  # tab in a .csv
        ("a.csv", 'u,i,t\nx,"1;a",5\nx,2,4\n'),  # comma and, inside quotes, a semicolon
        ("a.dat", "u;i;t\nx;1;5\nx;2;4\n"),
    ],
)
def test_the_separator_is_detected_from_the_header(tmp_path: Path, name: str, text: str) -> None:
    inter = tmp_path / name
    inter.write_text(text)
    convert_csv(str(inter), None, "a", opts(tmp_path), user_col="u", item_col="i", time_col="t")
    rows = (tmp_path / "out" / "a" / "a.inter").read_text().splitlines()[1:]
    assert [r.split("\t")[1] for r in rows] in (["2", "1"], ["2", "1;a"])


def test_an_undetectable_separator_names_the_flag(tmp_path: Path) -> None:
    inter = tmp_path / "a.csv"
    inter.write_text("u|i\nx|1\n")
    with pytest.raises(DatasetError, match=r"a.csv: cannot tell the column separator.*pass --sep \(e.g. --sep '\|'\)"):
        convert_csv(str(inter), None, "a", opts(tmp_path), user_col="u", item_col="i")
    convert_csv(str(inter), None, "a", opts(tmp_path), user_col="u", item_col="i", sep="pipe")
    good = tmp_path / "b.csv"
    good.write_text("u,i\nx,1\n")
    items = tmp_path / "items.txt"
    items.write_text("i|title\n1|One\n")
    with pytest.raises(DatasetError, match=r"items.txt: cannot tell the column separator.*pass --items-sep"):
        convert_csv(str(good), str(items), "b", opts(tmp_path), user_col="u", item_col="i")


def test_an_ambiguous_separator_names_the_flag_and_the_extension_decides(tmp_path: Path) -> None:
    text = "u;i,t\nx;1,5\nx;2,4\n"  # both ';' and ',' split every line into 2 columns
    inter = tmp_path / "a.dat"
    inter.write_text(text)
    with pytest.raises(DatasetError, match=r"comma and semicolon.*pass --sep \(--sep comma or --sep semicolon\)"):
        convert_csv(str(inter), None, "a", opts(tmp_path), user_col="u", item_col="i")
    as_csv = tmp_path / "a.csv"
    as_csv.write_text(text)
    with pytest.raises(DatasetError, match=r"no column \['u', 'i'\] \(columns: \['u;i', 't'\]\)"):
        convert_csv(str(as_csv), None, "a", opts(tmp_path), user_col="u", item_col="i")  # .csv: comma


def test_a_wrong_sep_error_names_the_sep_flag(tmp_path: Path) -> None:
    inter = tmp_path / "toys.inter"
    inter.write_text("user_id:token,item_id:token\n1,2\n")
    with pytest.raises(
        DatasetError,
        match=r"no column \['user_id', 'item_id'\]: with separator '\\t' the header reads as one column 'user_id:token,item_id:token'; pass --sep comma$",
    ):
        convert_csv(str(inter), None, "t", opts(tmp_path), sep="tab")
    with pytest.raises(DatasetError, match=r"--sep '::' must be one character"):
        convert_csv(str(inter), None, "t", opts(tmp_path), sep="::")


def test_a_header_only_file_names_the_file(tmp_path: Path) -> None:
    inter = tmp_path / "toys.inter"
    inter.write_text("user_id:token\titem_id:token\n")
    with pytest.raises(DatasetError, match=r"toys.inter: no interaction rows under the header"):
        convert_csv(str(inter), None, "t", opts(tmp_path))


# --------------------------------------------------------------------------- the item sentence


def test_the_default_sentence_spends_its_words_on_item_text(tmp_path: Path) -> None:
    import re

    inter = tmp_path / "log.csv"
    inter.write_text("user_id,item_id,t\nu,p1,1\nu,p2,2\n")
    items = tmp_path / "products.csv"
    items.write_text("item_id,title,category,brand\np1,Cordless Drill 18V,Tools,Bosch\np2,Saw,,Stanley\n")
    convert_csv(str(inter), str(items), "shop", opts(tmp_path), time_col="t", noun="product", token_cols=["brand"])
    conf = load_yaml(tmp_path / "yaml" / "ds.yaml")
    template = conf["le_item_template"]
    assert template == "[item] {title}, {category}, {brand}"
    # what the LE checks (recbole_lea/le/data.py validate_template) and how it fills the sentence
    assert "[item]" in template
    placeholders = re.findall(r"\{([^{}]+)\}", template)
    assert set(placeholders) <= set(conf["item_text_fields"])
    assert conf["load_col"]["item"] == ["item_id", *conf["item_text_fields"]]
    _, *rows = (tmp_path / "out" / "shop" / "shop.item").read_text().splitlines()
    header = ["item_id", *conf["item_text_fields"]]
    record = dict(zip(header, rows[0].split("\t")))
    sentence = re.sub(r"\{([^{}]+)\}", lambda m: " ".join(record[m.group(1)].split()), template)
    assert sentence == "[item] Cordless Drill 18V, Tools, Bosch"
    assert sentence.split()[1:4] == ["Cordless", "Drill", "18V,"]  # no field names before the text


def test_without_text_the_sentence_is_the_noun(tmp_path: Path) -> None:
    inter = tmp_path / "log.csv"
    inter.write_text("user_id,item_id,t\nu,p1,1\nu,p2,2\n")
    convert_csv(str(inter), None, "shop", opts(tmp_path), time_col="t", noun="product")
    conf = load_yaml(tmp_path / "yaml" / "ds.yaml")
    assert conf["le_item_template"] == "[item] product" and conf["item_text_fields"] == []


# --------------------------------------------------------------------------- time over several columns


def test_a_date_over_year_month_day_columns(tmp_path: Path) -> None:
    inter = tmp_path / "log.csv"
    inter.write_text("u,i,year,month,day\nx,a,2024,3,1\nx,b,2024,1,15\nx,c,2023,12,31\ny,a,2024,2,30\n")
    report = convert_csv(
        str(inter),
        None,
        "log",
        opts(tmp_path, max_bad=BadLimit.parse("1")),
        user_col="u",
        item_col="i",
        time_col="year,month,day",
    )
    rows = (tmp_path / "out" / "log" / "log.inter").read_text().splitlines()[1:]
    assert rows == ["x\tc\t1703980800", "x\tb\t1705276800", "x\ta\t1709251200"]  # UTC midnight, time order
    example = report.files["interactions"]["examples"][0]
    assert example["where"] == 5
    assert (
        example["reason"]
        == "time '2024 2 30' (year,month,day) is not whole numbers year, month, day (or set --time-format)"
    )
    conf = load_yaml(tmp_path / "yaml" / "ds.yaml")
    assert conf["TIME_FIELD"] == "timestamp"
    assert "columns year,month,day" in (tmp_path / "yaml" / "ds.yaml").read_text()


def test_several_time_columns_with_a_format(tmp_path: Path) -> None:
    inter = tmp_path / "log.tsv"
    inter.write_text("u\ti\tdate\tclock\nx\ta\t02 Mar 2024\t10:30\nx\tb\t02 Mar 2024\t09:00\n")
    convert_csv(
        str(inter),
        None,
        "log",
        opts(tmp_path),
        user_col="u",
        item_col="i",
        time_col=["date", "clock"],
        time_format="%d %b %Y %H:%M",
    )
    rows = (tmp_path / "out" / "log" / "log.inter").read_text().splitlines()[1:]
    assert rows == ["x\tb\t1709370000", "x\ta\t1709375400"]


def test_too_many_time_columns_without_a_format(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"--time-col a,b,c,d,e,f,g: without --time-format at most 6 columns"):
        convert_csv(str(tmp_path / "x.csv"), None, "x", opts(tmp_path), time_col="a,b,c,d,e,f,g")


# --------------------------------------------------------------------------- no time column: a warning


def test_no_time_column_warns_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import json
    import logging

    inter = tmp_path / "log.csv"
    inter.write_text("user_id,item_id\nu,b\nu,a\nv,a\n")
    with caplog.at_level(logging.WARNING, logger="recbole_lea.datasets"):
        report = convert_csv(str(inter), None, "log", opts(tmp_path))
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "no time column, so each sequence is in file order" in warnings[0].getMessage()
    assert "--time-col" in warnings[0].getMessage()
    assert len(report.warnings) == 1
    saved = json.loads((tmp_path / "out" / "log" / "conversion_report.json").read_text())
    assert saved["warnings"] == report.warnings
    assert (tmp_path / "out" / "log" / "log.inter").read_text().splitlines()[1:] == ["u\tb\t0", "u\ta\t1", "v\ta\t2"]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="recbole_lea.datasets"):
        convert_csv(str(inter), None, "log", opts(tmp_path), time_col="none")
    assert len(caplog.records) == 1  # file order asked for: still said
    timed = tmp_path / "timed.csv"
    timed.write_text("user_id,item_id,t\nu,b,2\n")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="recbole_lea.datasets"):
        assert not convert_csv(str(timed), None, "timed", opts(tmp_path), time_col="t").warnings
    assert not caplog.records


@pytest.mark.parametrize("quiet", [False, True])
def test_no_time_column_warning_is_printed_once_by_the_cli(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], quiet: bool
) -> None:
    from recbole_lea.datasets.cli import main

    inter = tmp_path / "log.csv"
    inter.write_text("user_id,item_id\nu,b\nu,a\n")
    argv = ["csv", "--inter", str(inter), "--out", str(tmp_path / "out"), "--yaml-out", "none"]
    assert main(argv + (["--quiet"] if quiet else [])) == 0
    out, err = capsys.readouterr()
    assert (out + err).count("no time column") == 1
    assert "recbole_lea.datasets csv: warning: dataset log: no time column, so each sequence is in file order" in err
