"""The original SA2C evaluation protocol, as an option beside RecBole's leave-one-out.

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

:func:`split_by_sequence` is called by ``recbole_lea.data.dataset.RLSequentialDataset.build`` when
``eval_protocol: sequence``; it works on an already augmented RecBole ``SequentialDataset``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from recbole_lea.data.rows import DEFAULT_SEQUENCE_RATIOS, sequence_parts


def sequence_split_index(dataset: Any, ratios: list[float], split_seed: int) -> list[np.ndarray]:
    """Row indices of each part of an augmented RecBole dataset: whole sequences assigned by
    :func:`recbole_lea.data.rows.sequence_parts` on their RAW user tokens. Each index array is
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
