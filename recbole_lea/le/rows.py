"""Which rows of an atomic .inter file RecBole's sequential LS split puts into the train set."""

from __future__ import annotations

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
