"""Checkpoints that load without running pickled code.

RecBole 1.2.1's ``Trainer._save_checkpoint`` (recbole/trainer/trainer.py, ``"config": self.config``)
pickles the whole ``Config``, so its checkpoints load only with ``torch.load(weights_only=False)``,
which runs whatever code the file names. Ours store the config as plain values
(:func:`config_to_plain`) and load with ``weights_only=True`` (:func:`torch_load`); the trainer
writes them (:class:`recbole_lea.trainer.TrainerMixin`).
"""

from __future__ import annotations

from typing import Any

from recbole_lea.compat import numpy2_aliases
from recbole_lea.errors import ConfigError
from recbole_lea.registry import get_model

#: marker of a checkpoint whose config is stored as plain values (loadable with weights_only)
PLAIN_CONFIG = "recbole_lea_plain_config"


def _to_plain(value: Any) -> Any:
    """RecBole's enums and the device as plain values (``{"__enum__": ..., "name": ...}`` / str)."""
    from enum import Enum

    import torch

    if isinstance(value, Enum):
        return {"__enum__": type(value).__name__, "name": value.name}
    if isinstance(value, torch.device):
        return {"__device__": str(value)}
    if isinstance(value, dict):
        return {k: _to_plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_to_plain(v) for v in value]
    return value


def _from_plain(value: Any) -> Any:
    import torch
    from recbole.utils import enum_type

    if isinstance(value, dict):
        if set(value) == {"__enum__", "name"}:
            return getattr(enum_type, value["__enum__"])[value["name"]]
        if set(value) == {"__device__"}:
            return torch.device(value["__device__"])
        return {k: _from_plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_plain(v) for v in value]
    return value


def config_to_plain(config: Any) -> dict[str, Any]:
    """A RecBole ``Config`` as plain values, for checkpoints that load with ``weights_only=True``
    (``torch.load``'s default since torch 2.6): RecBole 1.2.1's ``Trainer._save_checkpoint``
    (recbole/trainer/trainer.py, ``"config": self.config``) pickles the whole object instead."""
    return {PLAIN_CONFIG: 1, "final_config_dict": _to_plain(dict(config.final_config_dict))}


def config_from_plain(state: dict[str, Any]) -> Any:
    """The ``Config`` of :func:`config_to_plain`, usable like one RecBole built (item access,
    printing, ``compatibility_settings`` run as ``Config.__init__`` runs it)."""
    from recbole.config import Config

    config = Config.__new__(Config)
    config.final_config_dict = _from_plain(state["final_config_dict"])
    config.model = config.final_config_dict["model"]
    config.dataset = config.final_config_dict["dataset"]
    config.model_class = get_model(config.model)
    config.internal_config_dict, config.external_config_dict = {}, {}
    config.file_config_dict, config.variable_config_dict, config.cmd_config_dict = {}, {}, {}
    config._init_parameters_category()
    numpy2_aliases()  # compatibility_settings reads np.float_, gone in numpy 2
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
            raise ConfigError(
                f"{path} does not load without running pickled code ({type(err).__name__}): it was written by "
                "an older recbole_lea or by RecBole itself. If you wrote it yourself, load it with "
                "trust_pickle=True (load_data_and_model / load_for_serving), or retrain."
            ) from None
        checkpoint = torch.load(path, map_location=map_location, weights_only=False)
        config = checkpoint["config"]
        numpy2_aliases()
        config.compatibility_settings()  # np.float for float_seq fields, as Config.__init__ sets it
        return checkpoint
    if isinstance(checkpoint.get("config"), dict) and checkpoint["config"].get(PLAIN_CONFIG):
        checkpoint["config"] = config_from_plain(checkpoint["config"])
        checkpoint["other_parameter"] = parameters_from_plain(checkpoint.get("other_parameter"))
    return checkpoint


def parameters_to_plain(value: Any) -> Any:
    """A model's ``other_parameter()`` in types ``torch.load(weights_only=True)`` reads: tensors
    stay; scipy sparse matrices (ItemKNN's similarity, EASE's, SLIM's, ...) and numpy arrays become
    tagged dicts of tensors; numbers, strings and containers stay. Anything else is refused rather
    than pickled."""
    import numpy as np
    import scipy.sparse as sp
    import torch

    if value is None or isinstance(value, bool | int | float | str | torch.Tensor):
        return value
    if sp.issparse(value):
        coo = value.tocoo()
        return {
            "__sparse__": value.format,
            "row": torch.from_numpy(np.asarray(coo.row, dtype=np.int64)),
            "col": torch.from_numpy(np.asarray(coo.col, dtype=np.int64)),
            "data": torch.from_numpy(np.ascontiguousarray(coo.data)),
            "shape": [int(n) for n in value.shape],
        }
    if isinstance(value, np.ndarray) and value.dtype != object:
        return {"__ndarray__": torch.from_numpy(np.ascontiguousarray(value))}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {k: parameters_to_plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [parameters_to_plain(v) for v in value]
    raise ConfigError(
        f"A model parameter of type {type(value).__name__} cannot be saved in a checkpoint that loads without "
        "running pickled code; save with --no-save, or store it as a tensor, numpy array or scipy sparse matrix."
    )


def parameters_from_plain(value: Any) -> Any:
    """The inverse of :func:`parameters_to_plain`."""
    if isinstance(value, dict) and "__sparse__" in value:
        import scipy.sparse as sp

        coo = sp.coo_matrix(
            (value["data"].numpy(), (value["row"].numpy(), value["col"].numpy())), shape=tuple(value["shape"])
        )
        return coo.asformat(value["__sparse__"])
    if isinstance(value, dict) and set(value) == {"__ndarray__"}:
        return value["__ndarray__"].numpy()
    if isinstance(value, dict):
        return {k: parameters_from_plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [parameters_from_plain(v) for v in value]
    return value
