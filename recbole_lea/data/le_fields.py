"""The LE field contract: the ``le_*`` columns of ``<dataset>-lea.inter`` (docs/architecture.md).

For a row with target item x_{t+1} after history x_1..x_t. A row that is not a training target
(valid/test rows, each user's first row) carries the neutral values: the LE never sees a
valid/test target.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LEField:
    name: str
    atomic_type: str  # RecBole atomic type of the column
    meaning: str  # on a training row
    neutral: str  # on any other row

    @property
    def header(self) -> str:
        return f"{self.name}:{self.atomic_type}"


LE_FIELDS: tuple[LEField, ...] = (
    LEField("le_train", "float", "1.0", "0.0"),
    LEField("le_reward", "float", "LE reward r^e(history, x_{t+1}) (raw score-head output)", "0.0"),
    LEField("le_neg_id", "token", "raw item token of the sampled negative", "the row's own item id"),
    LEField("le_neg_reward", "float", "LE reward of that negative", "0.0"),
    LEField("le_aug_id", "token", "raw item token the LE picked among the top-k candidates", "the row's own item id"),
    LEField("le_aug_reward", "float", "LE reward of the augmented item", "0.0"),
    LEField("le_aug_mask", "float", "1.0 when the row has an augmented action", "0.0"),
    LEField("le_state", "float_seq", "LE state of x_1..x_t, projected to le_state_dim", "zeros"),
    LEField("le_next_state", "float_seq", "LE state of x_1..x_{t+1}, projected", "zeros"),
)
LE_FIELD_NAMES: tuple[str, ...] = tuple(f.name for f in LE_FIELDS)
#: token fields holding raw item ids: RecBole remaps them with ``alias_of_item_id``
LE_ITEM_FIELDS: tuple[str, ...] = ("le_neg_id", "le_aug_id")
#: prefix of every LE field (kept out of RecBole's history lists by the RL dataset)
LE_PREFIX = "le_"


def lea_inter_header(uid: str = "user_id", iid: str = "item_id", time: str = "timestamp") -> tuple[str, ...]:
    """The typed header of ``<dataset>-lea.inter``: the base file's user, item and time columns,
    then every LE field, in this order."""
    return (f"{uid}:token", f"{iid}:token", f"{time}:float", *(f.header for f in LE_FIELDS))
