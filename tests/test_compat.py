"""The RecBole 1.2.1 shims do what they claim."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

import recbole_lea.quick_start  # noqa: F401  (applies the shims)
from recbole_lea import registry


def test_anomaly_detection_is_off_after_import() -> None:
    import recbole.model.sequential_recommender.sine  # noqa: F401  (the module that turns it on)

    assert not torch.is_anomaly_enabled()


def test_pinned_stack() -> None:
    assert int(np.__version__.split(".")[0]) < 2
    assert int(pd.__version__.split(".")[0]) < 3


def test_registry_plugin_first_and_builtins() -> None:
    assert registry.get_model("SA2C").__module__ == "recbole_lea.model.sa2c"
    assert registry.get_model("SASRec").__module__.startswith("recbole.model.sequential_recommender")
    assert "LightGBM" in registry.recbole_model_names()  # listed without importing lightgbm
    from recbole.utils import ModelType

    trainer = registry.get_trainer(ModelType.SEQUENTIAL, "SASRec")
    from recbole_lea.compat import CompatTrainerMixin

    assert issubclass(trainer, CompatTrainerMixin)


def test_numpy2_aliases_cover_what_recbole_config_reads(monkeypatch) -> None:
    # simulate numpy 2, where these names are gone; RecBole's Config.compatibility_settings reads
    # np.float_ / np.complex_ / np.unicode_ (the GPU image has numpy 2)
    from recbole_lea import compat

    for name in ("float_", "unicode_", "complex_"):
        monkeypatch.delattr(np, name)
    assert not hasattr(np, "complex_")
    compat._numpy2_aliases()
    assert np.float_ is np.float64 and np.complex_ is np.complex128 and np.unicode_ is np.str_
