r"""
SNQN_LEA
################################################

Reference:
    Jie Wang et al. "Reinforcement Learning-based Recommender Systems with Large Language Models
    for State Reward and Action Modeling." in SIGIR 2024 (LEA), over SNQN (Xin et al., WSDM'22).

NOTE:
    SNQN (see :mod:`recbole_lea.model.snqn`, all of its NOTE holds) with the LLM environment's
    feedback read from the LE atomic fields that ``--build-le`` writes:

    - ``le_reward`` (LER): rewards r^e from the LE reward model (Eq. 5) passed through
      ``le_reward_transform``. The paper does not say how raw scores are scaled, and the pairwise
      loss of Eq. 1 fixes no scale. Default ``shaped``: behaviour reward (1 positive, 0 negative)
      plus ``le_reward_scale`` times the score standardised over the training rows, so the LE
      orders rewards within each kind while the positive/negative gap the double-Q head learns
      from stays as in SNQN/SA2C (``sigmoid`` of weak scores puts positives and negatives alike
      near 0.5 and removes that gap). Negatives (``le_negatives``): the build scores ONE sampled
      negative per training row (``le_neg_id``, the paper's a^-), so using it (``stored``) shows
      every row the same negative in every epoch. Default ``sampled``: ``neg_num`` fresh uniform
      negatives each step as SNQN/SA2C, rewarded with the transform of the LE's mean negative
      score; ``both`` adds the stored one. The measured effect of each choice is in docs/rl.md.
    - ``le_state``: ``concat`` = s^e || h_t (Eq. 4, LES) or ``only`` = s^e (Eq. 3, LES') as the Q
      head's state; the LE states are projected to ``le_state_dim`` by the LE build (PCA) and,
      with ``le_state_norm`` (default), standardised per dimension with training-row statistics
      (PCA components of an LLM's hidden states have very different scales; the paper does not
      say). Those statistics are buffers saved with the model.
    - ``l_ah`` / ``l_aq``: ``w_ah`` * CE and ``w_aq`` * TD (next state) on the LE-augmented
      action (Eq. 13-15): summed over the rows that have one (``le_aug_mask``) and divided by
      the batch size, so an augmented label weighs ``w_ah`` against a true label whatever share
      of rows the LE build augmented (a mean over augmented rows only would make each of them
      weigh 1/share times more).

    ``variant`` names the paper's presets (LER, LES, LES', LEA, LEAR, LEAS, LEASR, LEAS'R, sv, q,
    sv+q, none); explicit flags override a preset.

    Inference ranks with network 1's backbone and supervised head only: serving cost equals the
    backbone's and the saved model holds no LE part (LE states are inputs of the Q head only).
"""

from recbole_lea.model.le_feedback import LEFeedback
from recbole_lea.model.snqn import SNQN


class SNQN_LEA(LEFeedback, SNQN):
    r"""SNQN with LE states, rewards and augmented actions."""
