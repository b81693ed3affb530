"""The statistics of comparison tables and figures, in one place: the paired t-test by seed."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def paired_pvalue(values: Sequence[float], base: Sequence[float]) -> float:
    """Two-sided paired t-test p-value; NaN with fewer than 2 pairs or zero variance of diffs.

    A constant difference (zero variance) has no t statistic: its p-value is NaN, never 0.0, so
    two seeds that happen to differ by the same amount are not starred significant."""
    from scipy.stats import ttest_rel

    a = np.asarray(values, dtype=float)
    b = np.asarray(base, dtype=float)
    if len(a) < 2 or len(a) != len(b):
        return float("nan")
    diff = a - b
    if np.allclose(diff, diff[0]):
        return float("nan")
    return float(ttest_rel(a, b).pvalue)
