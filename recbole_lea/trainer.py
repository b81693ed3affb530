"""Trainers: :class:`TrainerMixin` on every RecBole trainer (safe checkpoints, recorded history),
and :class:`RLTrainer` for the RL recommenders, which is RecBole's ``Trainer`` plus

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

import math
import time
from functools import cache
from typing import Any

import torch
from recbole.trainer import Trainer

from recbole_lea.checkpoint import config_to_plain, parameters_to_plain, torch_load
from recbole_lea.errors import ConfigError
from recbole_lea.registry import is_plugin_model


class TrainerMixin:
    """Mixed into every RecBole trainer class handed out by :func:`get_trainer`.

    - ``evaluate(load_best_model=True)`` and ``resume_checkpoint`` call bare ``torch.load``,
      which fails on torch>=2.6 (weights_only default, see :func:`torch_load`).
    - RecBole's ``fit(callback_fn=...)`` passes only the score; the last validation result and
      each epoch's wall time and mean loss are kept here for Ray Tune reports and benchmarks.
    """

    def __init__(self, config, model) -> None:  # type: ignore[no-untyped-def]
        super().__init__(config, model)  # type: ignore[call-arg]
        self.epoch_times: list[float] = []  # wall seconds of each training epoch
        self.valid_history: list[dict] = []  # every validation result, in order
        #: per epoch: mean training loss per batch, plus each named term for our RL models
        self.loss_history: list[dict[str, float]] = []
        #: what the model was trained on, kept in its checkpoints: every token field's id -> token
        #: list and the sha256 of the .inter file (set by the run; reloading serves through the maps)
        self.data_record: dict[str, Any] | None = None

    def evaluate(self, eval_data, load_best_model=True, model_file=None, show_progress=False):  # type: ignore[no-untyped-def]
        if load_best_model and eval_data:
            checkpoint_file = model_file or self.saved_model_file  # type: ignore[attr-defined]
            checkpoint = torch_load(checkpoint_file, map_location=self.device)  # type: ignore[attr-defined]
            self.model.load_state_dict(checkpoint["state_dict"])  # type: ignore[attr-defined]
            self.model.load_other_parameter(checkpoint.get("other_parameter"))  # type: ignore[attr-defined]
            self.logger.info(f"Loading model structure and parameters from {checkpoint_file}")  # type: ignore[attr-defined]
        return super().evaluate(  # type: ignore[misc]
            eval_data, load_best_model=False, model_file=model_file, show_progress=show_progress
        )

    def _save_checkpoint(self, epoch, verbose=True, **kwargs):  # type: ignore[no-untyped-def]
        """RecBole's checkpoint with the config as plain values (see :func:`config_to_plain`)."""
        import torch

        config = self.config  # type: ignore[attr-defined]
        if not config["single_spec"] and config["local_rank"] != 0:
            return
        saved_model_file = kwargs.pop("saved_model_file", self.saved_model_file)  # type: ignore[attr-defined]
        state = {
            "config": config_to_plain(config),
            "epoch": epoch,
            "cur_step": self.cur_step,  # type: ignore[attr-defined]
            "best_valid_score": float(self.best_valid_score),  # type: ignore[attr-defined]
            "state_dict": self.model.state_dict(),  # type: ignore[attr-defined]
            "other_parameter": parameters_to_plain(self.model.other_parameter()),  # type: ignore[attr-defined]
            "optimizer": self.optimizer.state_dict(),  # type: ignore[attr-defined]
            "data": self.data_record,
        }
        torch.save(state, saved_model_file)  # torch's default protocol: weights_only loads it (RecBole used 4)
        if verbose:
            self.logger.info(f"Saving current: {saved_model_file}")  # type: ignore[attr-defined]

    def resume_checkpoint(self, resume_file):  # type: ignore[no-untyped-def]
        resume_file = str(resume_file)
        checkpoint = torch_load(resume_file, map_location=self.device)  # type: ignore[attr-defined]
        if checkpoint["config"]["model"].lower() != self.config["model"].lower():  # type: ignore[attr-defined]
            raise ValueError(
                f"Checkpoint {resume_file} was trained with model {checkpoint['config']['model']}, "
                f"not {self.config['model']}: pass a checkpoint of the same model."  # type: ignore[attr-defined]
            )
        self.saved_model_file = resume_file
        self.start_epoch = checkpoint["epoch"] + 1
        self.cur_step = checkpoint["cur_step"]
        self.best_valid_score = checkpoint["best_valid_score"]
        self.model.load_state_dict(checkpoint["state_dict"])  # type: ignore[attr-defined]
        self.model.load_other_parameter(checkpoint.get("other_parameter"))  # type: ignore[attr-defined]
        self.optimizer.load_state_dict(checkpoint["optimizer"])  # type: ignore[attr-defined]
        self.logger.info(f"Checkpoint loaded. Resume training from epoch {self.start_epoch}")  # type: ignore[attr-defined]

    def _valid_epoch(self, valid_data, show_progress=False):  # type: ignore[no-untyped-def]
        score, result = super()._valid_epoch(valid_data, show_progress=show_progress)  # type: ignore[misc]
        self.valid_history.append(dict(result))
        return score, result

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):  # type: ignore[no-untyped-def]
        start = time.perf_counter()
        try:
            loss = super()._train_epoch(  # type: ignore[misc]
                train_data, epoch_idx, loss_func=loss_func, show_progress=show_progress
            )
        except ValueError as err:  # RecBole's Trainer._check_nan: "Training loss is nan"
            if "nan" not in str(err).lower():
                raise
            raise NonFiniteLossError(self._non_finite_message(epoch_idx)) from None
        self.epoch_times.append(time.perf_counter() - start)
        total = float(sum(loss) if isinstance(loss, tuple) else loss)
        if not math.isfinite(total):  # an infinite loss passes RecBole's NaN check
            raise NonFiniteLossError(self._non_finite_message(epoch_idx))
        self.loss_history.append({"loss": total / max(len(train_data), 1)})
        return loss

    def _non_finite_terms(self) -> list[str]:
        """The loss terms of this epoch that are not finite (none for RecBole's models)."""
        return []

    def _non_finite_message(self, epoch_idx: int) -> str:
        terms = self._non_finite_terms()
        named = f" (not finite: {', '.join(terms)})" if terms else ""
        return (
            f"Training stopped at epoch {epoch_idx}: the training loss is not finite{named}, so the weights are "
            "no longer numbers. Lower `learning_rate` (or the weight of the named term: w_ah, w_aq, q_weight, ...), "
            "and check the data and the LE for extreme values."
        )


class NonFiniteLossError(ConfigError):
    """A training loss that turned NaN or infinite; the message names the epoch and the terms."""


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


class RLTrainer(TrainerMixin, Trainer):
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

    def _non_finite_terms(self) -> list[str]:
        losses, _diagnostics = self.model.pop_loss_terms()
        return [f"{name}={value}" for name, value in losses.items() if not math.isfinite(value)]

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


@cache
def _with_mixin(base: type) -> type:
    return type(base.__name__, (TrainerMixin, base), {"__module__": __name__})


def get_trainer(model_type: Any, model_name: str) -> type:
    """Trainer class: ours for our models, RecBole's otherwise; always with :class:`TrainerMixin`."""
    if is_plugin_model(model_name):
        return RLTrainer
    from recbole.utils import get_trainer as recbole_get_trainer

    return _with_mixin(recbole_get_trainer(model_type, model_name))
