"""The split of a dataset into train/valid/test: one contract read by the LE build (on the atomic
files) and by RecBole runs (on RecBole's augmented dataset), so both see the same training rows.

Two protocols exist in this project (config key ``eval_protocol``):

``loo`` (default)
    RecBole's own ``eval_args: {split: {LS: valid_and_test}, order: TO}``: per user, the last
    interaction is the test query, the one before it the validation query, everything earlier
    is training. One query per user in valid and test.

``sequence``
    The protocol of the original SNQN/SA2C code (Xin et al., WSDM'22) that LEA reuses: whole
    sequences (users) are shuffled with ``split_seed`` (fixed by default: the split is a property
    of the data, shared by every model seed and by the LE) and split 80/10/10 into
    train/valid/test users; EVERY interaction of a held-out sequence is a query, ranked against
    all items (full ranking, history items not filtered), and HR/NDCG are averaged over those
    interactions (micro average). RecBole's sequential full-sort evaluation treats each
    augmented row as one query and averages over rows, which is exactly this micro average.

    Deviation (documented in docs/experiments.md): RecBole's sequence augmentation never makes a
    user's FIRST interaction a target, because its history would be empty. The original code does
    evaluate that query (with an all-padding state). A held-out user with ``n`` interactions thus
    contributes ``n - 1`` queries here instead of ``n``.

Rows of the atomic files: :func:`training_row_mask` (leave-one-out) and :func:`split_training_mask`.
Rows of RecBole's augmented dataset: :func:`split_by_sequence`, called by
``recbole_lea.data.dataset.RLSequentialDataset.build`` when ``eval_protocol: sequence``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd


def user_order(df: pd.DataFrame, uid_field: str, time_field: str) -> np.ndarray:
    """Row indices sorted by (user, timestamp, file order) -- a stable sort, like RecBole's."""
    n = len(df)
    time = pd.to_numeric(df[time_field], errors="raise").to_numpy(dtype=np.float64)
    uid = df[uid_field].astype(str).to_numpy()
    # lexsort: last key is primary.  The user key only has to group rows; file order breaks ties.
    return np.lexsort((np.arange(n), time, uid))


def rank_in_user(df: pd.DataFrame, uid_field: str, time_field: str) -> tuple[np.ndarray, np.ndarray]:
    """(rank of each row within its user's sorted sequence, number of rows of that user)."""
    order = user_order(df, uid_field, time_field)
    uid_sorted = df[uid_field].astype(str).to_numpy()[order]
    n = len(df)
    new_group = np.ones(n, dtype=bool)
    if n:
        new_group[1:] = uid_sorted[1:] != uid_sorted[:-1]
    group_id = np.cumsum(new_group) - 1
    starts = np.flatnonzero(new_group)
    counts = np.diff(np.append(starts, n))
    rank_sorted = np.arange(n) - starts[group_id]
    rank = np.empty(n, dtype=np.int64)
    count = np.empty(n, dtype=np.int64)
    rank[order] = rank_sorted
    count[order] = counts[group_id]
    return rank, count


def training_row_mask(df: pd.DataFrame, uid_field: str, time_field: str) -> np.ndarray:
    """Boolean mask (file order) of the rows that are training targets.

    Mirrors RecBole 1.2.1's sequential data augmentation + leave-one-out ``valid_and_test``
    split: per user, rows are stably sorted by time (file order breaks ties); the first row is
    never a target; of the n-1 targets the last is test and the one before valid, but RecBole
    leaves at most n-2 targets out (``min(2, targets - 1)``), so: n >= 4 -> last test, second
    last valid; n == 3 -> last test, no valid; n == 2 -> the single target stays in TRAIN
    (RecBole keeps at least one target in train); n == 1 -> no target.
    """
    rank, count = rank_in_user(df, uid_field, time_field)
    targets = count - 1
    left_out = np.minimum(2, np.maximum(targets - 1, 0))
    return (rank >= 1) & (rank < count - left_out)


# ------------------------------------------------------------------------------ the sequence split
#: default train/valid/test shares of whole sequences (the original SA2C code's 80/10/10)
DEFAULT_SEQUENCE_RATIOS: tuple[float, float, float] = (0.8, 0.1, 0.1)


def split_counts(total: int, ratios: list[float] | tuple[float, ...]) -> list[int]:
    """Number of sequences in each part.

    Every part after the first is rounded down (as RecBole's ``_calcu_split_ids`` does); a part
    whose ratio is positive gets at least one sequence while the first part keeps at least one.
    """
    norm = [r / sum(ratios) for r in ratios]
    counts = [int(np.floor(r * total)) for r in norm]
    counts[0] = total - sum(counts[1:])
    for i in range(1, len(counts)):
        if counts[i] == 0 and norm[i] > 0 and counts[0] > 1:
            counts[i] += 1
            counts[0] -= 1
    return counts


def sequence_parts(users: np.ndarray, ratios: list[float] | tuple[float, ...], split_seed: int) -> np.ndarray:
    """The part (0 train, 1 valid, 2 test) of every row, given each row's RAW user token.

    The split is a property of the data: the distinct raw user tokens are sorted as strings,
    shuffled with ``numpy.random.RandomState(split_seed)`` and cut by ``ratios``, so the LE build
    (which reads the atomic files) and RecBole (which remaps ids) assign every sequence to the
    same part, whatever the row order or the run's seed."""
    if len(ratios) == 0 or any(r < 0 for r in ratios) or sum(ratios) <= 0:
        raise ValueError(f"split ratios must be non-negative and sum > 0, got {list(ratios)}")
    tokens = np.asarray(users).astype(str)
    unique = np.unique(tokens)  # sorted
    order = unique[np.random.RandomState(split_seed).permutation(len(unique))]
    counts = split_counts(len(order), ratios)
    part_of_rank = np.repeat(np.arange(len(counts)), counts)  # part of each shuffled position
    part_of_user = np.empty(len(unique), dtype=np.int64)
    part_of_user[np.searchsorted(unique, order)] = part_of_rank
    return part_of_user[np.searchsorted(unique, tokens)]


def split_training_mask(df: pd.DataFrame, uid_field: str, time_field: str, split: dict) -> np.ndarray:
    """Training-target rows (file order) under ``split``: ``{"protocol": "loo"}`` (RecBole's
    leave-one-out, :func:`training_row_mask`) or ``{"protocol": "sequence", "ratios": [...],
    "split_seed": s}`` (every row but the first of each training sequence)."""
    if split.get("protocol", "loo") == "loo":
        return training_row_mask(df, uid_field, time_field)
    rank, _count = rank_in_user(df, uid_field, time_field)
    parts = sequence_parts(df[uid_field].to_numpy(), split["ratios"], int(split["split_seed"]))
    return (parts == 0) & (rank >= 1)


# ------------------------------------------------------------------------------ RecBole's augmented dataset
def sequence_split_index(dataset: Any, ratios: list[float], split_seed: int) -> list[np.ndarray]:
    """Row indices of each part of an augmented RecBole dataset: whole sequences assigned by
    :func:`recbole_lea.data.split.sequence_parts` on their RAW user tokens. Each index array is
    sorted, so rows keep their (user, time) order."""
    uids = dataset.inter_feat[dataset.uid_field].numpy()
    raw = np.asarray(dataset.id2token(dataset.uid_field, uids)).astype(str)
    parts = sequence_parts(raw, ratios, split_seed)
    return [np.nonzero(parts == p)[0] for p in range(len(ratios))]


def split_by_sequence(dataset: Any, ratios: list[float] | None = None, split_seed: int | None = None) -> list[Any]:
    """Split an augmented RecBole ``SequentialDataset`` by whole sequences (users).

    Args:
        dataset: a RecBole (Sequential)Dataset whose ``inter_feat`` is already an ``Interaction``
            (i.e. after ``_change_feat_format`` / data augmentation, as inside ``build()``).
        ratios: train/valid/test user ratios, default ``[0.8, 0.1, 0.1]``; need not sum to 1.
        split_seed: shuffle seed; defaults to ``dataset.config["split_seed"]`` (a property of the
            data, not of the run: every model seed sees the same split).

    Returns:
        One dataset per ratio (``dataset.copy(part)``), each holding every row of its users in
        the original order. Every row of a held-out user is one query.
    """
    import torch
    from recbole.data.interaction import Interaction

    inter = dataset.inter_feat
    if not isinstance(inter, Interaction):
        raise TypeError(
            "split_by_sequence needs an augmented dataset (inter_feat as an Interaction); call "
            "it from build() after _change_feat_format()"
        )
    ratios = list(ratios) if ratios is not None else list(DEFAULT_SEQUENCE_RATIOS)
    if split_seed is None:
        split_seed = int(dataset.config["split_seed"])
    parts = sequence_split_index(dataset, ratios, split_seed)
    # RecBole's own split methods drop `unused_col` before copying; do the same.
    dataset._drop_unused_col()
    inter = dataset.inter_feat
    return [dataset.copy(inter[torch.from_numpy(index)]) for index in parts]


def protocol_description(config: dict[str, Any] | None) -> str:
    """One line naming the evaluation protocol a run used (for table headers)."""
    config = config or {}
    proto = str(config.get("eval_protocol") or "loo").lower()
    if proto == "sequence":
        ratios = config.get("sequence_split_ratios") or list(DEFAULT_SEQUENCE_RATIOS)
        return (
            "sequence protocol (SA2C): whole sequences split "
            + "/".join(f"{r:g}" for r in ratios)
            + f" with split_seed {config.get('split_seed')}, every interaction of a held-out sequence is a "
            "query except its first (micro-averaged, full ranking)"
        )
    return (
        "leave-one-out (RecBole LS valid_and_test, order TO): last interaction per user is the "
        "test query, the one before it validation (full ranking)"
    )
