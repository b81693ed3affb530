"""Re-export: the split mirror lives in :mod:`recbole_lea.data.rows` (shared with the RL dataset)."""

from recbole_lea.data.rows import rank_in_user, training_row_mask, user_order

__all__ = ["rank_in_user", "training_row_mask", "user_order"]
