"""Intervals and tests over repeats (seeds, splits): the Student-t interval of a mean and the paired t-test.

Both come from scipy (`scipy.stats.t`, `scipy.stats.ttest_1samp`); scikit-learn depends on scipy, so it is always
installed with kmtl.
"""

from __future__ import annotations

import math

import numpy as np

CONFIDENCE = 0.95


def mean_interval(values, confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """Mean and two-sided Student-t confidence interval of the mean of `values` (independent repeats).

    `mean ± t_{(1+c)/2, n-1} s / sqrt(n)`, with `s` the sample standard deviation. One value: the interval is
    `(nan, nan)`; no value or a NaN among them: all NaN.

    Args:
        values: sequence of float.
        confidence: float in (0, 1).

    Returns:
        `(mean, low, high)`.

    Example:

    >>> tuple(round(v, 4) for v in mean_interval([1.0, 2.0, 3.0]))
    (2.0, -0.4841, 4.4841)
    """
    from scipy import stats

    values = np.asarray(values, dtype=np.float64).reshape(-1)
    if values.size == 0 or np.isnan(values).any():
        return math.nan, math.nan, math.nan
    mean = float(values.mean())
    if values.size == 1:
        return mean, math.nan, math.nan
    half = float(stats.t.ppf((1 + confidence) / 2, values.size - 1) * values.std(ddof=1) / math.sqrt(values.size))
    return mean, mean - half, mean + half


def paired_p_value(differences) -> float:
    """Two-sided p-value of the paired t-test that the mean of paired `differences` is 0.

    The paired t-test of `a` against `b` is the one-sample t-test of `a - b` (`scipy.stats.ttest_rel(a, b)` equals
    `scipy.stats.ttest_1samp(a - b, 0)`); here the differences are given. NaN with fewer than two differences or a
    NaN among them; 1 when all differences are 0 and 0 when they are equal and not 0 (no spread).

    Example:

    >>> round(paired_p_value([0.1, 0.2, 0.15, 0.12]), 4)
    0.0072
    """
    from scipy import stats

    differences = np.asarray(differences, dtype=np.float64).reshape(-1)
    if differences.size < 2 or np.isnan(differences).any():
        return math.nan
    if np.all(differences == differences[0]):
        return 1.0 if differences[0] == 0 else 0.0
    return float(stats.ttest_1samp(differences, 0.0).pvalue)


def excludes_zero(low: float, high: float) -> bool:
    """Whether a finite interval `[low, high]` lies wholly above or below zero."""
    return bool(math.isfinite(low) and math.isfinite(high) and (low > 0 or high < 0))
