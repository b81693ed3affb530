"""Reading the base atomic dataset and turning it into per-user training streams."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from recbole_lea.data.split import rank_in_user, split_training_mask, user_order
from recbole_lea.errors import ConfigError

from .config import LEConfig


class LEInputError(ConfigError):
    """Bad input for the LE build; the message names the file/field/option and the fix."""


def read_atomic(path: Path) -> tuple[pd.DataFrame, dict[str, str]]:
    """Read a RecBole atomic file as strings (values kept verbatim); return (df, name -> type).
    An empty file, bytes that are not UTF-8 and a value longer than RecBole's reader accepts are
    each one :class:`LEInputError` naming the file (and the line)."""
    if not path.exists():
        raise LEInputError(f"atomic file {path} does not exist")
    from recbole_lea.datasets.validate import check_field_sizes

    try:
        check_field_sizes(path)
        df = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, na_filter=False, quoting=3, encoding="utf-8")
    except ConfigError as err:
        raise LEInputError(str(err)) from None
    except pd.errors.EmptyDataError:
        raise LEInputError(
            f"{path} is empty: an atomic file starts with a header line of name:type columns "
            "(e.g. item_id:token<TAB>title:token_seq); write the file again (convert the dataset again)"
        ) from None
    except UnicodeDecodeError:
        raise LEInputError(
            f"{path}: line {_first_non_utf8_line(path)}: bytes that are not UTF-8 (RecBole and the LE read "
            f"atomic files as UTF-8); save the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8`)"
        ) from None
    types: dict[str, str] = {}
    names = []
    for col in df.columns:
        name, _, typ = col.partition(":")
        names.append(name)
        types[name] = typ or "token"
    df.columns = names
    return df, types


def _first_non_utf8_line(path: Path) -> int:
    """The 1-based number of the first line of ``path`` that is not valid UTF-8 (0: none)."""
    with open(path, "rb") as fh:
        for number, line in enumerate(fh, start=1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError:
                return number
    return 0


@dataclass
class BaseData:
    dataset: str
    inter_path: Path
    item_path: Path
    inter: pd.DataFrame  # base .inter, file order, string values
    inter_types: dict[str, str]
    item: pd.DataFrame
    item_types: dict[str, str]
    item_ids: list[str]  # raw item tokens, .item order; index = LE item index
    item_index: dict[str, int]
    train_mask: np.ndarray  # bool, file order
    rank: np.ndarray  # rank of the row in its user's sorted sequence
    order: np.ndarray  # rows sorted by (user, time, file order)
    split: dict  # the split whose training rows train_mask marks (recbole_lea.quick_start.split_of)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)


def load_base(data_path: str | Path, dataset: str, cfg: LEConfig, split: dict | None = None) -> BaseData:
    """The base atomic files of ``dataset``, checked, with the training-target rows of ``split``
    (default: RecBole's leave-one-out)."""
    folder = Path(data_path) / dataset
    inter_path = folder / f"{dataset}.inter"
    item_path = folder / f"{dataset}.item"
    if not inter_path.exists():
        raise LEInputError(
            f"base interactions {inter_path} not found; create the atomic dataset first "
            f"(e.g. recbole_lea.datasets converters) or pass the right data_path"
        )
    if not item_path.exists():
        raise LEInputError(f"item file {item_path} not found; the LE needs item text for '{dataset}'")
    inter, itypes = read_atomic(inter_path)
    item, item_types = read_atomic(item_path)
    uid, iid, tf = cfg.USER_ID_FIELD, cfg.ITEM_ID_FIELD, cfg.TIME_FIELD
    for fld, opt in ((uid, "USER_ID_FIELD"), (iid, "ITEM_ID_FIELD"), (tf, "TIME_FIELD")):
        if fld not in inter.columns:
            raise LEInputError(
                f"{inter_path}: column '{fld}' (option {opt}) missing; columns are {list(inter.columns)}"
            )
    if iid not in item.columns:
        raise LEInputError(f"{item_path}: item id column '{iid}' (option ITEM_ID_FIELD) missing")
    validate_template(cfg, item_path, list(item.columns))
    if item[iid].duplicated().any():
        dup = item[iid][item[iid].duplicated()].iloc[:5].tolist()
        raise LEInputError(f"{item_path}: duplicate item ids {dup}")
    item_ids = item[iid].tolist()
    item_index = {t: i for i, t in enumerate(item_ids)}
    missing = sorted(set(inter[iid]) - set(item_index))
    if missing:
        raise LEInputError(
            f"{inter_path}: {len(missing)} item id(s) of '{iid}' are absent from {item_path} "
            f"(e.g. {missing[:5]}); add their rows (with text) to the .item file or drop those "
            f"interactions in the converter -- the LE drops nothing silently"
        )
    try:
        pd.to_numeric(inter[tf], errors="raise")
    except ValueError as exc:
        raise LEInputError(f"{inter_path}: column '{tf}' is not numeric: {exc}") from exc
    mask = split_training_mask(inter, uid, tf, split or {"protocol": "loo"})
    rank, _ = rank_in_user(inter, uid, tf)
    order = user_order(inter, uid, tf)
    return BaseData(
        dataset,
        inter_path,
        item_path,
        inter,
        itypes,
        item,
        item_types,
        item_ids,
        item_index,
        mask,
        rank,
        order,
        dict(split or {"protocol": "loo"}),
    )


TEMPLATE_FIELD = re.compile(r"\{([^{}]+)\}")


def validate_template(cfg: LEConfig, item_path: Path, columns: list[str]) -> None:
    tpl = cfg.le_item_template
    if not tpl:
        raise LEInputError(
            "option le_item_template is empty; set it in properties/dataset/<dataset>.yaml "
            '(e.g. "[item] movie is titled {movie_title}") or pass --le_item_template'
        )
    if "[item]" not in tpl:
        raise LEInputError(f"le_item_template {tpl!r} has no '[item]' placeholder for the item token")
    for name in TEMPLATE_FIELD.findall(tpl):
        if name not in columns:
            raise LEInputError(
                f"le_item_template names field '{name}' but {item_path} has no such column "
                f"(columns: {columns}); fix the template or the converter"
            )
        if cfg.item_text_fields and name not in cfg.item_text_fields:
            raise LEInputError(
                f"le_item_template names field '{name}' that is not in item_text_fields "
                f"{cfg.item_text_fields}; add it there (properties/dataset/<dataset>.yaml)"
            )


def item_sentences(base: BaseData, cfg: LEConfig) -> list[tuple[str, str]]:
    """(text before [item], text after [item]) per item, in .item order."""
    out = []
    rows = base.item.to_dict("records")
    for row in rows:
        text = TEMPLATE_FIELD.sub(lambda m, r=row: " ".join(str(r[m.group(1)]).split()), cfg.le_item_template)
        before, _, after = text.partition("[item]")
        out.append((before, after))
    return out


def item_titles(base: BaseData, cfg: LEConfig) -> list[str]:
    """The text of each item for ``le_item_repr: titles``, in .item order: the values of
    ``item_text_fields`` (else the template's fields) joined with ", ", each value's whitespace
    collapsed as in the item sentence; the title comes first in every shipped dataset."""
    fields = list(cfg.item_text_fields) or TEMPLATE_FIELD.findall(cfg.le_item_template)
    for name in fields:
        if name not in base.item.columns:
            raise LEInputError(
                f"item_text_fields names '{name}' but {base.item_path} has no such column "
                f"(columns: {list(base.item.columns)}); fix item_text_fields or the converter"
            )
    out = []
    for row in base.item[fields].to_dict("records"):
        values = (" ".join(str(row[name]).split()) for name in fields)
        out.append(", ".join(v for v in values if v))
    return out


@dataclass
class UserStream:
    """A user's training stream: the first row + its training rows, in time order."""

    user: str
    items: np.ndarray  # LE item indices x_0..x_{n-1}
    rows: np.ndarray  # base .inter row index of each item (rows[0] is the user's first row)


def training_streams(base: BaseData, cfg: LEConfig) -> list[UserStream]:
    """Streams hold ONLY the user's first row and its training targets (never valid/test)."""
    uid, iid = cfg.USER_ID_FIELD, cfg.ITEM_ID_FIELD
    users = base.inter[uid].to_numpy()[base.order]
    keep = base.train_mask[base.order] | (base.rank[base.order] == 0)
    item_idx = np.array([base.item_index[t] for t in base.inter[iid].to_numpy()], dtype=np.int64)
    streams: list[UserStream] = []
    start = 0
    n = len(users)
    while start < n:
        end = start
        while end < n and users[end] == users[start]:
            end += 1
        rows = base.order[start:end][keep[start:end]]
        # rows are (first, training...) and training rows are a time-ordered prefix after the first
        if len(rows) >= 2:
            streams.append(UserStream(str(users[start]), item_idx[rows], rows))
        start = end
    return streams


def training_item_pool(streams: list[UserStream]) -> np.ndarray:
    """Items that occur in the training streams (negatives and candidates come from here)."""
    if not streams:
        return np.zeros(0, dtype=np.int64)
    return np.unique(np.concatenate([s.items for s in streams]))
