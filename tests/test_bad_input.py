"""Bad input ends with one clear message naming the thing and the valid choices."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from recbole_lea.errors import ConfigError
from recbole_lea.quick_start import build_config, run_recbole_lea
from recbole_lea.registry import get_model

ROOT = Path(__file__).resolve().parents[1]


def test_unknown_model_lists_valid_names() -> None:
    with pytest.raises(ConfigError) as e:
        get_model("SA2CC")
    msg = str(e.value)
    assert "SA2CC" in msg and "SA2C_LEA" in msg and "SASRec" in msg and "Did you mean" in msg


def test_unknown_backbone(tiny_config: dict) -> None:
    with pytest.raises(ConfigError, match="backbone.*SASRec, GRU4Rec"):
        build_config("SA2C", "tiny", config_dict=dict(tiny_config, backbone="BERT4Rec"))


def test_unknown_variant(tiny_config: dict) -> None:
    with pytest.raises(ConfigError, match="variant.*LEASR"):
        build_config("SA2C_LEA", "tiny", config_dict=dict(tiny_config, variant="LEXX"))


def test_wrong_type_names_option(tiny_config: dict) -> None:
    with pytest.raises(ConfigError, match="`epochs` expects an integer"):
        build_config("SA2C", "tiny", config_dict=dict(tiny_config, epochs="many"))
    with pytest.raises(ConfigError, match="`w_ah` expects float"):
        build_config("SA2C_LEA", "tiny", config_dict=dict(tiny_config, w_ah="lots"))


def test_missing_config_file(tiny_config: dict) -> None:
    with pytest.raises(ConfigError, match="does-not-exist.yaml does not exist"):
        build_config("SA2C", "tiny", ["does-not-exist.yaml"], tiny_config)


def test_dataset_without_atomic_files(tiny_config: dict) -> None:
    with pytest.raises(ConfigError, match=r"No atomic files for dataset 'nope'.*nope\.inter"):
        build_config("SA2C", "nope", config_dict=tiny_config)


def test_lea_without_le_files_names_build_command(tmp_path: Path, tiny_config: dict) -> None:
    from conftest import write_tiny_dataset

    write_tiny_dataset(tmp_path, name="bare")
    cfg = dict(tiny_config, data_path=str(tmp_path), le_auto_build=False, le_dir=None)
    with pytest.raises(ConfigError, match=r"--build-le --dataset=bare"):
        run_recbole_lea("SA2C_LEA", "bare", config_dict=cfg, saved=False)


def test_le_folder_missing_a_field_names_it(tmp_path: Path, tiny_root: Path, tiny_config: dict) -> None:
    from recbole_lea.le.testing import seal_le_dir

    folder = tmp_path / "tiny-lea"
    folder.mkdir()
    df = pd.read_csv(tiny_root / "tiny-lea" / "tiny-lea.inter", sep="\t")
    df.drop(columns=["le_state:float_seq", "le_next_state:float_seq"]).to_csv(
        folder / "tiny-lea.inter", sep="\t", index=False
    )
    seal_le_dir(folder)
    cfg = dict(tiny_config, le_dir=str(folder), variant="LER")
    with pytest.raises(ConfigError, match=r"lacks the LE field\(s\) \['le_state', 'le_next_state'\]"):
        run_recbole_lea("SA2C_LEA", "tiny", config_dict=cfg, saved=False)


@pytest.mark.parametrize(
    "args,message",
    [
        (["--model=NoSuchModel"], "Unknown model 'NoSuchModel'"),
        (["--model=SA2C", "--epochs=0"], "`epochs` must be >= 1"),
    ],
)
def test_cli_reports_without_traceback(args: list[str], message: str, tiny_root: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "run_recbole_lea.py"), *args, "--dataset=tiny", f"--data_path={tiny_root}"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert proc.returncode == 2
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_cli_reports_le_input_errors_without_traceback(tiny_root: Path, tmp_path: Path) -> None:
    for cli in ([str(ROOT / "run_recbole_lea.py"), "--model=SA2C_LEA"], ["-m", "recbole_lea.le", "build"]):
        proc = subprocess.run(
            [sys.executable, *cli, "--dataset=tiny", f"--data_path={tiny_root}", "--le_bogus=1"],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=120,
            env={**os.environ, "RECBOLE_LEA_CACHE": str(tmp_path)},
        )
        assert proc.returncode == 2, proc.stderr[-2000:]
        assert "Unknown option `le_bogus`" in proc.stderr and (
            "--help-options" in proc.stderr or "le options" in proc.stderr
        )
        assert "Traceback" not in proc.stderr


def test_cli_parses_overrides() -> None:
    from recbole_lea.options import parse_overrides

    assert parse_overrides(["--epochs=5", "--backbone", "GRU4Rec", "--topk=[5,10]", "--w_ah=0.1"]) == {
        "epochs": 5,
        "backbone": "GRU4Rec",
        "topk": [5, 10],
        "w_ah": 0.1,
    }
    with pytest.raises(SystemExit):
        parse_overrides(["stray"])


def test_sequence_split_with_an_empty_part_is_refused(tiny_config: dict) -> None:
    for ratios in ([0.9, 0.1, 0.0], [0.8, 0.2]):
        with pytest.raises(ConfigError, match=r"`sequence_split_ratios` must be three positive shares"):
            build_config(
                "SA2C", "tiny", config_dict=dict(tiny_config, eval_protocol="sequence", sequence_split_ratios=ratios)
            )
