"""Re-export: the mirror of RecBole's split lives in :mod:`recbole_lea.data.rows`, shared with the
RL dataset (it imports neither RecBole nor the LLM stack)."""

from recbole_lea.data.rows import rank_in_user, training_row_mask, user_order

__all__ = ["rank_in_user", "training_row_mask", "user_order"]
