"""docs/reproduction.md cannot drift from the run records it cites.

Every figure of the page that is a Markdown link to a ``*-runs.csv`` (or ``*-trials.csv``) file
carries, in the link title, what it is; the figure is recomputed here from that file:

- ``[0.0685](results/X-runs.csv "mean of 5: ndcg@10, SA2C")``: the mean over the rows (seeds) of
  arm/model ``SA2C`` of metric ``ndcg@10``, rounded to the page's decimals; the row count must be 5;
- ``[0.043](results/X-runs.csv "paired p of 5: ndcg@10, SA2C_LEA(LEASR) vs SA2C")``: the two-sided
  paired t-test (scipy.stats.ttest_rel, pairs = same seed, as run_compare_lea.py) of the two arms,
  to two significant digits;
- in a file without an arm/model column (a sweep's trials) the label is ``col=value, col=value``.

A figure that links a Markdown study is checked to appear in that study; every link must resolve.
"""

from __future__ import annotations

import csv
import math
import re
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "reproduction.md"
LABEL_COLUMNS = ("arm", "model", "le")
FIGURE = re.compile(r"\[(?P<text>[^\]]+)\]\((?P<target>[^)\s]+)(?:\s+\"(?P<title>[^\"]*)\")?\)")
NUMBER = re.compile(r"^[+-]?\d[\d,]*(?:\.\d+)?(?:e-?\d+)?%?$")
MEAN = re.compile(r"^mean of (?P<n>\d+): (?P<metric>[^,\s]+), (?P<label>.+)$")
PAIRED = re.compile(r"^paired p of (?P<n>\d+): (?P<metric>[^,\s]+), (?P<a>.+?) vs (?P<b>.+)$")


@cache
def read_rows(path: Path) -> tuple[dict[str, str], ...]:
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return tuple(r for r in rows if r.get("status", "ok").strip().lower() == "ok")


def _label_column(rows: tuple[dict[str, str], ...]) -> str | None:
    return next((c for c in LABEL_COLUMNS if rows and c in rows[0]), None)


def select(path: Path, label: str) -> list[dict[str, str]]:
    """The rows of one arm (``label`` is the arm/model/le cell, or ``col=value, ...`` in a sweep)."""
    rows = read_rows(path)
    column = _label_column(rows)
    if column is not None:
        return [r for r in rows if r[column] == label]
    wanted = dict(part.split("=", 1) for part in label.split(", "))
    return [r for r in rows if all(math.isclose(float(r[k]), float(v)) for k, v in wanted.items())]


def metric_of(row: dict[str, str], metric: str) -> float:
    for column in (metric, f"test_{metric}"):
        if column in row:
            return float(row[column])
    raise KeyError(f"no column {metric!r} or 'test_{metric}' (columns: {sorted(row)})")


def mean_of(path: Path, label: str, metric: str) -> tuple[float, int]:
    rows = select(path, label)
    assert rows, f"{path.name}: no rows labelled {label!r}"
    values = [metric_of(r, metric) for r in rows]
    return sum(values) / len(values), len(values)


def paired_p(path: Path, label_a: str, label_b: str, metric: str) -> tuple[float, int]:
    from scipy.stats import ttest_rel

    a = {r["seed"]: metric_of(r, metric) for r in select(path, label_a)}
    b = {r["seed"]: metric_of(r, metric) for r in select(path, label_b)}
    seeds = sorted(set(a) & set(b))
    assert len(seeds) >= 2, f"{path.name}: {label_a!r} and {label_b!r} share {len(seeds)} seeds"
    return float(ttest_rel([a[s] for s in seeds], [b[s] for s in seeds]).pvalue), len(seeds)


def same_rounding(page: str, value: float) -> bool:
    decimals = len(page.split(".", 1)[1]) if "." in page else 0
    return f"{value:.{decimals}f}" == page


def two_significant(page: str, value: float) -> bool:
    return math.isclose(float(page), float(f"{value:.2g}"), rel_tol=1e-9)


def figures(text: str) -> list[tuple[str, str, str | None]]:
    return [(m["text"], m["target"], m["title"]) for m in FIGURE.finditer(text)]


def recomputed(page_text: str, target: Path, title: str | None) -> tuple[bool, str]:
    """(whether the page's figure equals what the file gives, the recomputed value in words)."""
    title = title or ""
    if m := MEAN.match(title):
        value, n = mean_of(target, m["label"], m["metric"])
        ok = n == int(m["n"]) and same_rounding(page_text, value)
        return ok, f"{value:.6f} over {n} rows"
    if m := PAIRED.match(title):
        value, n = paired_p(target, m["a"], m["b"], m["metric"])
        ok = n == int(m["n"]) and two_significant(page_text, value)
        return ok, f"{value:.3g} over {n} seeds"
    raise AssertionError(f"unreadable figure title {title!r}")


def page_figures() -> list[tuple[str, Path, str | None]]:
    if not PAGE.is_file():  # test_page_exists_and_is_short says so
        return []
    text = PAGE.read_text(encoding="utf-8")
    return [(t, (PAGE.parent / target.split("#", 1)[0]).resolve(), title) for t, target, title in figures(text)]


def csv_figures() -> list[tuple[str, Path, str]]:
    return [(t, p, title) for t, p, title in page_figures() if p.suffix == ".csv"]


def test_page_exists_and_is_short() -> None:
    lines = PAGE.read_text(encoding="utf-8").splitlines()
    # one page: the 10 claims, C5 (claim 4), C6 (tuned baselines, two sets) and C9 with their figures
    assert 50 < len(lines) <= 270, f"docs/reproduction.md has {len(lines)} lines"


def test_every_link_of_the_page_resolves() -> None:
    text = PAGE.read_text(encoding="utf-8")
    missing = [
        target
        for _, target, _ in figures(text)
        if not re.match(r"^[a-z][a-z0-9+.-]*:|^#", target) and not (PAGE.parent / target.split("#", 1)[0]).exists()
    ]
    assert not missing, f"docs/reproduction.md links missing files: {missing}"


def test_every_csv_figure_says_what_it_is() -> None:
    found = csv_figures()
    assert len(found) >= 60, f"only {len(found)} figures cite a runs CSV"
    bad = [(t, p.name, title) for t, p, title in found if not (NUMBER.match(t) and title)]
    assert not bad, f"figures linking a CSV need a number and a title: {bad}"


@pytest.mark.parametrize("text,target,title", [pytest.param(*f, id=f"{f[1].name}: {f[2]}") for f in csv_figures()])
def test_csv_figure_is_recomputed_from_its_file(text: str, target: Path, title: str) -> None:
    ok, what = recomputed(text, target, title)
    assert ok, f"{text} ({target.name}: {title}) recomputes to {what}"


def test_study_figures_appear_in_their_study() -> None:
    wrong = []
    for text, target, _ in page_figures():
        if target.suffix == ".md" and NUMBER.match(text) and text not in target.read_text(encoding="utf-8"):
            wrong.append(f"{text} not in {target.name}")
    assert not wrong, "\n".join(wrong)


def test_an_edited_figure_is_caught() -> None:
    """The check is not vacuous: one digit changed in a mean or a p value fails it."""
    text, target, title = next(f for f in csv_figures() if f[2].startswith("mean"))
    digit = text[-1]
    edited = text[:-1] + str((int(digit) + 1) % 10)
    assert recomputed(text, target, title)[0] and not recomputed(edited, target, title)[0]
    text, target, title = next(f for f in csv_figures() if f[2].startswith("paired"))
    assert recomputed(text, target, title)[0] and not recomputed(text.replace("0.", "0.9", 1), target, title)[0]


def test_summary_gives_a_verdict_per_claim() -> None:
    rows = [line for line in PAGE.read_text(encoding="utf-8").splitlines() if re.match(r"^\| \d+ \|", line)]
    claims = [int(line.split("|")[1]) for line in rows]
    assert claims == list(range(1, 11)), f"summary rows: {claims}"
    verdicts = ("holds", "not shown", "contradicted", "not run")
    vague = [line[:60] for line in rows if not any(f"**{v}" in line for v in verdicts)]
    assert not vague, f"summary rows without a verdict: {vague}"


def test_label_selection_reads_both_run_formats() -> None:
    results = ROOT / "docs" / "results"
    value, n = mean_of(results / "ml-100k-seq-lea-runs.csv", "SA2C", "ndcg@10")  # model, test_* columns
    other, m = mean_of(results / "ml-100k-seq-ablation-runs.csv", "SA2C", "ndcg@10")  # arm, bare columns
    assert (n, m) == (5, 5) and f"{value:.4f}" == f"{other:.4f}"
    sweep, one = mean_of(results / "ml-100k-w_ah-w_aq-trials.csv", "w_ah=0.1, w_aq=0.01", "valid_ndcg@10")
    assert one == 1 and sweep == pytest.approx(0.0522)
