r"""
SA2C_LEA
################################################

Reference:
    Jie Wang et al. "Reinforcement Learning-based Recommender Systems with Large Language Models
    for State Reward and Action Modeling." in SIGIR 2024 (LEA, Algorithm 1), over SA2C
    (Xin et al., WSDM'22).

NOTE:
    SA2C (see :mod:`recbole_lea.model.sa2c`) with the LE feedback described in
    :mod:`recbole_lea.model.snqn_lea`. The advantage of Eq. 11 weights the supervised loss as in
    the baseline; with one LE negative it equals ``(Q(s, a+) - Q(s, a-)) / 2``. The augmented
    supervised loss L_ah is not advantage-weighted (Eq. 15 adds it to L_c unweighted). With
    ``le_state: only`` (LEAS'R) the Q head sees only the LE state, so the RL part reaches the
    backbone through the advantage alone, as the paper describes.
"""

from recbole_lea.model.le_feedback import LEFeedback
from recbole_lea.model.sa2c import SA2C


class SA2C_LEA(LEFeedback, SA2C):
    r"""SA2C with LE states, rewards and augmented actions."""
