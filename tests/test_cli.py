"""The command line as a newcomer meets it (issue 21): quick errors before heavy imports, a
helpful --help, an unknown model named with its closest matches, a readable end of run."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

from recbole_lea.cli import main

ROOT = Path(__file__).resolve().parents[1]

PROBE = """
import sys
from recbole_lea.cli import main
code = main(sys.argv[1:])
print("heavy:", sorted(m for m in ("torch", "recbole.config", "transformers") if m in sys.modules))
sys.exit(code)
"""


@pytest.mark.parametrize(
    "args,message",
    [
        (["--model=SA2CC"], "Unknown model 'SA2CC'. Did you mean SA2C"),
        (["--model=SA2C", "--w_ahh=0.5"], "Did you mean `w_ah`"),
        (["--model=SA2C_LEA", "--le_epochs=0"], "`le_epochs` must be >= 1"),
        (["--model=SA2C", "--dataset=nosuch"], None),
    ],
)
def test_bad_input_is_reported_before_torch_is_imported(args: list[str], message: str | None, tiny_root: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, *args, f"--data_path={tiny_root}", "--help-options"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if message is None:  # a missing dataset is found when its files are read, still without torch
        assert proc.returncode == 0, proc.stderr
    else:
        assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert "heavy: []" in proc.stdout


@pytest.mark.parametrize(
    "command,args,message",
    [
        ("compare_main", ["--models", "SA2C:w_ahh=1", "--seeds", "1"], "Did you mean `w_ah`"),
        ("compare_main", ["--models", "SASRec", "--seeds", "1", "--stored"], "--stored: no finished record"),
        (
            "compare_main",
            ["--models", "SASRec", "--seeds", "1", "--baseline", "SA2C"],
            "--baseline 'SA2C' is not one of",
        ),
        ("compare_main", ["--models", "SASRec", "SASRec", "--seeds", "1"], "--models: each model spec once"),
        ("compare_main", ["--models", "SASRec:oops", "--seeds", "1"], "bad override 'oops'"),
        ("hyper_main", ["--model=SA2C", "--params_file=nosuch"], "Params file nosuch not found"),
    ],
)
def test_compare_and_sweep_bad_input_is_one_message(
    command: str, args: list[str], message: str, tiny_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from recbole_lea.experiments import cli

    argv = ["--dataset=tiny", f"--data_path={tiny_root}", f"--output_dir={tmp_path / 'out'}", *args]
    assert getattr(cli, command)(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err, err
    assert not (tmp_path / "out" / "runs").exists() or not any((tmp_path / "out" / "runs").iterdir())


def test_unknown_model_names_ours_not_every_recbole_model(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--model=sasrec"]) == 2
    err = capsys.readouterr().err
    assert "Did you mean SASRec" in err and "SA2C_LEA" in err and "--list-models" in err
    assert "LightGBM" not in err and len(err) < 400
    assert main(["--list-models"]) == 0
    out = capsys.readouterr().out
    assert "SA2C_LEA" in out and "LightGBM" in out and "BERT4Rec" in out


def test_help_shows_the_frequent_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for name in (
        "--backbone",
        "--variant",
        "--epochs",
        "--seed",
        "--le_profile",
        "--le_model",
        "--eval_protocol",
        "--w_ah",
    ):
        assert name in out, name
    assert "--help-options" in out


def test_end_of_run_summary(tiny_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    # as in a fresh process: RecBole's init_logger (logging.basicConfig) opens the run's log file only
    # when the root logger has no handler yet, and earlier tests (and pytest) leave some
    monkeypatch.setattr(logging.getLogger(), "handlers", [])
    code = main(
        [
            "--model=SA2C_LEA",
            "--dataset=tiny",
            f"--data_path={tiny_root}",
            f"--le_dir={tiny_root / 'tiny-lea'}",
            "--le_state_dim=8",
            "--epochs=1",
            "--hidden_size=8",
            "--embedding_size=8",
            "--inner_size=8",
            f"--checkpoint_dir={tmp_path / 'saved'}",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "SA2C_LEA (variant LEASR, backbone SASRec) on tiny, leave-one-out" in out
    for line in ("ndcg@10", "checkpoint:", "log:", "LE files:", "time:", "training (1 epochs)"):
        assert line in out, line
    assert "never reached its advantage phase" in out  # 1 epoch: the switch (4 epochs) cannot happen


def test_model_layers_match_the_model_classes() -> None:
    """The light map of option layers (read before any import) agrees with what each model reads."""
    from recbole_lea import registry
    from recbole_lea.model.le_feedback import LEFeedback
    from recbole_lea.model.options import MODEL_LAYERS, LEFeedbackOptions, RLOptions, SA2COptions
    from recbole_lea.model.rl_base import DoubleQRecommender
    from recbole_lea.model.sa2c import SA2C

    for name in registry.PLUGIN_MODELS:
        cls = registry.get_model(name)
        declared = {opts for _stem, opts, _o in MODEL_LAYERS[name] if opts is not None}
        expected = {RLOptions} if issubclass(cls, DoubleQRecommender) else set()
        expected |= {SA2COptions} if issubclass(cls, SA2C) else set()
        expected |= {LEFeedbackOptions} if issubclass(cls, LEFeedback) else set()
        assert declared == expected, name
        assert MODEL_LAYERS[name][-1][0] == name  # each model's own file comes last


def test_third_party_deprecation_warnings_are_silenced_where_they_come_from(tiny_config: dict) -> None:
    """RecBole's pandas and torch.cuda.amp FutureWarnings are filtered by message and module, not
    by a blanket filter: a warning of ours (or another library's) still shows."""
    import warnings

    from recbole_lea import compat
    from recbole_lea.quick_start import run_recbole_lea

    with warnings.catch_warnings(record=True) as seen:
        warnings.resetwarnings()
        warnings.simplefilter("default")
        compat.quiet_third_party_warnings()
        run_recbole_lea("SA2C", "tiny", config_dict=tiny_config, saved=False)
        warnings.warn("a warning of ours", UserWarning, stacklevel=1)
        warnings.warn("another FutureWarning", FutureWarning, stacklevel=1)
    messages = [str(w.message) for w in seen]
    assert not [m for m in messages if "chained assignment" in m or "GradScaler" in m], messages
    assert "a warning of ours" in messages and "another FutureWarning" in messages
