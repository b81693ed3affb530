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
      ``le_reward_transform``. Negatives (``le_negatives``): the build scores ONE sampled negative
      per training row (``le_neg_id``, as the paper's a^-), so using it (``stored``) shows every
      row the same negative in every epoch; on ml-100k that alone, with behaviour rewards, cost
      about 0.008 NDCG@10 against SA2C's fresh negatives (docs/rl.md). Default ``sampled``:
      ``neg_num`` fresh uniform negatives each step as SNQN/SA2C, rewarded with the transform of
      the LE's mean negative score; ``both`` adds the stored one. The paper does not say how raw scores are scaled, and the pairwise
      loss of Eq. 1 fixes no scale. Default ``shaped``: behaviour reward (1 positive, 0 negative)
      plus ``le_reward_scale`` times the score standardised over the training rows, so the LE
      orders rewards within each kind while the positive/negative gap the double-Q head learns
      from stays as in SNQN/SA2C. Replacing the rewards by ``sigmoid`` of weak scores (about 0.5
      for positives and negatives alike) removed that gap and lowered NDCG@10 on ml-100k
      (docs/rl.md); ``sigmoid`` and ``raw`` remain options.
    - ``le_state``: ``concat`` = s^e || h_t (Eq. 4, LES) or ``only`` = s^e (Eq. 3, LES') as the Q
      head's state; the LE states are projected to ``le_state_dim`` by the LE build (PCA) and,
      with ``le_state_norm`` (default), standardised per dimension with training-row statistics
      (PCA components of an LLM's hidden states have very different scales; the paper does not
      say). Those statistics are buffers saved with the model.
    - ``aug_sv`` / ``aug_q``: ``w_ah`` * CE and ``w_aq`` * TD (next state) on the LE-augmented
      action (Eq. 13-15): summed over the rows that have one (``le_aug_mask``) and divided by
      the batch size, so an augmented label weighs ``w_ah`` against a true label whatever share
      of rows the LE build augmented (a mean over augmented rows only made each of them weigh
      20x more with the cpu profile's 5% augmentation, and lowered NDCG@10).

    ``variant`` names the paper's presets (LER, LES, LES', LEA, LEAR, LEAS, LEASR, LEAS'R, sv, q,
    sv+q, none); explicit flags override a preset.

    Inference ranks with network 1's backbone and supervised head only: serving cost equals the
    backbone's and the saved model holds no LE part (LE states are inputs of the Q head only).
"""

from recbole_lea.model.rl_base import DoubleQRecommender


class SNQN_LEA(DoubleQRecommender):
    r"""SNQN with LE states, rewards and augmented actions."""

    framework = "SNQN"
    allows_le = True
