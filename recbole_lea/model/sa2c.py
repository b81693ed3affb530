r"""
SA2C
################################################

Reference:
    Xin Xin et al. "Supervised Advantage Actor-Critic for Recommender Systems." in WSDM 2022.

Reference code:
    The authors' TensorFlow 1 ``SA2C.py`` (facts in ``shared/reference/SA2C-reference-notes.md``).

NOTE:
    Everything in :mod:`recbole_lea.model.snqn`'s NOTE holds. On top of SNQN: for the first
    ``switch_step`` training steps (original 15,000) the loss is SNQN's; afterwards a second Adam
    (``learning_rate_phase2``, original 1e-3, fresh state) minimises
    ``mean(q_weight * (Q_pos + Q_neg) + A * CE)`` with
    ``A = sg(Q(s,a)) - mean(sg(Q(s, {a} + negatives)))`` clipped to ``[0, advantage_clip]``
    (original [0, 10]). The inverse-propensity factor of the original code (off by default
    there) is not implemented.

    Deviation: the phase switch counts optimiser steps of this run (``global_step``, saved
    with the model), as upstream; with RecBole's epoch-based training the switch can fall inside
    an epoch.
"""

from recbole_lea.model.rl_base import DoubleQRecommender


class SA2C(DoubleQRecommender):
    r"""SA2C over a ``backbone``: SNQN, then the advantage-weighted supervised loss."""

    framework = "SA2C"
    allows_le = False
