"""Pictures of runs, sweeps and comparisons (matplotlib, Agg backend; no display needed).

The seed figure of a comparison (:func:`plot_seed_comparison`) is also drawn again from a runs
CSV by ``python -m recbole_lea.experiments.plots --runs <runs.csv> --baseline <model>``.
"""

from __future__ import annotations

import csv
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.transforms import blended_transform_factory  # noqa: E402

from recbole_lea.errors import ConfigError  # noqa: E402
from recbole_lea.files import atomic_open  # noqa: E402
from recbole_lea.options import build, command_parser, opt  # noqa: E402

#: logged per epoch by the RL trainer but not losses (left out of the loss panel)
NON_LOSS_TERMS = frozenset({"phase"})


def plot_learning_curves(
    train_losses: Sequence[Mapping[str, float] | float | None],
    valid_curve: Sequence[Mapping[str, Any]],
    path: str | Path,
    title: str = "",
    valid_metric: str = "ndcg@10",
) -> Path:
    """Training loss per named term and a validation metric per epoch, as one PNG.

    Args:
        train_losses: one entry per training epoch: a ``{term: value}`` dict (the run result's
            ``train_losses``), or a bare float (treated as term ``loss``).
        valid_curve: one entry per validation: ``{"epoch": int, "valid_score": float,
            "valid_result": {metric: value}}`` as collected through ``callback_fn``.
        path: PNG file to write (parent folders are created).
        valid_metric: key of ``valid_result`` to draw; ``valid_score`` when it is missing.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, (ax_loss, ax_valid) = plt.subplots(1, 2, figsize=(10, 3.8))

    terms: dict[str, list[tuple[int, float]]] = {}
    for epoch, entry in enumerate(train_losses):
        if entry is None:
            continue
        items = entry.items() if isinstance(entry, Mapping) else [("loss", entry)]
        for term, value in items:
            if term in NON_LOSS_TERMS or value is None or not math.isfinite(float(value)):
                continue
            terms.setdefault(str(term), []).append((epoch, float(value)))
    for term, points in sorted(terms.items()):
        xs, ys = zip(*points)
        ax_loss.plot(xs, ys, marker="o", markersize=3, label=term)
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("training loss")
    ax_loss.set_title("training loss by term")
    if terms:
        ax_loss.legend(fontsize=8)
    else:
        ax_loss.text(0.5, 0.5, "no losses recorded", ha="center", transform=ax_loss.transAxes)

    xs_v: list[int] = []
    ys_v: list[float] = []
    label = valid_metric
    for point in valid_curve:
        result = point.get("valid_result") or {}
        if valid_metric in result:
            value = result[valid_metric]
        else:
            value = point.get("valid_score")
            label = "valid_score"
        if value is None:
            continue
        xs_v.append(int(point.get("epoch", len(xs_v))))
        ys_v.append(float(value))
    if xs_v:
        ax_valid.plot(xs_v, ys_v, marker="o", markersize=3, color="tab:green")
    else:
        ax_valid.text(0.5, 0.5, "no validation", ha="center", transform=ax_valid.transAxes)
    ax_valid.set_xlabel("epoch")
    ax_valid.set_ylabel(f"validation {label}")
    ax_valid.set_title(f"validation {label}")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_heatmap(
    rows: Sequence[Mapping[str, Any]],
    x_key: str,
    y_key: str,
    value_key: str,
    path: str | Path,
    title: str = "",
) -> Path | None:
    """Heatmap of ``value_key`` over the grid of ``x_key`` x ``y_key`` (mean over repeats).

    ``rows`` are trial records (e.g. the sweep CSV as dicts). Rows with a missing or non-finite
    value are left out; grid cells without any value are drawn blank and labelled "n/a".
    Returns the path, or ``None`` when no row has both keys.
    """
    cells: dict[tuple[Any, Any], list[float]] = {}
    xs: set[Any] = set()
    ys: set[Any] = set()
    for row in rows:
        if x_key not in row or y_key not in row:
            continue
        x, y = row[x_key], row[y_key]
        if x is None or y is None or (isinstance(x, float) and math.isnan(x)):
            continue
        if isinstance(y, float) and math.isnan(y):
            continue
        xs.add(x)
        ys.add(y)
        value = row.get(value_key)
        try:
            value_f = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            continue
        if math.isfinite(value_f):
            cells.setdefault((x, y), []).append(value_f)
    if not xs or not ys:
        return None
    x_vals = sorted(xs, key=_sort_key)
    y_vals = sorted(ys, key=_sort_key)
    grid = np.full((len(y_vals), len(x_vals)), np.nan)
    for (x, y), values in cells.items():
        grid[y_vals.index(y), x_vals.index(x)] = float(np.mean(values))

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(1.2 * len(x_vals) + 2.5, 0.9 * len(y_vals) + 2))
    masked = np.ma.masked_invalid(grid)
    image = ax.imshow(masked, cmap="viridis", origin="lower", aspect="auto")
    ax.set_xticks(range(len(x_vals)), [str(v) for v in x_vals])
    ax.set_yticks(range(len(y_vals)), [str(v) for v in y_vals])
    ax.set_xlabel(x_key)
    ax.set_ylabel(y_key)
    finite = grid[np.isfinite(grid)]
    mid = float(np.mean([finite.min(), finite.max()])) if finite.size else 0.0
    for i in range(len(y_vals)):
        for j in range(len(x_vals)):
            value = grid[i, j]
            text = "n/a" if not np.isfinite(value) else f"{value:.4f}"
            color = "black" if np.isfinite(value) and value > mid else "white"
            if not np.isfinite(value):
                color = "black"
            ax.text(j, i, text, ha="center", va="center", color=color, fontsize=8)
    fig.colorbar(image, ax=ax, label=value_key)
    ax.set_title(title or f"{value_key} over {x_key} x {y_key}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _sort_key(value: Any) -> tuple[int, Any]:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (0, float(value))
    return (1, str(value))


# ------------------------------------------------------------------------------ seed figure
#: metrics of the seed figure, one panel each (lower-case keys of a run's ``test_result``)
SEED_FIGURE_METRICS: tuple[str, ...] = ("ndcg@10", "hit@20")
#: confidence level of the interval drawn around each model's mean
CONFIDENCE = 0.95
#: names of the metrics in the figure (others are upper-cased)
METRIC_NAMES = {"hit": "HR", "ndcg": "NDCG"}
BASE_COLOR = "tab:orange"
MODEL_COLOR = "tab:blue"


@dataclass(frozen=True)
class MeanCI:
    """The mean of one model's values over seeds and its t confidence interval."""

    n: int
    mean: float
    #: t_{(1+confidence)/2, n-1} * s / sqrt(n); None with fewer than two values (no interval)
    half_width: float | None

    @property
    def low(self) -> float | None:
        return None if self.half_width is None else self.mean - self.half_width

    @property
    def high(self) -> float | None:
        return None if self.half_width is None else self.mean + self.half_width


def mean_ci(values: Sequence[float], confidence: float = CONFIDENCE) -> MeanCI:
    """Mean ± t_{(1+confidence)/2, n-1} * s / sqrt(n) (``s``: sample std, ddof=1, of the seeds).

    One value: its mean and no interval; no value: a NaN mean."""
    from scipy.stats import t

    data = np.asarray(values, dtype=float)
    if data.size == 0:
        return MeanCI(0, float("nan"), None)
    mean = float(data.mean())
    if data.size < 2:
        return MeanCI(1, mean, None)
    scale = float(data.std(ddof=1)) / math.sqrt(data.size)
    return MeanCI(int(data.size), mean, float(t.ppf((1 + confidence) / 2, data.size - 1)) * scale)


def paired_p(values: Mapping[int, float], base: Mapping[int, float]) -> float:
    """:func:`~recbole_lea.experiments.stats.paired_pvalue` over the seeds both have."""
    from recbole_lea.experiments.stats import paired_pvalue

    common = sorted(set(values) & set(base))
    return paired_pvalue([values[s] for s in common], [base[s] for s in common])


def seed_values(records: Sequence[Mapping[str, Any]], metric: str) -> dict[int, float]:
    """``{seed: value}`` of the finished runs (status ``ok``) that report ``metric``."""
    out: dict[int, float] = {}
    for record in records:
        value = (record.get("test_result") or {}).get(metric)
        if record.get("status") == "ok" and value is not None and math.isfinite(float(value)):
            out[int(record["seed"])] = float(value)
    return out


def failed_runs(records_by_label: Mapping[str, Sequence[Mapping[str, Any]]]) -> list[str]:
    """``"<label> seed <seed>"`` of every run that did not finish."""
    return [
        f"{label} seed {record.get('seed')}"
        for label, records in records_by_label.items()
        for record in records
        if record.get("status") != "ok"
    ]


def metric_name(metric: str) -> str:
    """``ndcg@10`` -> ``NDCG@10``, ``hit@20`` -> ``HR@20``."""
    name, at, k = metric.partition("@")
    return METRIC_NAMES.get(name.lower(), name.upper()) + at + k


def plot_seed_comparison(
    records_by_label: Mapping[str, Sequence[Mapping[str, Any]]],
    labels: Sequence[str],
    baseline: str | None,
    metrics: Sequence[str] = SEED_FIGURE_METRICS,
    path: str | Path = "seeds.png",
    title: str = "",
    *,
    pvalues: Mapping[str, Mapping[str, float]] | None = None,
    alpha: float = 0.01,
) -> Path:
    """One panel per metric: each model's seeds as dots, its mean with the 95% t interval
    (n-1 dof; none with one seed), the baseline's mean as a dashed line and, above every other
    model, its paired t-test p against the baseline (bold when p < ``alpha``).

    Args:
        records_by_label: a model's run records (``seed``, ``status``, ``test_result``), by label;
            runs whose status is not ``ok`` are left out of the dots and named in the title.
        labels: the models, in table order (the x axis).
        baseline: the label the p values compare against, or None (no line, no p values).
        pvalues: ``{label: {metric: p}}`` already computed (the table's); missing ones are
            computed here (:func:`paired_p`).
    """
    path = Path(path)
    width = max(3.5, 0.8 * len(labels) + 1.5)
    fig, axes = plt.subplots(1, len(metrics), figsize=(width * len(metrics), 4.8), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        values = {label: seed_values(records_by_label.get(label, ()), metric) for label in labels}
        _draw_seeds(ax, values, labels, baseline)
        if baseline is not None:
            _draw_pvalues(ax, values, labels, baseline, metric, pvalues or {}, alpha)
        _label_axes(ax, labels, baseline, metric_name(metric))
    fig.legend(handles=_legend_handles(baseline), loc="lower center", ncol=3, fontsize=8, frameon=False)
    fig.suptitle(_figure_title(title, baseline, alpha, failed_runs(records_by_label)), fontsize=9)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    with atomic_open(path, "wb") as fh:  # beside table.md, written as atomically
        fig.savefig(fh, format="png", dpi=100)
    plt.close(fig)
    return path


def _draw_seeds(
    ax: Axes, values: Mapping[str, Mapping[int, float]], labels: Sequence[str], baseline: str | None
) -> None:
    """Dots per seed (spread sideways, in seed order) and mean ± CI per model; baseline mean dashed."""
    for x, label in enumerate(labels):
        ys = [values[label][seed] for seed in sorted(values[label])]
        color = BASE_COLOR if label == baseline else MODEL_COLOR
        offsets = np.linspace(-0.18, 0.18, len(ys)) if len(ys) > 1 else np.zeros(len(ys))
        ax.scatter(x + offsets, ys, s=16, color=color, alpha=0.65, zorder=2)
        ci = mean_ci(ys)
        if ci.n == 0:
            where = blended_transform_factory(ax.transData, ax.transAxes)
            ax.text(x, 0.5, "no finished run", rotation=90, ha="center", va="center", fontsize=7, transform=where)
            continue
        ax.errorbar(x, ci.mean, yerr=ci.half_width, fmt="_", color="black", markersize=16, mew=2, capsize=5, zorder=3)
    base = values.get(baseline or "") or {}
    if base:
        ax.axhline(mean_ci(list(base.values())).mean, color=BASE_COLOR, linestyle="--", linewidth=1, zorder=1)


def _draw_pvalues(
    ax: Axes,
    values: Mapping[str, Mapping[int, float]],
    labels: Sequence[str],
    baseline: str,
    metric: str,
    pvalues: Mapping[str, Mapping[str, float]],
    alpha: float,
) -> None:
    """``p=<value>`` at the top of each non-baseline model's column (bold when p < ``alpha``)."""
    low, high = ax.get_ylim()
    ax.set_ylim(low, high + 0.15 * (high - low))  # room for the p values above the dots
    where = blended_transform_factory(ax.transData, ax.transAxes)
    for x, label in enumerate(labels):
        if label == baseline:
            continue
        p = pvalues.get(label, {}).get(metric)
        if p is None:
            p = paired_p(values[label], values[baseline])
        text = f"p={p:.2g}" if math.isfinite(p) else "p n/a"
        weight = "bold" if math.isfinite(p) and p < alpha else "normal"
        ax.text(x, 0.98, text, ha="center", va="top", fontsize=7, fontweight=weight, transform=where)


def _label_axes(ax: Axes, labels: Sequence[str], baseline: str | None, name: str) -> None:
    """Models on the x axis (the baseline's label bold, with "(baseline)"), the metric on y."""
    ticks = [f"{label} (baseline)" if label == baseline else label for label in labels]
    ax.set_xticks(range(len(labels)), ticks, rotation=30, ha="right", fontsize=8)
    for tick, label in zip(ax.get_xticklabels(), labels):
        if label == baseline:
            tick.set_fontweight("bold")
    ax.set_xlim(-0.6, len(labels) - 0.4)
    ax.set_ylabel(f"test {name}")
    ax.set_title(name, fontsize=10)
    ax.grid(axis="y", alpha=0.3)


def _legend_handles(baseline: str | None) -> list[Line2D]:
    handles = [
        Line2D([], [], marker="o", linestyle="", color=MODEL_COLOR, alpha=0.65, label="one seed"),
        Line2D(
            [], [], marker="_", markersize=12, mew=2, color="black", label=f"mean ± {CONFIDENCE:.0%} CI (t, n-1 dof)"
        ),
    ]
    if baseline is not None:
        handles.append(Line2D([], [], color=BASE_COLOR, linestyle="--", label=f"{baseline} (baseline) mean"))
    return handles


def _figure_title(title: str, baseline: str | None, alpha: float, failed: Sequence[str]) -> str:
    lines = [title] if title else []
    if baseline is not None:
        lines.append(f"p: paired t-test against {baseline} (two-sided, pairs = same seed); bold: p < {alpha:g}")
    if failed:
        shown = ", ".join(failed[:6]) + (f" and {len(failed) - 6} more" if len(failed) > 6 else "")
        lines.append(f"left out (failed): {shown}")
    return "\n".join(lines)


# ------------------------------------------------------------------------------ the seed figure again, from a CSV
#: columns that may name the model in a runs CSV, the first present is taken
LABEL_COLUMNS = ("model", "arm", "le")


@dataclass
class SeedFigureOptions:
    """Options of ``python -m recbole_lea.experiments.plots`` (the seed figure from a runs CSV)."""

    runs: str | None = opt(
        None,
        "runs CSV: run_compare_lea.py's runs.csv or a docs/results/*-runs.csv (one row per model x seed)",
        required=True,
        metavar="CSV",
    )
    baseline: str | None = opt(None, "model the paired t-tests compare against (its mean is the dashed line)")
    metrics: list[str] = opt(
        list(SEED_FIGURE_METRICS),
        "metrics to draw, one panel each: lower-case keys, read from the column test_<key> or <key>",
        metavar="METRIC",
    )
    out: str | None = opt(None, "PNG to write (default: beside the CSV, its name with runs -> seeds)")
    label_column: str | None = opt(
        None, f"CSV column naming the model (default: the first of {', '.join(LABEL_COLUMNS)})"
    )
    title: str | None = opt(None, "title of the figure (default: the CSV's file name)")
    alpha: float = opt(0.01, "p values below this are written in bold", gt=0, lt=1)


def read_runs_csv(
    path: Path, metrics: Sequence[str], label_column: str | None = None
) -> tuple[dict[str, list[dict[str, Any]]], list[str]]:
    """(run records by label, the labels in file order) of a runs CSV. A metric's column is
    ``test_<metric>`` (run_compare_lea.py's runs.csv) or ``<metric>``; a ``status`` column,
    when there is one, tells failed runs (an empty cell: the run lacks that metric)."""
    if not path.is_file():
        raise ConfigError(f"--runs {path}: no such file; give a runs CSV (runs.csv or docs/results/*-runs.csv).")
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        rows = list(reader)
    header = list(reader.fieldnames or [])
    if not rows:
        raise ConfigError(f"--runs {path}: no run in it (a header and one row per model x seed are expected).")
    label_key = _label_column(path, header, label_column)
    columns = {metric: _metric_column(path, header, metric) for metric in metrics}
    if "seed" not in header:
        raise ConfigError(f"--runs {path}: no `seed` column (columns: {', '.join(header)}).")
    by_label: dict[str, list[dict[str, Any]]] = {}
    for line, row in enumerate(rows, start=2):
        record = _csv_record(path, line, row, columns)
        runs = by_label.setdefault(str(row[label_key]), [])
        if record["status"] == "ok" and any(r["status"] == "ok" and r["seed"] == record["seed"] for r in runs):
            raise ConfigError(
                f"--runs {path}, line {line}: {row[label_key]} has seed {record['seed']} twice; "
                "choose the column that tells these runs apart with --label_column."
            )
        runs.append(record)
    return by_label, list(by_label)


def _label_column(path: Path, header: Sequence[str], wanted: str | None) -> str:
    if wanted is not None and wanted not in header:
        raise ConfigError(f"--label_column {wanted!r} is not a column of {path}: choose one of {', '.join(header)}.")
    found = wanted or next((c for c in LABEL_COLUMNS if c in header), None)
    if found is None:
        raise ConfigError(
            f"--runs {path}: none of the columns {', '.join(LABEL_COLUMNS)}; name one with --label_column."
        )
    return found


def _metric_column(path: Path, header: Sequence[str], metric: str) -> str:
    for column in (f"test_{metric}", metric):
        if column in header:
            return column
    known = sorted({c.removeprefix("test_") for c in header if "@" in c})
    raise ConfigError(
        f"--metrics {metric!r} is not in {path}: choose among {', '.join(known) or '(no metric column)'}."
    )


def _csv_record(path: Path, line: int, row: Mapping[str, str], columns: Mapping[str, str]) -> dict[str, Any]:
    """One run record (``seed``, ``status``, ``test_result``) of a CSV row."""
    try:
        seed = int(float(row["seed"]))
        result = {metric: float(row[col]) for metric, col in columns.items() if (row.get(col) or "").strip()}
    except ValueError as err:
        raise ConfigError(f"--runs {path}, line {line}: not a number ({err}).") from None
    return {"seed": seed, "status": row.get("status") or "ok", "test_result": result, "error": row.get("error")}


def default_figure_path(runs: Path) -> Path:
    """``x-runs.csv`` -> ``x-seeds.png``, ``runs.csv`` -> ``seeds.png`` (beside ``table.md``)."""
    stem = runs.stem
    name = stem[: -len("runs")] + "seeds" if stem.endswith("runs") else f"{stem}-seeds"
    return runs.with_name(name + ".png")


def redraw_seed_figure(options: SeedFigureOptions) -> Path:
    """The seed figure of a runs CSV, written to ``options.out`` (bad input: :class:`ConfigError`)."""
    runs = Path(str(options.runs))
    records, labels = read_runs_csv(runs, options.metrics, options.label_column)
    if options.baseline is not None and options.baseline not in labels:
        raise ConfigError(
            f"--baseline {options.baseline!r} is not a model of {runs}: choose one of {', '.join(labels)}."
        )
    out = Path(options.out) if options.out else default_figure_path(runs)
    title = options.title if options.title is not None else runs.stem
    return plot_seed_comparison(records, labels, options.baseline, options.metrics, out, title, alpha=options.alpha)


def main(argv: list[str] | None = None) -> int:
    """``python -m recbole_lea.experiments.plots``: bad input is one message and exit status 2."""
    parser = command_parser(
        SeedFigureOptions,
        "python -m recbole_lea.experiments.plots",
        "Draw a comparison's seed figure (seeds as dots, mean ± 95% t interval, paired t-test p against the "
        "baseline) again from its runs CSV.",
    )
    try:
        path = redraw_seed_figure(build(SeedFigureOptions, vars(parser.parse_args(argv)), "the command line"))
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"seed figure: {path}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
