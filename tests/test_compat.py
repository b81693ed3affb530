"""The RecBole 1.2.1 shims do what they claim, and the installed stack is the declared one."""

from __future__ import annotations

import configparser
import importlib.metadata
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

import recbole_lea.quick_start  # noqa: F401  (applies the shims)
from recbole_lea import registry
from recbole_lea.trainer import get_trainer


def test_anomaly_detection_is_off_after_import() -> None:
    import recbole.model.sequential_recommender.sine  # noqa: F401  (the module that turns it on)

    assert not torch.is_anomaly_enabled()


def _install_requires() -> list[Requirement]:
    cfg = configparser.ConfigParser()
    cfg.read(Path(__file__).resolve().parents[1] / "setup.cfg")
    lines = [line.strip() for line in cfg["options"]["install_requires"].splitlines()]
    return [Requirement(line) for line in lines if line and not line.startswith("#")]


def test_installed_stack_satisfies_setup_cfg() -> None:
    """What this environment runs is what setup.cfg declares (numpy 1.26 or 2, pandas 2, ray 2, ...)."""
    checked = []
    # importing ray puts its vendored packages (colorama 0.4.6, ...) first on sys.path: look at
    # what pip installed
    path = [p for p in sys.path if "thirdparty_files" not in p]
    for req in _install_requires():
        if req.marker is not None and not req.marker.evaluate():
            continue
        version = next(importlib.metadata.distributions(name=req.name, path=path)).version
        assert req.specifier.contains(version, prereleases=True), f"{req.name} {version} is outside {req}"
        checked.append(req.name)
    assert {"numpy", "pandas", "ray"} <= set(checked)


def test_setup_cfg_lists_recbole_requirements_but_not_recbole() -> None:
    """RecBole is installed with --no-deps, so setup.cfg must carry its runtime requirements (less
    ray, which it caps at 2.6.3, and torch, which the README installs first) and must not name
    recbole itself: pip would then enforce recbole's own ray<=2.6.3 again."""
    ours = {canonicalize_name(r.name) for r in _install_requires()}
    recbole = {
        canonicalize_name(Requirement(line).name)
        for line in importlib.metadata.requires("recbole") or []
        if "extra ==" not in line
    }
    assert "recbole" not in ours and "torch" not in ours
    assert recbole - {"ray", "torch"} <= ours, sorted(recbole - {"ray", "torch"} - ours)
    assert importlib.metadata.version("recbole") == "1.2.1"


def test_require_recbole_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    from recbole_lea import compat

    compat.require_recbole()  # the real one passes
    monkeypatch.setitem(sys.modules, "recbole", None)  # not installed
    with pytest.raises(ImportError, match=r"not installed: run `pip install --no-deps recbole==1\.2\.1`"):
        compat.require_recbole()
    fake = types.ModuleType("recbole")
    fake.__version__ = "1.2.0"
    fake.__file__ = "/somewhere/recbole/__init__.py"
    monkeypatch.setitem(sys.modules, "recbole", fake)
    with pytest.raises(ImportError, match=r"found 1\.2\.0 at /somewhere/recbole: run `pip install --no-deps"):
        compat.require_recbole()


def test_registry_plugin_first_and_builtins() -> None:
    assert registry.get_model("SA2C").__module__ == "recbole_lea.model.sa2c"
    assert registry.get_model("SASRec").__module__.startswith("recbole.model.sequential_recommender")
    assert "LightGBM" in registry.recbole_model_names()  # listed without importing lightgbm
    from recbole.utils import ModelType

    trainer = get_trainer(ModelType.SEQUENTIAL, "SASRec")
    from recbole_lea.trainer import TrainerMixin

    assert issubclass(trainer, TrainerMixin)


_RECBOLE_CONFIG_ALIASES = (
    "from recbole.config import Config; Config.compatibility_settings(None); "
    "import numpy as np; assert np.float is np.float64 and np.unicode is np.str_ and np.complex is np.complex128"
)


def test_numpy2_aliases_cover_what_recbole_config_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    # simulate numpy 2, where these names are gone, on numpy 1 too
    from recbole_lea import compat

    for name in ("float_", "unicode_", "complex_"):
        if name in np.__dict__:
            monkeypatch.delitem(np.__dict__, name)
    assert "complex_" not in np.__dict__
    compat.numpy2_aliases()
    assert np.float_ is np.float64 and np.complex_ is np.complex128 and np.unicode_ is np.str_


def test_recbole_config_needs_the_numpy2_aliases() -> None:
    """In a fresh process, RecBole's Config.compatibility_settings (run by every Config) works
    after the shim; without it, it fails exactly when numpy is 2.x."""
    shimmed = subprocess.run(
        [sys.executable, "-c", f"from recbole_lea import compat; compat.numpy2_aliases(); {_RECBOLE_CONFIG_ALIASES}"],
        capture_output=True,
        text=True,
    )
    assert shimmed.returncode == 0, shimmed.stderr
    bare = subprocess.run([sys.executable, "-c", _RECBOLE_CONFIG_ALIASES], capture_output=True, text=True)
    if int(np.__version__.split(".")[0]) >= 2:
        assert bare.returncode != 0 and "np.float_` was removed in the NumPy 2.0 release" in bare.stderr, bare.stderr
    else:
        assert bare.returncode == 0, bare.stderr


def test_ray_loopback_only_sets_and_restores_the_node_address() -> None:
    ray = pytest.importorskip("ray")
    from ray._private import ray_constants, services

    from recbole_lea.compat import ray_loopback_only

    if ray.is_initialized():
        pytest.skip("a connected driver reports its node's address")
    before = ray_constants.ENABLE_RAY_CLUSTER
    with ray_loopback_only():
        # ray.init(_node_ip_address="127.0.0.1") goes through resolve_ip_for_localhost
        assert services.resolve_ip_for_localhost("127.0.0.1") == "127.0.0.1"
        assert services.get_node_ip_address() == "127.0.0.1"
    assert ray_constants.ENABLE_RAY_CLUSTER == before
