r"""
SA2C
################################################

Reference:
    Xin Xin et al. "Supervised Advantage Actor-Critic for Recommender Systems." in WSDM 2022.

Reference code:
    The authors' TensorFlow 1 ``SA2C.py`` (facts in ``shared/reference/SA2C-reference-notes.md``).

NOTE:
    Everything in :mod:`recbole_lea.model.snqn`'s NOTE holds. On top of SNQN: for the first
    training steps the loss is SNQN's; from the switch on, a second Adam
    (``learning_rate_phase2``, original 1e-3, fresh state) minimises
    ``mean(q_weight * (l_p + l_n) + A * CE)`` with
    ``A = sg(Q(s,a)) - mean(sg(Q(s, {a} + negatives)))`` clipped to ``[0, advantage_clip]``
    (original [0, 10]). The inverse-propensity factor of the original code (off by default
    there) is not implemented.

    Deviations:
    1. Where the switch falls. The original switches after 15,000 optimiser steps, fixed for its
       logs of about a million events; on smaller data that step is never reached and SA2C trains
       as SNQN throughout. Here ``switch_step`` empty (the default) switches after
       ``switch_epochs`` epochs' worth of steps of the data at hand; ``--switch_step=15000`` is the
       original rule. A run whose switch cannot happen within its epoch budget says so.
    2. The switch counts optimiser steps of this run (``global_step``, saved with the model), as
       upstream; with RecBole's epoch-based training it can fall inside an epoch.
"""

from __future__ import annotations

import logging
import math

import torch

from recbole_lea.model.options import SA2COptions
from recbole_lea.model.rl_base import DoubleQRecommender, read_options

logger = logging.getLogger(__name__)


class SA2C(DoubleQRecommender):
    r"""SA2C over a ``backbone``: SNQN, then the advantage-weighted supervised loss."""

    def setup_options(self, config, dataset) -> None:  # type: ignore[no-untyped-def]
        super().setup_options(config, dataset)
        self.sa2c: SA2COptions = read_options(SA2COptions, config)  # type: ignore[assignment]
        #: the optimiser step of the switch; planned by the trainer from the steps per epoch when
        #: `switch_step` is empty (None until then: phase one)
        self.switch_at: int | None = self.sa2c.switch_step

    def plan_switch(self, steps_per_epoch: int, epochs: int) -> dict[str, float | int | bool]:
        """Fix the switch step for training on ``steps_per_epoch`` batches per epoch and say
        whether it falls within ``epochs``."""
        if self.sa2c.switch_step is None:
            self.switch_at = max(1, math.ceil(self.sa2c.switch_epochs * steps_per_epoch))
        budget = steps_per_epoch * epochs
        reachable = int(self.switch_at) < budget  # type: ignore[arg-type]
        plan = {"switch_step": int(self.switch_at), "steps_per_epoch": steps_per_epoch, "reachable": reachable}  # type: ignore[arg-type]
        if not reachable:
            logger.warning(
                "SA2C: the advantage phase starts at optimiser step %d but %d epochs of %d steps end at step %d: "
                "this run trains as SNQN throughout. Lower switch_step (or switch_epochs), or raise epochs.",
                self.switch_at,
                epochs,
                steps_per_epoch,
                budget,
            )
        else:
            logger.info(
                "SA2C: the advantage phase starts at optimiser step %d (epoch %.1f of %d steps)",
                self.switch_at,
                int(self.switch_at) / steps_per_epoch,  # type: ignore[arg-type]
                steps_per_epoch,
            )
        return plan

    def in_phase_two(self) -> bool:
        return self.switch_at is not None and int(self.global_step) >= self.switch_at

    @torch.no_grad()
    def advantage(self, q_pos: torch.Tensor, q_neg: torch.Tensor) -> torch.Tensor:
        """SA2C's advantage ``sg(Q(s,a)) - mean(sg(Q(s, {a} + negatives)))`` clipped, [B]."""
        q_all = torch.cat([q_pos.unsqueeze(1), q_neg], dim=1)  # [B 1+K]
        return (q_pos - q_all.mean(1)).clamp(0.0, self.sa2c.advantage_clip)

    def supervised_loss(
        self, ce: torch.Tensor, q_pos: torch.Tensor, q_neg: torch.Tensor, diagnostics: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        """L_h: the mean CE in phase one, the advantage-weighted mean CE after the switch."""
        if not self.in_phase_two():
            return super().supervised_loss(ce, q_pos, q_neg, diagnostics)
        advantage = self.advantage(q_pos, q_neg)  # [B]
        diagnostics["advantage"] = advantage.mean()
        return (ce * advantage).mean()
