"""Pictures of runs and sweeps (matplotlib, Agg backend; no display needed)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

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
