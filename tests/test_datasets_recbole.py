"""Converted datasets load in RecBole 1.2.1 with the dataset yaml the converter writes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from recbole_lea.datasets import BadLimit, ConvertOptions, convert_amazon
from recbole_lea.datasets.ml100k import ensure_ml100k
from recbole_lea.options import PROPERTIES

REPO = Path(__file__).resolve().parents[1]


def tracked_yaml(name: str) -> Path:
    """The shipped dataset yaml (part of the installed package)."""
    return PROPERTIES / "dataset" / f"{name}.yaml"


def recbole_dataset(name: str, data_path: Path, yaml_file: Path, tmp_path: Path) -> tuple[Any, Any]:
    from recbole.config import Config
    from recbole.data import create_dataset

    config = Config(
        model="SASRec",
        dataset=name,
        config_file_list=[str(yaml_file)],
        config_dict={
            "data_path": str(data_path),
            "train_neg_sample_args": None,  # SASRec's CE loss
            "show_progress": False,
            "save_dataset": False,
            "checkpoint_dir": str(tmp_path / "saved"),
        },
    )
    return config, create_dataset(config)


def test_ml100k_loads_in_recbole(tmp_path: Path) -> None:
    ensure_ml100k(str(tmp_path))
    _, ds = recbole_dataset("ml-100k", tmp_path, tracked_yaml("ml-100k"), tmp_path)
    assert ds.user_num == 944 and ds.item_num == 1683 and ds.inter_num == 100000  # + [PAD]
    assert {"movie_title", "release_year", "class"} <= set(ds.item_feat.columns)
    assert "rating" not in ds.inter_feat.columns


def test_converted_amazon_fixture_loads_and_splits(tmp_path: Path) -> None:
    from recbole.data import data_preparation

    reviews = tmp_path / "r.json"
    meta = tmp_path / "m.json"
    rows, metas = [], []
    for u in range(12):
        for j in range(5):
            rows.append({"reviewerID": f"U{u}", "asin": f"P{(u + j) % 9}", "unixReviewTime": 1000 + j})
    for p in range(9):
        metas.append(
            {
                "asin": f"P{p}",
                "title": f"Item {p}\twith tab",
                "category": ["A", "B"],
                "brand": "" if p % 3 == 0 else f"Brand {p}",
                "description": [] if p % 2 else ["some text"],
            }
        )
    reviews.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    meta.write_text("\n".join(json.dumps(m) for m in metas) + "\n")
    yaml_file = tmp_path / "fix.yaml"
    convert_amazon(
        str(reviews),
        str(meta),
        "fix",
        ConvertOptions(out=str(tmp_path / "data"), yaml_out=str(yaml_file), max_bad=BadLimit.parse("0")),
    )
    config, ds = recbole_dataset("fix", tmp_path / "data", yaml_file, tmp_path)
    assert ds.user_num == 13 and ds.item_num == 10 and ds.inter_num == 60
    assert {"title", "category", "brand", "description"} <= set(ds.item_feat.columns)
    train, valid, test = data_preparation(config, ds)
    assert len(test.dataset) == 12  # leave-one-out: one test row per user


@pytest.mark.parametrize("name", ["amazon-scientific", "lfm"])
def test_tracked_yaml_is_a_valid_recbole_config(name: str, tmp_path: Path) -> None:
    from recbole.config import Config

    config = Config(
        model="SASRec",
        dataset=name,
        config_file_list=[str(tracked_yaml(name))],
        config_dict={
            "data_path": str(tmp_path),
            "train_neg_sample_args": None,
            "checkpoint_dir": str(tmp_path / "saved"),
        },
    )
    assert config["normalize_all"] is False
    assert config["load_col"]["inter"] == ["user_id", "item_id", "timestamp"]
    assert config["le_item_template"].startswith("[item] ")


def test_csv_without_items_loads_in_recbole(tmp_path: Path) -> None:
    """Ids-only .item (no items file): one column, read by RecBole as the item ids."""
    from recbole_lea.datasets import convert_csv

    inter = tmp_path / "log.csv"
    inter.write_text("user_id,item_id,t\n" + "".join(f"u{u},i{(u + j) % 5},{j}\n" for u in range(6) for j in range(4)))
    yaml_file = tmp_path / "log.yaml"
    convert_csv(
        str(inter), None, "log", ConvertOptions(out=str(tmp_path / "data"), yaml_out=str(yaml_file)), time_col="t"
    )
    _, ds = recbole_dataset("log", tmp_path / "data", yaml_file, tmp_path)
    assert ds.user_num == 7 and ds.item_num == 6 and ds.inter_num == 24
    assert list(ds.item_feat.columns) == ["item_id"] and len(ds.item_feat) == 6
