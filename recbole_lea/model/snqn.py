r"""
SNQN
################################################

Reference:
    Xin Xin et al. "Supervised Advantage Actor-Critic for Recommender Systems." in WSDM 2022
    (SNQN: self-supervised negative Q-learning).

Reference code:
    The authors' TensorFlow 1 ``SNQN.py`` (facts in ``shared/reference/SA2C-reference-notes.md``).

NOTE:
    Matches the original on: two complete networks swapped by a fair coin each step (no lagged
    target copy), double Q-learning with 0.5 * TD^2,
    ``neg_num`` uniform negatives resampled only where equal to the positive, each negative
    bootstrapping from the CURRENT state, targets computed with dropout on, ``gamma`` 0.5, reward ``reward_click`` (1.0: one
    behaviour) and ``reward_negative`` 0.0, ``done`` zeroing the positive bootstrap, loss
    ``mean(q_weight * (Q_pos + Q_neg) + CE)`` with one Adam, ranking by the CE head.

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
       them with dropout, the default here too): on a CPU it saves the dropout masks of three
       extra passes (SA2C(SASRec) epoch 1.87x SASRec's instead of 2.25x on ml-100k with
       ``fast_dropout``), but it lowered SA2C's test
       NDCG@10 on ml-100k from 0.0614 to 0.0565 in our one comparison (3 seeds, 8 epochs;
       docs/rl.md).
    5. Ranking uses network 1's supervised head (``predict``/``full_sort_predict``); both
       networks are trained equally often.
    6. ``fast_dropout`` (default on) draws CPU dropout masks 16 random bits at a time
       (:class:`~recbole_lea.model.backbones.FastDropout`): same distribution, another random
       stream than torch's ``nn.Dropout``, about half its cost.
    7. ``ce_head: tied`` (not the default) scores with the item embedding (``h E^T``) as RecBole's
       SASRec does, instead of upstream's separate dense head ``W_u h + b_u``.
"""

from recbole_lea.model.rl_base import DoubleQRecommender


class SNQN(DoubleQRecommender):
    r"""SNQN over a ``backbone`` (SASRec or GRU4Rec): supervised CE + double-Q with negatives."""

    framework = "SNQN"
    allows_le = False
