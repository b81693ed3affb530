"""The seed figure of a comparison (``seeds.png`` beside ``table.md``): every seed a dot, each
model's mean with its 95% t interval, the baseline's mean dashed, the table's paired p values
above the columns, failed runs left out and named; and its command line, which draws it again
from a runs CSV. Synthetic records and a fake ``run_fn``: no model is trained."""

from __future__ import annotations

import math
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import pytest
from matplotlib.collections import PathCollection
from matplotlib.container import ErrorbarContainer
from matplotlib.figure import Figure

from recbole_lea.experiments import compare, plots
from recbole_lea.le.testing import write_tiny_dataset

ROOT = Path(__file__).resolve().parents[1]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SMALL = {"epochs": 1, "hidden_size": 8, "embedding_size": 8, "inner_size": 8, "train_batch_size": 64}


@pytest.fixture
def drawn(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Figure]]:
    """The figures drawn during the test, kept open (``plt.close`` records them) to be inspected."""
    figures: list[Figure] = []
    monkeypatch.setattr(plt, "close", figures.append)
    yield figures
    monkeypatch.undo()
    for fig in figures:
        plt.close(fig)


def _record(label: str, seed: int, ndcg: float, hit: float, status: str = "ok") -> dict[str, Any]:
    result = {"ndcg@10": ndcg, "hit@20": hit} if status == "ok" else {}
    return {"label": label, "seed": seed, "status": status, "test_result": result, "error": "boom"}


def _records() -> dict[str, list[dict[str, Any]]]:
    """BASE and GOOD over three seeds; GOOD's seed 3 failed."""
    return {
        "BASE": [_record("BASE", s, 0.10 + 0.01 * s, 0.20 + 0.02 * s) for s in (1, 2, 3)],
        "GOOD": [_record("GOOD", 1, 0.15, 0.30), _record("GOOD", 2, 0.17, 0.31), _record("GOOD", 3, 0, 0, "failed")],
    }


def _dots(fig: Figure) -> list[list[int]]:
    """Per panel, the number of dots of each model (in x order)."""
    return [[len(c.get_offsets()) for c in ax.collections if isinstance(c, PathCollection)] for ax in fig.axes]


def _texts(fig: Figure) -> list[str]:
    return [t.get_text() for ax in fig.axes for t in ax.texts]


# ------------------------------------------------------------------ statistics
def test_mean_ci_matches_a_hand_computation() -> None:
    values = [0.061, 0.066, 0.067, 0.064, 0.070]
    n = len(values)
    mean = sum(values) / n
    s = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    t_975_4 = 2.7764451051977987  # t_{0.975, 4 dof}, from a t table
    ci = plots.mean_ci(values)
    assert ci.n == n and math.isclose(ci.mean, mean)
    assert ci.half_width is not None and math.isclose(ci.half_width, t_975_4 * s / math.sqrt(n), rel_tol=1e-9)
    assert math.isclose(ci.low or 0, mean - t_975_4 * s / math.sqrt(n))
    assert math.isclose(ci.high or 0, mean + t_975_4 * s / math.sqrt(n))
    one = plots.mean_ci([0.5])
    assert (one.n, one.mean, one.half_width, one.low, one.high) == (1, 0.5, None, None, None)
    none = plots.mean_ci([])
    assert none.n == 0 and math.isnan(none.mean) and none.half_width is None


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ([0.3, 0.5, 0.4], [0.1, 0.2, 0.35]),
        ([0.2, 0.3], [0.1, 0.2]),  # a constant difference: NaN, never 0
        ([0.5], [0.1]),  # one pair: NaN
        ([0.3, 0.31, 0.29, 0.35], [0.3, 0.30, 0.30, 0.30]),
    ],
)
def test_paired_p_is_compares_paired_pvalue(a: list[float], b: list[float]) -> None:
    expected = compare.paired_pvalue(a, b)
    # seeds given in another order, and a seed only one side has, are paired by seed
    got = plots.paired_p({s: v for s, v in reversed(list(enumerate(a)))}, {**dict(enumerate(b)), 99: 0.7})
    assert (math.isnan(got) and math.isnan(expected)) or math.isclose(got, expected)


# ------------------------------------------------------------------ the figure
def test_figure_leaves_failed_runs_out_and_names_them(tmp_path: Path, drawn: list[Figure]) -> None:
    records = _records()
    path = plots.plot_seed_comparison(records, ["BASE", "GOOD"], "BASE", path=tmp_path / "out" / "seeds.png", title="t")
    assert path.read_bytes().startswith(PNG_MAGIC) and path.stat().st_size > 1000
    (fig,) = drawn
    assert [ax.get_title() for ax in fig.axes] == ["NDCG@10", "HR@20"]
    assert _dots(fig) == [[3, 2], [3, 2]]  # GOOD's failed seed 3 is no dot
    title = fig.get_suptitle()
    assert "left out (failed): GOOD seed 3" in title and "against BASE" in title
    ticks = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert ticks == ["BASE (baseline)", "GOOD"]
    assert fig.axes[0].get_xticklabels()[0].get_fontweight() == "bold"
    base_mean = plots.mean_ci([0.11, 0.12, 0.13]).mean
    dashed = [line for line in fig.axes[0].lines if line.get_linestyle() == "--"]
    assert len(dashed) == 1 and math.isclose(dashed[0].get_ydata()[0], base_mean)
    p = compare.paired_pvalue([0.15, 0.17], [0.11, 0.12])  # two pairs, not constant
    assert f"p={p:.2g}" in _texts(fig)


def test_given_pvalues_are_written_and_bold_below_alpha(tmp_path: Path, drawn: list[Figure]) -> None:
    pvalues = {"GOOD": {"ndcg@10": 0.004, "hit@20": 0.2}}
    plots.plot_seed_comparison(_records(), ["BASE", "GOOD"], "BASE", path=tmp_path / "s.png", pvalues=pvalues)
    texts = {t.get_text(): t.get_fontweight() for ax in drawn[0].axes for t in ax.texts}
    assert texts == {"p=0.004": "bold", "p=0.2": "normal"}


def test_one_seed_draws_no_interval(tmp_path: Path, drawn: list[Figure]) -> None:
    records = {"A": [_record("A", 1, 0.1, 0.2)], "B": [_record("B", 1, 0.2, 0.3)]}
    path = plots.plot_seed_comparison(records, ["A", "B"], "A", ["ndcg@10"], tmp_path / "one.png")
    assert path.stat().st_size > 0
    (ax,) = drawn[0].axes
    bars = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    assert len(bars) == 2 and not any(bar.has_yerr for bar in bars)
    assert _texts(drawn[0]) == ["p n/a"]


def test_no_baseline_and_a_model_without_runs(tmp_path: Path, drawn: list[Figure]) -> None:
    records = {"A": [_record("A", 1, 0.1, 0.2), _record("A", 2, 0.12, 0.2)], "B": [_record("B", 1, 0, 0, "failed")]}
    plots.plot_seed_comparison(records, ["A", "B"], None, path=tmp_path / "nb.png")
    fig = drawn[0]
    assert not [line for ax in fig.axes for line in ax.lines if line.get_linestyle() == "--"]
    assert set(_texts(fig)) == {"no finished run"}
    assert "left out (failed): B seed 1" in fig.get_suptitle() and "t-test" not in fig.get_suptitle()


# ------------------------------------------------------------------ written by run_compare_lea.py
FAILING: set[tuple[str, int]] = set()


def _fake_run(model: str, dataset: str, **kwargs: Any) -> dict[str, Any]:
    seed = int(kwargs["config_dict"]["seed"])
    if (model, seed) in FAILING:
        raise RuntimeError("a crash of the fake run")
    gain = 0.05 + 0.002 * seed**2 if model == "GRU4Rec" else 0.0  # a difference that varies over seeds
    return {
        "best_valid_score": 0.1,
        "test_result": {key: 0.1 + gain + 0.01 * seed + 0.003 * (seed % 2) for key, _ in compare.TABLE_METRICS},
        "best_valid_result": {"ndcg@10": 0.1},
        "config": {"eval_protocol": "loo", "seed": seed},
        "epoch_times": [0.1],
    }


def test_comparison_writes_the_figure_beside_the_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, drawn: list[Figure]
) -> None:
    monkeypatch.chdir(tmp_path)
    data = tmp_path / "data"
    write_tiny_dataset(data, n_users=20)
    out = tmp_path / "c"
    kwargs: dict[str, Any] = dict(
        dataset="tiny", models=["SASRec", "GRU4Rec"], seeds=[1, 2, 3], config_dict=dict(SMALL), data_path=str(data)
    )
    monkeypatch.setattr(sys.modules[__name__], "FAILING", {("GRU4Rec", 3)})
    failed = compare.run_comparison(
        **kwargs, output_dir=out / "failed", baseline="SASRec", run_fn=_fake_run, quiet=True
    )
    assert failed["figure"] == str(out / "failed" / "seeds.png")
    assert Path(failed["figure"]).read_bytes().startswith(PNG_MAGIC)
    fig = drawn[-1]
    assert "left out (failed): GRU4Rec seed 3" in fig.get_suptitle() and _dots(fig) == [[3, 2], [3, 2]]
    gru = next(row for row in failed["rows"] if row["model"] == "GRU4Rec")
    assert f"p={gru['ndcg@10_p']:.2g}" in _texts(fig)  # the table's p value

    monkeypatch.setattr(sys.modules[__name__], "FAILING", set())
    compare.run_comparison(**kwargs, output_dir=out / "ok", run_fn=_fake_run, quiet=True)
    (out / "ok" / "seeds.png").unlink()
    stored = compare.run_comparison(**kwargs, output_dir=out / "ok", stored=True, baseline="GRU4Rec")
    assert Path(stored["figure"]).stat().st_size > 0 and Path(stored["figure"]).parent == out / "ok"
    assert "against GRU4Rec" in drawn[-1].get_suptitle()


# ------------------------------------------------------------------ the command line
ARMS_CSV = """arm,seed,hit@10,hit@20,ndcg@10,run
SASRec,2020,0.14,0.247,0.0633,a
SASRec,2021,0.142,0.241,0.0661,b
SASRec,2022,0.146,0.244,0.0672,c
SA2C,2020,0.139,0.232,0.0678,d
SA2C,2021,0.138,0.228,0.0671,e
SA2C,2022,0.143,0.240,0.0704,f
"""


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_cli_redraws_the_figure_from_a_runs_csv(tmp_path: Path, drawn: list[Figure]) -> None:
    runs = _write(tmp_path / "toy-runs.csv", ARMS_CSV)
    assert plots.main(["--runs", str(runs), "--baseline", "SA2C"]) == 0
    png = tmp_path / "toy-seeds.png"
    assert png.read_bytes().startswith(PNG_MAGIC)
    fig = drawn[-1]
    assert fig.get_suptitle().startswith("toy-runs") and _dots(fig) == [[3, 3], [3, 3]]
    p = compare.paired_pvalue([0.0633, 0.0661, 0.0672], [0.0678, 0.0671, 0.0704])
    assert f"p={p:.2g}" in _texts(fig)


def test_cli_reads_run_compare_runs_csv_with_a_failed_run(tmp_path: Path, drawn: list[Figure]) -> None:
    text = (
        "model,seed,status,test_ndcg@10,test_hit@20,error\n"
        "A,1,ok,0.1,0.2,\nA,2,ok,0.11,0.22,\nB,1,ok,0.12,0.25,\nB,2,failed,,,RuntimeError: boom\n"
    )
    runs = _write(tmp_path / "runs.csv", text)
    out = tmp_path / "fig" / "redrawn.png"
    assert plots.main(["--runs", str(runs), "--baseline", "A", "--metrics", "ndcg@10", "--out", str(out)]) == 0
    assert out.stat().st_size > 0
    assert plots.default_figure_path(runs) == tmp_path / "seeds.png"
    assert _dots(drawn[-1]) == [[2, 1]] and "B seed 2" in drawn[-1].get_suptitle()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--baseline", "GRU4Rec"], "--baseline 'GRU4Rec' is not a model of"),
        (["--metrics", "mrr@10"], "--metrics 'mrr@10' is not in"),
        (["--label_column", "run_dir"], "--label_column 'run_dir' is not a column"),
    ],
)
def test_cli_bad_input_is_one_message_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    runs = _write(tmp_path / "toy-runs.csv", ARMS_CSV)
    assert plots.main(["--runs", str(runs), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "toy-seeds.png").exists()


def test_cli_missing_file_and_repeated_seed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert plots.main(["--runs", str(tmp_path / "nope.csv")]) == 2
    assert "--runs" in capsys.readouterr().err
    twice = _write(tmp_path / "t-runs.csv", "arm,seed,ndcg@10,hit@20\nA,1,0.1,0.2\nA,1,0.2,0.3\n")
    assert plots.main(["--runs", str(twice)]) == 2
    assert "seed 1 twice" in capsys.readouterr().err


def test_python_dash_m_entry(tmp_path: Path) -> None:
    runs = _write(tmp_path / "toy-runs.csv", ARMS_CSV)
    cmd = [sys.executable, "-m", "recbole_lea.experiments.plots", "--runs", str(runs), "--baseline", "Nope"]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 2 and "--baseline 'Nope'" in done.stderr, done.stderr
    done = subprocess.run([*cmd[:-1], "SA2C"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0 and (tmp_path / "toy-seeds.png").stat().st_size > 0, done.stderr
