"""The original SA2C evaluation protocol, as an option beside RecBole's leave-one-out.

Two protocols exist in this project (config key ``eval_protocol``):

``loo`` (default)
    RecBole's own ``eval_args: {split: {LS: valid_and_test}, order: TO}``: per user, the last
    interaction is the test query, the one before it the validation query, everything earlier
    is training. One query per user in valid and test.

``sequence``
    The protocol of the original SNQN/SA2C code (Xin et al., WSDM'22) that LEA reuses: whole
    sequences (users) are shuffled with the run's ``seed`` and split 80/10/10 into
    train/valid/test users; EVERY interaction of a held-out sequence is a query, ranked against
    all items (full ranking, history items not filtered), and HR/NDCG are averaged over those
    interactions (micro average). RecBole's sequential full-sort evaluation treats each
    augmented row as one query and averages over rows, which is exactly this micro average.

    Deviation (documented in docs/experiments.md): RecBole's sequence augmentation never makes a
    user's FIRST interaction a target, because its history would be empty. The original code does
    evaluate that query (with an all-padding state). A held-out user with ``n`` interactions thus
    contributes ``n - 1`` queries here instead of ``n``.

:func:`split_by_sequence` is called by ``recbole_lea.data.dataset.RLSequentialDataset.build`` when
``eval_protocol: sequence``; it works on an already augmented RecBole ``SequentialDataset``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

DEFAULT_SEQUENCE_RATIOS: tuple[float, float, float] = (0.8, 0.1, 0.1)


def _split_counts(total: int, ratios: list[float]) -> list[int]:
    """Number of users in each part.

    Every part after the first is rounded down (as RecBole's ``_calcu_split_ids`` does); a part
    whose ratio is positive gets at least one user while the first part keeps at least one.
    """
    norm = [r / sum(ratios) for r in ratios]
    counts = [int(np.floor(r * total)) for r in norm]
    counts[0] = total - sum(counts[1:])
    for i in range(1, len(counts)):
        if counts[i] == 0 and norm[i] > 0 and counts[0] > 1:
            counts[i] += 1
            counts[0] -= 1
    return counts


def sequence_split_index(uids: np.ndarray, ratios: list[float], seed: int) -> list[np.ndarray]:
    """Row indices of each part when whole users are assigned to parts.

    ``uids`` is the user id of every row. Users are shuffled with ``numpy.random.RandomState(seed)``
    (sorted first, so the result does not depend on row order), then cut by ``ratios``. Each
    returned index array is sorted, so rows keep their original (user, time) order.
    """
    if len(ratios) == 0 or any(r < 0 for r in ratios) or sum(ratios) <= 0:
        raise ValueError(f"split ratios must be non-negative and sum > 0, got {ratios}")
    unique_users = np.unique(uids)
    rng = np.random.RandomState(seed)
    order = unique_users[rng.permutation(len(unique_users))]
    counts = _split_counts(len(order), list(ratios))
    bounds = np.cumsum([0] + counts)
    part_of_user: dict[Any, int] = {}
    for part, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:])):
        for uid in order[lo:hi]:
            part_of_user[uid.item() if hasattr(uid, "item") else uid] = part
    row_part = np.fromiter(
        (part_of_user[u.item() if hasattr(u, "item") else u] for u in uids),
        dtype=np.int64,
        count=len(uids),
    )
    return [np.nonzero(row_part == p)[0] for p in range(len(ratios))]


def split_by_sequence(dataset: Any, ratios: list[float] | None = None, seed: int | None = None) -> list[Any]:
    """Split an augmented RecBole ``SequentialDataset`` by whole sequences (users).

    Args:
        dataset: a RecBole (Sequential)Dataset whose ``inter_feat`` is already an ``Interaction``
            (i.e. after ``_change_feat_format`` / data augmentation, as inside ``build()``).
        ratios: train/valid/test user ratios, default ``[0.8, 0.1, 0.1]``; need not sum to 1.
        seed: shuffle seed; defaults to ``dataset.config["seed"]`` (the run's seed).

    Returns:
        One dataset per ratio (``dataset.copy(part)``), each holding every row of its users in
        the original order. Every row of a held-out user is one query.
    """
    from recbole.data.interaction import Interaction

    inter = dataset.inter_feat
    if not isinstance(inter, Interaction):
        raise TypeError(
            "split_by_sequence needs an augmented dataset (inter_feat as an Interaction); call "
            "it from build() after _change_feat_format()"
        )
    ratios = list(ratios) if ratios is not None else list(DEFAULT_SEQUENCE_RATIOS)
    if seed is None:
        seed = int(dataset.config["seed"])
    uids = inter[dataset.uid_field].numpy()
    parts = sequence_split_index(uids, ratios, seed)
    # RecBole's own split methods drop `unused_col` before copying; do the same.
    dataset._drop_unused_col()
    inter = dataset.inter_feat
    return [dataset.copy(inter[torch.from_numpy(index)]) for index in parts]


def sequence_ratios_from_config(config: Any) -> list[float]:
    """Ratios for the sequence protocol: config key ``sequence_split_ratios`` or 80/10/10."""
    try:
        value = config["sequence_split_ratios"]
    except KeyError:
        value = None
    return list(value) if value else list(DEFAULT_SEQUENCE_RATIOS)


def protocol_description(config: dict[str, Any] | None) -> str:
    """One line naming the evaluation protocol a run used (for table headers)."""
    config = config or {}
    proto = str(config.get("eval_protocol") or "loo").lower()
    if proto == "sequence":
        ratios = config.get("sequence_split_ratios") or list(DEFAULT_SEQUENCE_RATIOS)
        return (
            "sequence protocol (SA2C): users split "
            + "/".join(f"{r:g}" for r in ratios)
            + " by seed, every interaction of a held-out user is a query except its first "
            "(micro-averaged, full ranking)"
        )
    return (
        "leave-one-out (RecBole LS valid_and_test, order TO): last interaction per user is the "
        "test query, the one before it validation (full ranking)"
    )
