"""The generic CSV/TSV converter (``python -m recbole_lea.datasets csv``) on small generated files."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from recbole_lea.datasets import ConvertOptions, convert_csv


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
    import pytest

    from recbole_lea.datasets.cli import main

    with pytest.raises(SystemExit, match=r"--verb 'watched: \{x\}' must be plain words.*'listened to'"):
        main(["csv", "--inter", str(tmp_path / "absent.csv"), "--verb", "watched: {x}", "--quiet"])
