"""Trainer for the RL recommenders: RecBole's ``Trainer`` plus

- SA2C's two optimisers (phase 1 at ``learning_rate``, phase 2 at ``learning_rate_phase2`` with
  fresh Adam state from the switch on), behind one optimiser object so RecBole's training
  loop, checkpoints and resume stay unchanged; the switch step is planned from the steps per
  epoch before training, and a run whose switch falls outside its epochs says so;
- each named loss term and diagnostic of the model logged per epoch (logger + TensorBoard) and
  kept in ``loss_history``.

Both networks' parameters sit in each optimiser; RecBole zeroes gradients to ``None`` each step
and Adam skips parameters without gradient, so only the network the coin picked moves.
"""

from __future__ import annotations

from typing import Any

import torch
from recbole.trainer import Trainer

from recbole_lea.compat import CompatTrainerMixin


class PhasedOptimizer:
    """Delegates to ``first`` until ``model.in_phase_two()``, then to ``second``."""

    def __init__(self, model: Any, first: torch.optim.Optimizer, second: torch.optim.Optimizer | None) -> None:
        self.model = model
        self.first = first
        self.second = second

    @property
    def current(self) -> torch.optim.Optimizer:
        if self.second is not None and self.model.in_phase_two():
            return self.second
        return self.first

    @property
    def param_groups(self) -> list[dict]:
        return self.current.param_groups

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.current.zero_grad(set_to_none=set_to_none)

    def step(self, closure: Any = None) -> Any:
        return self.current.step(closure)

    def state_dict(self) -> dict:
        return {
            "first": self.first.state_dict(),
            "second": self.second.state_dict() if self.second is not None else None,
        }

    def load_state_dict(self, state: dict) -> None:
        self.first.load_state_dict(state["first"])
        if self.second is not None and state.get("second") is not None:
            self.second.load_state_dict(state["second"])


class RLTrainer(CompatTrainerMixin, Trainer):
    """RecBole trainer for :class:`recbole_lea.model.rl_base.DoubleQRecommender` models."""

    def __init__(self, config, model) -> None:  # type: ignore[no-untyped-def]
        super().__init__(config, model)
        #: facts about the run that belong in its result (SA2C's switch plan)
        self.run_notes: dict[str, Any] = {}

    def _build_optimizer(self, **kwargs: Any) -> PhasedOptimizer:  # type: ignore[override]
        first = super()._build_optimizer(**kwargs)
        second = None
        if hasattr(self.model, "plan_switch"):
            second = super()._build_optimizer(
                params=self.model.parameters(), learning_rate=self.model.sa2c.learning_rate_phase2
            )
        return PhasedOptimizer(self.model, first, second)

    def fit(self, train_data, valid_data=None, verbose=True, saved=True, show_progress=False, callback_fn=None):  # type: ignore[no-untyped-def]
        if hasattr(self.model, "plan_switch"):
            plan = self.model.plan_switch(len(train_data), int(self.epochs))
            self.run_notes["sa2c_switch"] = plan
        result = super().fit(
            train_data, valid_data, verbose=verbose, saved=saved, show_progress=show_progress, callback_fn=callback_fn
        )
        if "sa2c_switch" in self.run_notes:
            reached = bool(self.model.in_phase_two())
            self.run_notes["sa2c_switch"]["reached"] = reached
            if not reached:
                self.logger.warning(
                    "SA2C never reached its advantage phase (switch at step %d, training stopped at step %d): "
                    "this run is SNQN's update. Lower switch_step / switch_epochs or raise epochs.",
                    self.run_notes["sa2c_switch"]["switch_step"],
                    int(self.model.global_step),
                )
        return result

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):  # type: ignore[no-untyped-def]
        loss = super()._train_epoch(train_data, epoch_idx, loss_func=loss_func, show_progress=show_progress)
        losses, diagnostics = self.model.pop_loss_terms()
        diagnostics["phase"] = 2.0 if self.model.in_phase_two() else 1.0
        self.loss_history[-1].update(losses)
        self.loss_history[-1].update(diagnostics)
        self.logger.info(
            f"epoch {epoch_idx} losses: "
            + ", ".join(f"{k}={v:.4f}" for k, v in losses.items())
            + " | diagnostics: "
            + ", ".join(f"{k}={v:.4f}" for k, v in diagnostics.items())
        )
        for name, value in losses.items():
            self.tensorboard.add_scalar(f"train/{name}", value, epoch_idx)
        for name, value in diagnostics.items():
            self.tensorboard.add_scalar(f"diagnostics/{name}", value, epoch_idx)
        return loss
