"""The statistics of a study: per-patient means with bootstrap intervals, paired differences over
test slices with a paired test, and verdicts on the paper's orderings (docs/study.md).

Everything here works on plain arrays so that it can be checked against known answers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

Verdict = Literal["held", "reversed", "not resolved"]


@dataclass(frozen=True)
class Interval:
    """A point estimate with a two-sided bootstrap confidence interval (percentile method)."""

    estimate: float
    low: float
    high: float
    n: int  # the number of units resampled (patients or slices)

    def format(self, decimals: int) -> str:
        return f"{self.estimate:.{decimals}f} [{self.low:.{decimals}f}, {self.high:.{decimals}f}]"


@dataclass(frozen=True)
class PairedDifference:
    """``a - b`` over paired units: the mean difference with its interval and a paired test."""

    difference: Interval
    p_value: float  # Wilcoxon signed-rank, two-sided (1.0 when every difference is 0)
    wins: int  # units where a > b
    losses: int  # units where a < b

    @property
    def verdict(self) -> Verdict:
        """``held`` when the interval lies above 0, ``reversed`` below 0, else ``not resolved``."""
        if self.difference.low > 0:
            return "held"
        if self.difference.high < 0:
            return "reversed"
        return "not resolved"


def bootstrap_mean(values: Sequence[float] | np.ndarray, resamples: int = 2000, confidence: float = 0.95,
                   seed: int = 0) -> Interval:
    """Mean of ``values`` with the percentile bootstrap interval of the mean (resampling the values)."""
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"bootstrap needs a non-empty 1-D sample, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("bootstrap sample holds NaN or infinite values")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(resamples, x.size))].mean(axis=1)
    tail = (1 - confidence) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return Interval(float(x.mean()), float(low), float(high), int(x.size))


def group_means(values: Sequence[float] | np.ndarray, groups: Sequence[str]) -> dict[str, float]:
    """Mean of ``values`` per group label (e.g. per patient), in order of first appearance."""
    x = np.asarray(values, dtype=np.float64)
    if len(groups) != x.size:
        raise ValueError(f"{x.size} values but {len(groups)} group labels")
    out: dict[str, list[float]] = {}
    for value, group in zip(x, groups):
        out.setdefault(group, []).append(float(value))
    return {g: float(np.mean(v)) for g, v in out.items()}


def patient_interval(values: Sequence[float] | np.ndarray, patients: Sequence[str], resamples: int = 2000,
                     confidence: float = 0.95, seed: int = 0) -> Interval:
    """The mean of per-patient means, with a bootstrap interval over patients (slices of one patient
    are not independent, so the patient is the unit)."""
    return bootstrap_mean(list(group_means(values, patients).values()), resamples, confidence, seed)


def paired_difference(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray, resamples: int = 2000,
                      confidence: float = 0.95, seed: int = 0) -> PairedDifference:
    """``a - b`` over paired units (the same test slices): bootstrap interval and Wilcoxon signed-rank test."""
    from scipy.stats import wilcoxon

    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.shape != y.shape:
        raise ValueError(f"paired samples differ in shape: {x.shape} vs {y.shape}")
    d = x - y
    if np.all(d == 0):
        p = 1.0
    else:
        p = float(wilcoxon(d, zero_method="wilcox", alternative="two-sided").pvalue)
    return PairedDifference(bootstrap_mean(d, resamples, confidence, seed), p, int((d > 0).sum()), int((d < 0).sum()))


def lowest(values: dict[str, float], candidate: str) -> Verdict:
    """``held`` when ``candidate`` has the lowest value of ``values`` (e.g. FID), else ``reversed``."""
    if candidate not in values or len(values) < 2:
        raise ValueError(f"need {candidate!r} and at least one other value, got {sorted(values)}")
    best = min(values.values())
    return "held" if values[candidate] == best else "reversed"
