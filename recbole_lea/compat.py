"""Shims that let RecBole 1.2.1 run on today's stack (Python 3.10-3.13, numpy 1.26 or 2, Ray 2.x).

Every shim names the upstream line it works around. :func:`apply` is idempotent and is called
when :mod:`recbole_lea.quick_start` is imported; :func:`require_recbole` runs when
:mod:`recbole_lea` is imported. What cannot be shimmed is in ``setup.cfg``:

- RecBole 1.2.1 is installed with ``pip install --no-deps recbole==1.2.1``: its metadata declares
  ``ray<=2.6.3`` (no wheels past Python 3.11, ``np.bool8``, ``pkg_resources``), which pip would
  enforce, so ``setup.cfg`` lists RecBole's real runtime requirements itself, less ray.
- ``pandas<3``: pandas 3 copy-on-write turns RecBole's chained in-place ``fillna``
  (``recbole/data/dataset/dataset.py``, ``_fill_nan``) into silent no-ops.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import time
from collections.abc import Iterator
from typing import Any

RECBOLE_VERSION = "1.2.1"
RECBOLE_INSTALL = f"pip install --no-deps recbole=={RECBOLE_VERSION}"

_APPLIED = False


def require_recbole() -> None:
    """Stop with one message naming the install command when RecBole 1.2.1 is not importable.

    ``recbole`` is deliberately absent from ``install_requires`` (see the module docstring), so a
    plain ``pip install recbole_lea`` does not bring it. ``recbole/__init__.py`` only sets
    ``__version__``, so this check is cheap (no torch import).
    """
    try:
        import recbole
    except ImportError as err:
        raise ImportError(
            f"recbole_lea needs RecBole {RECBOLE_VERSION}, which is not installed: run `{RECBOLE_INSTALL}` "
            "(--no-deps: RecBole's metadata pins ray<=2.6.3, which has no wheels for Python 3.12+; "
            "setup.cfg lists RecBole's other requirements)."
        ) from err
    found = getattr(recbole, "__version__", "unknown")
    if found != RECBOLE_VERSION:
        raise ImportError(
            f"recbole_lea needs RecBole {RECBOLE_VERSION}, found {found} at {os.path.dirname(recbole.__file__)}: "
            f"run `{RECBOLE_INSTALL}`."
        )


def torch_load(path: str, map_location: Any = None) -> Any:
    """``torch.load`` for RecBole checkpoints.

    torch>=2.6 defaults to ``weights_only=True``, but RecBole checkpoints pickle the whole
    ``Config`` object (enums, dicts, numpy scalars). Checkpoints are files this package wrote
    itself, so the full unpickler is used explicitly here and nowhere else.
    """
    import torch

    return torch.load(path, map_location=map_location, weights_only=False)


def unpickled_config(config: Any) -> Any:
    """A RecBole ``Config`` read back from a checkpoint, made usable in a fresh process.

    numpy 1.24 removed ``np.float``, which RecBole 1.2.1's ``Dataset._fill_nan`` reads for every
    ``float_seq`` field (the LE states). RecBole restores the alias in ``Config.__init__``
    (``compatibility_settings``), which unpickling skips, so reloading an LEA checkpoint in a new
    process failed with "module 'numpy' has no attribute 'float'". Run the same method here.
    """
    _numpy2_aliases()
    config.compatibility_settings()
    return config


def _disable_anomaly_detection() -> None:
    # recbole/model/sequential_recommender/sine.py calls
    # torch.autograd.set_detect_anomaly(True) at import time, for the whole process, which
    # makes every backward pass 1.5-1.9x slower. Import the package once, then switch it off.
    import torch

    importlib.import_module("recbole.model.sequential_recommender")
    torch.autograd.set_detect_anomaly(False)


#: numpy 2.0 removed these aliases; RecBole 1.2.1 reads them in
#: recbole/config/configurator.py:630 (``np.float = np.float_``), :631 (``np.complex = np.complex_``)
#: and :635 (``np.unicode = np.unicode_``), in ``Config.compatibility_settings``, which every
#: ``Config(...)`` runs. Without them every run fails on numpy 2 with
#: "np.float_ was removed in the NumPy 2.0 release. Use np.float64 instead."
NUMPY2_ALIASES = (("float_", "float64"), ("unicode_", "str_"), ("complex_", "complex128"))


def _numpy2_aliases() -> None:
    # Same meaning as numpy 1.x's aliases; a no-op on numpy 1.x, where they exist.
    import numpy as np

    for old, new in NUMPY2_ALIASES:
        if old not in np.__dict__:
            setattr(np, old, getattr(np, new))


@contextlib.contextmanager
def ray_loopback_only() -> Iterator[None]:
    """Inside this block a local ``ray.init()`` starts a node that listens on loopback only.

    Ray (checked on 2.45 and 2.60) starts its GCS, raylet, object manager and every worker's gRPC
    server on all interfaces (``::``) with a node IP found from the network, and ray.init's
    ``_node_ip_address="127.0.0.1"`` is overridden: ``ray/_private/services.py``
    ``resolve_ip_for_localhost`` (line 786 in 2.60) replaces a loopback address by
    ``get_node_ip_address()``, which returns the loopback address only where
    ``ray_constants.ENABLE_RAY_CLUSTER`` is false (``ray/_private/ray_constants.py`` line 658,
    env ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER``; the default on Windows and macOS). With it false the
    node IP is 127.0.0.1 and Ray's gRPC servers bind to it. The constant is read when ray is
    imported, so the module attribute is set as well as the variable; both are restored on exit (a
    running node keeps its address). Callers check the address of the started node
    (:func:`recbole_lea.experiments.tune.start_local_ray`).
    """
    from ray._private import ray_constants

    name = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
    saved_env = os.environ.get(name)
    saved_const = ray_constants.ENABLE_RAY_CLUSTER
    os.environ[name] = "0"  # for processes that import ray afresh while the node starts
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        if saved_env is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = saved_env
        ray_constants.ENABLE_RAY_CLUSTER = saved_const


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
