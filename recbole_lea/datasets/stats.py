"""Statistics of an atomic dataset: the paper's Table 1 (#items, #sequences, #interactions, item
text fields) plus sequence-length quantiles, text coverage and data-quality counts. A dataset a
converter cut into sessions (its ``conversion_report.json`` says how) also gets the number of
users its sessions came from."""

from __future__ import annotations

import csv
import json
import os
from typing import Any

import numpy as np
import pandas as pd

from recbole_lea.datasets.common import DatasetError

QUANTILES = (0.0, 0.25, 0.5, 0.75, 0.9, 0.99, 1.0)


def read_atomic_columns(path: str, columns: list[str] | None = None) -> pd.DataFrame:
    """Read a RecBole atomic file as strings (float columns as float); header ``name:type``."""
    if not os.path.isfile(path):
        raise DatasetError(f"atomic file not found: {path} (convert the dataset first, or pass --data_path)")
    with open(path, encoding="utf-8") as fh:
        head = fh.readline().rstrip("\r\n").split("\t")
    names, dtypes = [], {}
    for cell in head:
        if ":" not in cell:
            raise DatasetError(f"{path}: header cell {cell!r} is not name:type (not a RecBole atomic file?)")
        field, kind = cell.split(":", 1)
        names.append(field)
        dtypes[field] = np.float64 if kind == "float" else str
    usecols = [n for n in names if columns is None or n in columns]
    return pd.read_csv(
        path,
        sep="\t",
        header=0,
        names=names,
        usecols=usecols,
        dtype={n: dtypes[n] for n in usecols},
        quoting=csv.QUOTE_NONE,
        keep_default_na=False,
        na_filter=False,
        engine="c",
    )


def _text_fields(folder: str, name: str, item_columns: list[str]) -> list[str]:
    """``item_text_fields`` of the dataset's yaml (in its folder, else the shipped one)."""
    from recbole_lea.options import dataset_yaml

    fields = dataset_yaml(name, os.path.dirname(os.path.normpath(folder))).get("item_text_fields")
    if fields:
        return [f for f in fields if f in item_columns]
    return [c for c in item_columns if c != "item_id"]


def _sessions(folder: str) -> dict[str, Any] | None:
    """How the converter cut the dataset into sessions (``conversion_report.json``), or None."""
    path = os.path.join(folder, "conversion_report.json")
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as fh:
            report = json.load(fh)
    except (OSError, ValueError):
        return None
    found = report.get("sessions") if isinstance(report, dict) else None
    return found if isinstance(found, dict) and isinstance(found.get("separator"), str) else None


def dataset_stats(name: str, data_path: str = "atomic_datasets") -> dict[str, Any]:
    """Compute the statistics of ``<data_path>/<name>/<name>.inter`` (and ``.item``)."""
    folder = os.path.join(data_path, name)
    inter_path = os.path.join(folder, f"{name}.inter")
    inter = read_atomic_columns(inter_path, ["user_id", "item_id", "timestamp"])
    for col in ("user_id", "item_id"):
        if col not in inter.columns:
            raise DatasetError(f"{inter_path}: no {col} column")
    lengths = inter.groupby("user_id", sort=False).size().to_numpy()
    items = pd.unique(inter["item_id"])
    out: dict[str, Any] = {
        "name": name,
        "items": int(items.shape[0]),
        "sequences": int(lengths.shape[0]),
        "interactions": int(len(inter)),
        "sequence_length": {
            f"p{int(q * 100)}": float(np.quantile(lengths, q)) if lengths.size else 0.0 for q in QUANTILES
        },
        "sequence_length_mean": float(lengths.mean()) if lengths.size else 0.0,
        "users_with_one_interaction": int((lengths == 1).sum()),
    }
    cut = _sessions(folder)
    if cut is not None:  # each sequence is a session; its user is the id before the last separator
        users = inter["user_id"].drop_duplicates().str.rpartition(cut["separator"])[0]
        out["sessions"] = {
            **cut,
            "sessions": out["sequences"],
            "users": int(users.nunique()),
            "sessions_per_user": out["sequences"] / max(int(users.nunique()), 1),
        }
    key = ["user_id", "item_id"] + (["timestamp"] if "timestamp" in inter.columns else [])
    out["duplicate_user_item_time_rows"] = int(inter.duplicated(key).sum())

    item_path = os.path.join(folder, f"{name}.item")
    fields: list[str] = []
    fill: dict[str, float] = {}
    if os.path.isfile(item_path):
        item = read_atomic_columns(item_path).drop_duplicates("item_id")
        fields = _text_fields(folder, name, list(item.columns))
        used = pd.DataFrame({"item_id": items}).merge(item, on="item_id", how="left")
        out["item_rows"] = int(len(item))
        out["items_missing_from_item_file"] = int((~pd.Series(items).isin(item["item_id"])).sum())
        any_text = np.zeros(len(used), dtype=bool)
        for f in fields:
            present = used[f].fillna("").astype(str).str.strip() != ""
            fill[f] = float(present.mean()) if len(used) else 0.0
            any_text |= present.to_numpy()
        out["items_without_any_text"] = int((~any_text).sum())
    else:
        out["item_rows"] = 0
        out["items_missing_from_item_file"] = int(items.shape[0])
        out["items_without_any_text"] = int(items.shape[0])
    out["item_text_fields"] = fields
    out["text_field_share_non_empty"] = fill
    return out


def format_stats(s: dict[str, Any]) -> str:
    """The paper's Table 1 row plus the extra counts, as plain text."""
    fields = ", ".join(s["item_text_fields"]) or "-"
    head: tuple[str, ...] = ("Dataset", "#items", "#sequences", "#interactions", "item text")
    row: tuple[str, ...] = (s["name"], f"{s['items']:,}", f"{s['sequences']:,}", f"{s['interactions']:,}", fields)
    cut = s.get("sessions")
    if cut:  # the sessions' users beside the sessions
        head = (*head[:4], "#users", head[4])
        row = (*row[:4], f"{cut['users']:,}", row[4])
    widths = [max(len(a), len(b)) for a, b in zip(head, row)]
    lines = [
        "  ".join(h.ljust(w) for h, w in zip(head, widths)).rstrip(),
        "  ".join("-" * w for w in widths),
        "  ".join(r.ljust(w) for r, w in zip(row, widths)).rstrip(),
        "",
        "sequence length: "
        + ", ".join(f"{k} {v:g}" for k, v in s["sequence_length"].items())
        + f", mean {s['sequence_length_mean']:.2f}",
    ]
    if cut:
        lines.insert(
            4,
            f"sequences are sessions ({cut['option']}, user_id '{cut['user_id_format']}'): "
            f"{cut['sessions']:,} sessions from {cut['users']:,} users, {cut['sessions_per_user']:.2f} per user; "
            f"{cut['description']}",
        )
    if s["text_field_share_non_empty"]:
        lines.append(
            "items with non-empty text: "
            + ", ".join(f"{f} {v:.1%}" for f, v in s["text_field_share_non_empty"].items())
        )
    lines += [
        f"items without any text: {s['items_without_any_text']:,}",
        f"items missing from .item: {s['items_missing_from_item_file']:,} (.item rows: {s['item_rows']:,})",
        f"duplicate (user, item, timestamp) rows: {s['duplicate_user_item_time_rows']:,}",
        f"{'sessions' if cut else 'users'} with one interaction: {s['users_with_one_interaction']:,}",
    ]
    return "\n".join(lines)
