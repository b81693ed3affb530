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
