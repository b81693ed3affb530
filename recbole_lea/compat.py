"""Shims that let RecBole 1.2.1 run on today's stack.

Every shim names the upstream break it works around. :func:`apply` is idempotent and is called
when :mod:`recbole_lea` is imported. Version pins that cannot be shimmed live in ``setup.cfg``:

- ``numpy<2``: RecBole 1.2.1 uses ``np.float_`` (removed in numpy 2.0), ray 2.6.3 uses ``np.bool8``.
- ``pandas<3``: pandas 3 copy-on-write turns RecBole's chained in-place ``fillna`` into no-ops.
- ``pyarrow<22`` and ``setuptools<81``: ray 2.6.3 (RecBole's pin) imports ``pkg_resources``
  (removed from setuptools 81) and breaks on pyarrow 22's extension-type registry.
"""

from __future__ import annotations

import importlib
import time
from typing import Any

import torch

_APPLIED = False


def torch_load(path: str, map_location: Any = None) -> Any:
    """``torch.load`` for RecBole checkpoints.

    torch>=2.6 defaults to ``weights_only=True``, but RecBole checkpoints pickle the whole
    ``Config`` object (enums, dicts, numpy scalars). Checkpoints are files this package wrote
    itself, so the full unpickler is used explicitly here and nowhere else.
    """
    return torch.load(path, map_location=map_location, weights_only=False)


def unpickled_config(config: Any) -> Any:
    """A RecBole ``Config`` read back from a checkpoint, made usable in a fresh process.

    numpy 1.24 removed ``np.float``, which RecBole 1.2.1's ``Dataset._fill_nan`` reads for every
    ``float_seq`` field (the LE states). RecBole restores the alias in ``Config.__init__``
    (``compatibility_settings``), which unpickling skips, so reloading an LEA checkpoint in a new
    process failed with "module 'numpy' has no attribute 'float'". Run the same method here.
    """
    config.compatibility_settings()
    return config


def _disable_anomaly_detection() -> None:
    # recbole/model/sequential_recommender/sine.py calls
    # torch.autograd.set_detect_anomaly(True) at import time, for the whole process, which
    # makes every backward pass 1.5-1.9x slower. Import the package once, then switch it off.
    importlib.import_module("recbole.model.sequential_recommender")
    torch.autograd.set_detect_anomaly(False)


def _numpy2_aliases() -> None:
    # numpy 2.0 removed np.float_ / np.unicode_ / np.complex_ / np.bool8, which RecBole 1.2.1
    # (dataset loading; Config.compatibility_settings reads np.complex_) and ray 2.6.3 use.
    # setup.cfg pins numpy<2; these aliases only matter where a machine's numpy 2 cannot be
    # swapped (e.g. a GPU image), and are identical in meaning.
    import numpy as np

    for old, new in (("float_", "float64"), ("unicode_", "str_"), ("complex_", "complex128"), ("bool8", "bool_")):
        if not hasattr(np, old):
            setattr(np, old, getattr(np, new))


def apply() -> None:
    """Apply every shim once."""
    global _APPLIED
    if _APPLIED:
        return
    _numpy2_aliases()
    _disable_anomaly_detection()
    _APPLIED = True


class CompatTrainerMixin:
    """Mixed into every RecBole trainer class handed out by :func:`recbole_lea.registry.get_trainer`.

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
        loss = super()._train_epoch(  # type: ignore[misc]
            train_data, epoch_idx, loss_func=loss_func, show_progress=show_progress
        )
        self.epoch_times.append(time.perf_counter() - start)
        total = sum(loss) if isinstance(loss, tuple) else loss
        self.loss_history.append({"loss": float(total) / max(len(train_data), 1)})
        return loss
