"""Shims that let RecBole 1.2.1 run on today's stack (Python 3.10-3.13, numpy 1.26 or 2, Ray 2.x).

Every shim names the upstream line it works around, and nothing else lives here (the checkpoint
format is :mod:`recbole_lea.checkpoint`, the trainer mixin :mod:`recbole_lea.trainer`).
:func:`apply` is idempotent and is called when :mod:`recbole_lea.quick_start` is imported;
:func:`require_recbole` runs when :mod:`recbole_lea` is imported. What cannot be shimmed is in ``setup.cfg``:

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
import warnings
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


def numpy2_aliases() -> None:
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


def recbole_dataset_class(config: Any) -> type:
    """The dataset class RecBole 1.2.1's ``create_dataset`` picks for ``config`` (the model's own
    ``<Model>Dataset``, else by model type), without its pickle loading (:func:`_no_pickled_data`)."""
    from recbole.utils import ModelType

    module = importlib.import_module("recbole.data.dataset")
    if hasattr(module, config["model"] + "Dataset"):
        return getattr(module, config["model"] + "Dataset")
    kind = {
        ModelType.SEQUENTIAL: "SequentialDataset",
        ModelType.KNOWLEDGE: "KnowledgeBasedDataset",
    }.get(config["MODEL_TYPE"], "Dataset")
    return getattr(module, kind)


def _no_pickled_data() -> None:
    # recbole/data/utils.py: create_dataset() unpickles <checkpoint_dir>/<dataset>-<Class>.pth (or
    # dataset_save_path) and data_preparation() unpickles <checkpoint_dir>/<dataset>-for-<model>-
    # dataloader.pth (or dataloaders_save_path) whenever such a file exists, even with the save
    # options off: a planted file runs code, and a stale one silently replaces the current data.
    # Here data always come from the atomic files (the options that would save or load pickles are
    # refused by recbole_lea.quick_start).
    import recbole.data
    import recbole.data.utils as data_utils

    def create_dataset(config):  # type: ignore[no-untyped-def]
        return recbole_dataset_class(config)(config)

    def load_split_dataloaders(config):  # type: ignore[no-untyped-def]
        return None

    data_utils.create_dataset = create_dataset
    recbole.data.create_dataset = create_dataset
    data_utils.load_split_dataloaders = load_split_dataloaders
    recbole.data.load_split_dataloaders = load_split_dataloaders


def _dok_matrix_update() -> None:
    # scipy 1.13 removed the private ``dok_matrix._update`` (scipy/sparse/_dok.py: dok is no longer
    # a dict subclass; its entries live in ``_dict``). RecBole 1.2.1's graph models fill their
    # adjacency matrix with it: general_recommender/lightgcn.py:111, ngcf.py:110, spectralcf.py:123,
    # gcmc.py:174, ncl.py:131, knowledge_aware_recommender/kgin.py:356, mcclk.py:425
    # ("'dok_matrix' object has no attribute '_update'"). The removed method was a plain
    # dict.update of the (row, col) -> value entries; this is the same on today's dok.
    import scipy.sparse as sp

    if not hasattr(sp.dok_matrix, "_update"):

        def _update(self, data):  # type: ignore[no-untyped-def]
            self._dict.update(data)

        sp.dok_matrix._update = _update


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
    numpy2_aliases()
    _disable_anomaly_detection()
    _literal_option_values()
    _no_command_line_options()
    _no_pickled_data()
    _dok_matrix_update()
    _APPLIED = True
