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
import warnings
from collections.abc import Iterator
from typing import Any

RECBOLE_VERSION = "1.2.1"
RECBOLE_INSTALL = f"pip install --no-deps recbole=={RECBOLE_VERSION}"

_APPLIED = False

#: marker of a checkpoint whose config is stored as plain values (loadable with weights_only)
PLAIN_CONFIG = "recbole_lea_plain_config"


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


def _plain(value: Any) -> Any:
    """RecBole's enums and the device as plain values (``{"__enum__": ..., "name": ...}`` / str)."""
    from enum import Enum

    import torch

    if isinstance(value, Enum):
        return {"__enum__": type(value).__name__, "name": value.name}
    if isinstance(value, torch.device):
        return {"__device__": str(value)}
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _restored(value: Any) -> Any:
    import torch
    from recbole.utils import enum_type

    if isinstance(value, dict):
        if set(value) == {"__enum__", "name"}:
            return getattr(enum_type, value["__enum__"])[value["name"]]
        if set(value) == {"__device__"}:
            return torch.device(value["__device__"])
        return {k: _restored(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_restored(v) for v in value]
    return value


def config_to_plain(config: Any) -> dict[str, Any]:
    """A RecBole ``Config`` as plain values, for checkpoints that load with ``weights_only=True``
    (``torch.load``'s default since torch 2.6): RecBole 1.2.1's ``Trainer._save_checkpoint``
    (recbole/trainer/trainer.py, ``"config": self.config``) pickles the whole object instead."""
    return {PLAIN_CONFIG: 1, "final_config_dict": _plain(dict(config.final_config_dict))}


def config_from_plain(state: dict[str, Any]) -> Any:
    """The ``Config`` of :func:`config_to_plain`, usable like one RecBole built (item access,
    printing, ``compatibility_settings`` run as ``Config.__init__`` runs it)."""
    from recbole.config import Config

    from recbole_lea import registry

    config = Config.__new__(Config)
    config.final_config_dict = _restored(state["final_config_dict"])
    config.model = config.final_config_dict["model"]
    config.dataset = config.final_config_dict["dataset"]
    config.model_class = registry.get_model(config.model)
    config.internal_config_dict, config.external_config_dict = {}, {}
    config.file_config_dict, config.variable_config_dict, config.cmd_config_dict = {}, {}, {}
    config._init_parameters_category()
    _numpy2_aliases()  # compatibility_settings reads np.float_, gone in numpy 2
    config.compatibility_settings()
    return config


def torch_load(path: str, map_location: Any = None, trust_pickle: bool = False) -> Any:
    """``torch.load`` of a checkpoint with ``weights_only=True`` (nothing in the file can run
    code); its config is turned back into a ``Config``. Checkpoints written before this format
    (the whole ``Config`` pickled) load only with ``trust_pickle=True``, for files you wrote."""
    import torch

    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # noqa: BLE001 -- UnpicklingError, or a RuntimeError wrapping it
        if not trust_pickle:
            from recbole_lea.errors import ConfigError

            raise ConfigError(
                f"{path} does not load without running pickled code ({type(err).__name__}): it was written by "
                "an older recbole_lea or by RecBole itself. If you wrote it yourself, load it with "
                "trust_pickle=True (load_data_and_model / load_for_serving), or retrain."
            ) from None
        checkpoint = torch.load(path, map_location=map_location, weights_only=False)
        config = checkpoint["config"]
        _numpy2_aliases()
        config.compatibility_settings()  # np.float for float_seq fields, as Config.__init__ sets it
        return checkpoint
    if isinstance(checkpoint.get("config"), dict) and checkpoint["config"].get(PLAIN_CONFIG):
        checkpoint["config"] = config_from_plain(checkpoint["config"])
    return checkpoint


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


def _literal_option_values() -> None:
    # recbole/config/configurator.py, Config._convert_config_dict: every string option value from
    # a config dict or the command line goes through eval(), so `--note='__import__("os")...'`
    # runs code. Parse with ast.literal_eval instead (numbers, lists, dicts, booleans, None);
    # anything else stays the string it was.
    import ast

    import yaml
    from recbole.config import Config

    def convert(self, config_dict):  # type: ignore[no-untyped-def]
        for key, param in config_dict.items():
            if not isinstance(param, str):
                continue
            try:
                value = ast.literal_eval(param)
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                value = {"true": True, "false": False}.get(param.lower(), param)
            config_dict[key] = value
        return config_dict

    Config._convert_config_dict = convert

    # recbole/config/configurator.py, Config._load_config_files: `update(yaml.load(...))` fails
    # with "'NoneType' object is not iterable" on a yaml file that holds only comments (such as
    # properties/model/SNQN.yaml: SNQN has no options of its own).
    def load_config_files(self, file_list):  # type: ignore[no-untyped-def]
        merged: dict = {}
        for file in file_list or []:
            with open(file, encoding="utf-8") as f:
                merged.update(yaml.load(f.read(), Loader=self.yaml_loader) or {})  # noqa: S506 -- RecBole's loader
        return merged

    Config._load_config_files = load_config_files


def _no_command_line_options() -> None:
    # recbole/config/configurator.py, Config._load_cmd_line: every Config(...) reads sys.argv and
    # lets any `--key=value` there override its config_dict. Our command lines are parsed by our
    # own option declarations; RecBole reading them again changed configs nobody passed it: the
    # LE build's candidates backbone (built inside `run_recbole_lea.py --epochs=16 --seed=7`)
    # trained 16 epochs with seed 7 under a cache key that says le_aug_backbone_epochs and le_seed.
    # Every RecBole Config here gets its options from config_dict and files only.
    from recbole.config import Config

    def load_cmd_line(self):  # type: ignore[no-untyped-def]
        return {}

    Config._load_cmd_line = load_cmd_line


def _no_pickled_data() -> None:
    # recbole/data/utils.py: create_dataset() unpickles <checkpoint_dir>/<dataset>-<Class>.pth (or
    # dataset_save_path) and data_preparation() unpickles <checkpoint_dir>/<dataset>-for-<model>-
    # dataloader.pth (or dataloaders_save_path) whenever such a file exists, even with the save
    # options off: a planted file runs code, and a stale one silently replaces the current data.
    # Here data always come from the atomic files (the options that would save or load pickles are
    # refused by recbole_lea.quick_start).
    import importlib

    import recbole.data
    import recbole.data.utils as data_utils
    from recbole.utils import ModelType

    def create_dataset(config):  # type: ignore[no-untyped-def]
        module = importlib.import_module("recbole.data.dataset")
        if hasattr(module, config["model"] + "Dataset"):
            return getattr(module, config["model"] + "Dataset")(config)
        kind = {
            ModelType.SEQUENTIAL: "SequentialDataset",
            ModelType.KNOWLEDGE: "KnowledgeBasedDataset",
        }.get(config["MODEL_TYPE"], "Dataset")
        return getattr(module, kind)(config)

    def load_split_dataloaders(config):  # type: ignore[no-untyped-def]
        return None

    data_utils.create_dataset = create_dataset
    recbole.data.create_dataset = create_dataset
    data_utils.load_split_dataloaders = load_split_dataloaders
    recbole.data.load_split_dataloaders = load_split_dataloaders


def quiet_third_party_warnings() -> None:
    """Silence, one by one at the line they come from, the deprecation warnings of our
    dependencies that a user can do nothing about; every other warning (ours included) shows."""
    # recbole/data/dataset/dataset.py (_fill_nan, _normalize): `feat[field].fillna(..., inplace=True)`,
    # pandas' chained-assignment FutureWarning (the fill still works on pandas 2; pandas<3 is pinned)
    warnings.filterwarnings(
        "ignore",
        message="A value is trying to be set on a copy of a DataFrame or Series through chained assignment",
        category=FutureWarning,
        module=r"recbole\.data\.dataset\.dataset",
    )
    # recbole/data/dataset/dataset.py (split_by_ratio over sequence fields, the LE states):
    # `feat[field].agg(len)` on a Series of arrays, pandas' deprecation of aggregating with len
    warnings.filterwarnings(
        "ignore",
        message=r"using <built-in function len> in Series\.agg cannot aggregate",
        category=FutureWarning,
        module=r"recbole\.data\.dataset\.dataset",
    )
    # recbole/trainer/trainer.py, Trainer.__init__: `amp.GradScaler(enabled=...)` of torch.cuda.amp
    warnings.filterwarnings(
        "ignore", message=r"`torch\.cuda\.amp\.GradScaler", category=FutureWarning, module=r"recbole\.trainer\.trainer"
    )
    # transformers/modeling_utils.py: peft reads the deprecated `is_gradient_checkpointing` property
    warnings.filterwarnings(
        "ignore",
        message=r"`is_gradient_checkpointing` is deprecated",
        category=FutureWarning,
        module=r"transformers\.modeling_utils",
    )


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
    quiet_third_party_warnings()
    _numpy2_aliases()
    _disable_anomaly_detection()
    _literal_option_values()
    _no_command_line_options()
    _no_pickled_data()
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
            "other_parameter": self.model.other_parameter(),  # type: ignore[attr-defined]
            "optimizer": self.optimizer.state_dict(),  # type: ignore[attr-defined]
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
        loss = super()._train_epoch(  # type: ignore[misc]
            train_data, epoch_idx, loss_func=loss_func, show_progress=show_progress
        )
        self.epoch_times.append(time.perf_counter() - start)
        total = sum(loss) if isinstance(loss, tuple) else loss
        self.loss_history.append({"loss": float(total) / max(len(train_data), 1)})
        return loss
