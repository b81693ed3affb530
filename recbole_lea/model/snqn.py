r"""
SNQN
################################################

Reference:
    Xin Xin et al. "Supervised Advantage Actor-Critic for Recommender Systems." in WSDM 2022
    (SNQN: self-supervised negative Q-learning).

Reference code:
    The authors' TensorFlow 1 ``SNQN.py`` (facts in ``shared/reference/SA2C-reference-notes.md``).

NOTE:
    The update is :class:`~recbole_lea.model.rl_base.DoubleQRecommender`'s. It matches the
    original on: two complete networks swapped by a fair coin each step (no lagged target copy),
    double Q-learning with 0.5 * TD^2, ``neg_num`` uniform negatives resampled only where equal to
    the positive, each negative bootstrapping from the CURRENT state, targets computed with dropout
    on, ``gamma`` 0.5, reward ``reward_click`` (1.0: one behaviour) and ``reward_negative`` 0.0,
    ``done`` zeroing the positive bootstrap, loss ``mean(q_weight * (l_p + l_n) + l_h)`` with one
    Adam, ranking by the CE head.

    Deviations:
    1. Data come from RecBole: leave-one-out split by default (``eval_protocol: sequence`` gives
       the original whole-sequence split), and a user's first interaction is never a target
       (RecBole builds no empty history). ``done`` marks each user's last TRAINING row.
    2. The backbones are RecBole's SASRec/GRU4Rec layers and initialisation (normal(0, 0.02) /
       xavier), not N(0, 0.01), so the RL model and the built-in baseline differ only in heads
       and loss.
    3. The main network's Q-values on the current state (with grad) are reused, detached, as
       the argmax selector of the negative targets; upstream ran that network a second time
       (another dropout mask).
    4. ``target_dropout: False`` runs the no-grad target passes without dropout (upstream runs
       them with dropout, the default here too); faster on a CPU, its cost in accuracy is in
       docs/rl.md.
    5. Ranking uses network 1's supervised head (``predict``/``full_sort_predict``); both
       networks are trained equally often.
    6. ``fast_dropout`` (default on) draws CPU dropout masks 16 random bits at a time
       (:class:`~recbole_lea.model.backbones.FastDropout`): same distribution, another random
       stream than torch's ``nn.Dropout``.
    7. ``ce_head: tied`` (not the default) scores with the item embedding (``h E^T``) as RecBole's
       SASRec and GRU4Rec do, instead of upstream's separate dense head ``W_u h + b_u``. Upstream
       compared against baselines with that same dense head; against RecBole's baselines the tied
       head is the like-for-like choice (docs/rl.md, "the supervised head").
"""

from recbole_lea.model.rl_base import DoubleQRecommender


class SNQN(DoubleQRecommender):
    r"""SNQN over a ``backbone`` (SASRec or GRU4Rec): supervised CE + double-Q with negatives."""
