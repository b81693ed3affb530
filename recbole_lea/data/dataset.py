"""RecBole dataset for RL sequential recommenders (and every sequential baseline beside them).

:class:`RLSequentialDataset` is RecBole's ``SequentialDataset`` with three additions:

- the per-target LE fields (``le_*``, written by the LE hook) are carried on each target row but
  kept out of RecBole's history-list augmentation (no ``le_state_list`` of shape [N, L, d]);
- after the split, training rows get ``done`` = 1.0 on each user's last training row (the
  original SNQN/SA2C ``is_done``, which zeroes the bootstrap of the positive TD target);
- ``eval_protocol: sequence`` swaps RecBole's leave-one-out for the original SA2C protocol
  (whole sequences split, every interaction of a held-out sequence is a query).

Everything else, including the order of rows and the leave-one-out split, is RecBole's own, so a
built-in model and ours see exactly the same train/valid/test rows.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import numpy as np
import pandas as pd
import torch
from recbole.data.dataset import SequentialDataset
from recbole.utils import FeatureType

from recbole_lea.data.le_fields import LE_PREFIX
from recbole_lea.errors import ConfigError

__all__ = ["DONE_FIELD", "LE_PREFIX", "TOKEN_MAPS", "RLSequentialDataset", "TokenMaps", "token_maps", "with_token_maps"]

DONE_FIELD = "done"
#: config key of the token -> id maps a reloaded model must see its data through (load only)
TOKEN_MAPS = "recbole_lea_token_maps"


def token_maps(dataset: Any) -> dict[str, list[str]]:
    """Every token field's id -> token list (``[PAD]`` first), as RecBole assigned them; stored in
    checkpoints, so a reloaded model sees other data through the ids it was trained with."""
    return {str(field): [str(t) for t in tokens] for field, tokens in dataset.field2id_token.items()}


class TokenMaps:
    """Mixed into a RecBole dataset class: with ``config[TOKEN_MAPS]`` set (a checkpoint's maps),
    tokens get the ids of those maps instead of RecBole's order of appearance, and a token the maps
    do not know is one :class:`ConfigError`. Without it the class is RecBole's."""

    def _remap(self, remap_list: list) -> None:
        maps = self.config[TOKEN_MAPS]  # type: ignore[attr-defined]
        field = next((f for _feat, f, _t in remap_list if maps and f in maps), None)
        if field is None:
            super()._remap(remap_list)  # type: ignore[misc]
            return
        tokens, split_point = self._concat_remaped_tokens(remap_list)  # type: ignore[attr-defined]
        stored = maps[field]
        ids = pd.Series(tokens, dtype=object).map({t: i for i, t in enumerate(stored)})
        unknown = pd.unique(pd.Series(tokens, dtype=object)[ids.isna().to_numpy()])
        if len(unknown):
            raise ConfigError(
                f"{len(unknown)} {field} value(s) of the data are unknown to the trained model (e.g. "
                f"{', '.join(map(repr, unknown[:3]))}): it can only rank and serve the {field} values it was "
                "trained on. Serve data of those users and items, or train on data that has them."
            )
        mp = np.array(stored, dtype=object)
        token_id = {t: i for i, t in enumerate(stored)}
        for (feat, f, ftype), new_ids in zip(remap_list, np.split(ids.to_numpy(np.int64), split_point), strict=True):
            self.field2id_token.setdefault(f, mp)  # type: ignore[attr-defined]
            self.field2token_id.setdefault(f, token_id)  # type: ignore[attr-defined]
            if ftype == FeatureType.TOKEN:
                feat[f] = new_ids
            elif ftype == FeatureType.TOKEN_SEQ:
                feat[f] = np.split(new_ids, np.cumsum(feat[f].agg(len))[:-1])


@cache
def with_token_maps(cls: type) -> type:
    """RecBole's dataset class ``cls`` with :class:`TokenMaps` mixed in."""
    return type(cls.__name__, (TokenMaps, cls), {"__module__": cls.__module__})


class RLSequentialDataset(TokenMaps, SequentialDataset):
    """``SequentialDataset`` + LE fields kept per target + ``done`` flags + optional paper protocol."""

    def _le_fields(self) -> list[str]:
        return [f for f in self.inter_feat if f.startswith(LE_PREFIX)]

    def data_augmentation(self) -> None:
        le_fields = self._le_fields()
        if not le_fields:
            super().data_augmentation()
            return
        # Keep LE fields out of the history lists: pop them, let RecBole augment, then attach each
        # target row's own values back through a row index that RecBole carries along.
        row_field = "_le_row"
        popped = {f: self.inter_feat.interaction.pop(f) for f in le_fields}
        self.inter_feat.interaction[row_field] = torch.arange(len(self.inter_feat))
        self.field2type[row_field] = FeatureType.TOKEN
        self.field2source[row_field] = self.field2source[self.iid_field]
        self.field2seqlen[row_field] = 1
        super().data_augmentation()
        rows = self.inter_feat.interaction.pop(row_field)
        self.inter_feat.interaction.pop(row_field + self.config["LIST_SUFFIX"], None)
        for name in (row_field, row_field + self.config["LIST_SUFFIX"]):
            self.field2type.pop(name, None)
            self.field2source.pop(name, None)
            self.field2seqlen.pop(name, None)
        for f, values in popped.items():
            self.inter_feat.interaction[f] = values[rows]

    def build(self) -> list[SequentialDataset]:
        if self.config["eval_protocol"] == "sequence":
            from recbole_lea.data.split import split_by_sequence

            self._change_feat_format()
            datasets = split_by_sequence(self, self.config["sequence_split_ratios"], int(self.config["split_seed"]))
        else:
            datasets = super().build()
        self._mark_done(datasets[0])
        return datasets

    def _mark_done(self, train: SequentialDataset) -> None:
        """``done`` = 1.0 on each user's last training row (rows are grouped by user in time order)."""
        uids = train.inter_feat[self.uid_field]
        n = len(uids)
        done = torch.zeros(n)
        if n:
            last = torch.ones(n, dtype=torch.bool)
            last[:-1] = uids[1:] != uids[:-1]
            done[last] = 1.0
        train.inter_feat.interaction[DONE_FIELD] = done
