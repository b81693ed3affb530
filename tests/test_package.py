"""The package works when installed as a wheel (not only from a clone): its defaults ship inside
it, the run command works from any directory, and a missing default file is an error."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from recbole_lea.defaults import generated_files
from recbole_lea.errors import ConfigError
from recbole_lea.options import PROPERTIES

ROOT = Path(__file__).resolve().parents[1]


def test_generated_yaml_files_match_the_declarations() -> None:
    stale = [str(p) for p, text in generated_files().items() if not p.is_file() or p.read_text() != text]
    assert not stale, f"run `python -m recbole_lea.defaults --write`: {stale}"


def test_every_declared_option_has_help_and_every_le_option_a_stage_tag() -> None:
    from recbole_lea.le.config import NEUTRAL, SPECS
    from recbole_lea.quick_start import all_declared_specs

    for name, spec in all_declared_specs().items():
        assert spec.help.strip(), name
    # an LE option enters a stage's cache key, or is declared as unable to change a result
    assert set(NEUTRAL) == {"le_cache_dir", "le_threads", "le_feat_batch", "le_token_micro_batch"}
    assert all(spec.stages for name, spec in SPECS.items() if name not in NEUTRAL)


def test_missing_default_file_is_an_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import shutil

    from recbole_lea import run_config

    copy = tmp_path / "properties"
    shutil.copytree(PROPERTIES, copy)
    (copy / "model" / "SA2C.yaml").unlink()
    monkeypatch.setattr(run_config, "PROPERTIES", copy)
    with pytest.raises(ConfigError, match=r"lacks its default file .*SA2C\.yaml"):
        run_config.default_config_files("SA2C", "ml-100k")


def test_wheel_installs_into_a_fresh_venv_and_runs_from_anywhere(tmp_path: Path, tiny_root: Path) -> None:
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels), str(ROOT)],
        check=True,
        timeout=300,
    )
    wheel = next(wheels.glob("recbole_lea-*.whl"))
    import zipfile

    shipped = set(zipfile.ZipFile(wheel).namelist())
    for path in sorted(PROPERTIES.rglob("*")):
        if path.suffix in (".yaml", ".hyper"):  # every shipped default and search space is in the wheel
            assert f"recbole_lea/properties/{path.relative_to(PROPERTIES).as_posix()}" in shipped, path
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    bindir = venv / "bin"
    # the venv sees the packages of the environment the tests run in (torch, RecBole, ...: a venv of
    # its own when the tests run in one, which --system-site-packages would skip) but gets its own
    # recbole_lea: a .pth line adds those folders after the venv's own; the .pth files inside them
    # (this checkout's editable install) are not processed
    site = subprocess.run(
        [str(bindir / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    parent = dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    (Path(site) / "_test_parent_env.pth").write_text("\n".join(parent) + "\n")
    subprocess.run([str(bindir / "pip"), "install", "-q", "--no-deps", str(wheel)], check=True, timeout=300)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    where = subprocess.run(
        [str(bindir / "python"), "-c", "import recbole_lea; print(recbole_lea.__file__)"],
        cwd=elsewhere,
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout.strip()
    assert where.startswith(str(venv)), where  # the installed copy, not the clone
    args = ["--model=SA2C", "--dataset=tiny", f"--data_path={tiny_root}", "--epochs=1", "--no-save"]
    shown = subprocess.run(
        [str(bindir / "run_recbole_lea"), *args, "--help-options"],
        cwd=elsewhere,
        capture_output=True,
        text=True,
        env=env,
    )
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert "gamma = 0.5    [properties/model/rl.yaml]" in shown.stdout
    assert "MAX_ITEM_LIST_LENGTH = 10    [properties/sequential.yaml]" in shown.stdout
    run = subprocess.run(
        [str(bindir / "run_recbole_lea"), *args], cwd=elsewhere, capture_output=True, text=True, env=env
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "SA2C (backbone SASRec) on tiny" in run.stdout and "ndcg@10" in run.stdout
