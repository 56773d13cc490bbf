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


def seeded_difference(a: np.ndarray, b: np.ndarray, patients: Sequence[str], resamples: int = 2000,
                      confidence: float = 0.95, seed: int = 0) -> Interval:
    """``a - b`` for two presets trained with several seeds each: ``a`` (seeds of a, slices) and ``b``
    (seeds of b, slices) on the same test slices of ``patients``. The estimate is the mean over patients
    of (a's seed mean - b's seed mean) per patient. The interval resamples both sources of spread: the
    patients (paired, as both presets saw the same ones) and, independently, each preset's seeds, so it
    widens when a seed's luck decides the difference (a percentile bootstrap; with 2 seeds it is coarse).
    A preset with one seed adds no seed spread: its luck is unknown, and the interval is too narrow."""
    x, y = np.atleast_2d(np.asarray(a, dtype=np.float64)), np.atleast_2d(np.asarray(b, dtype=np.float64))
    if x.shape[1] != y.shape[1] or x.shape[1] != len(patients) or x.shape[1] == 0:
        raise ValueError(f"need (seeds, slices) arrays on the same {len(patients)} slices, got {x.shape} and {y.shape}")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("seeded difference: the values hold NaN or infinite values")
    # (seeds, patients): each seed's mean over each patient's slices
    px, py = (np.array([list(group_means(row, patients).values()) for row in z]) for z in (x, y))
    n_patients = px.shape[1]
    rng = np.random.default_rng(seed)
    drawn_patients = rng.integers(0, n_patients, size=(resamples, n_patients))
    seeds_x = rng.integers(0, len(px), size=(resamples, len(px)))
    seeds_y = rng.integers(0, len(py), size=(resamples, len(py)))
    # (resamples, patients): each resample's seed mean per patient, then its drawn patients
    mean_x = px[seeds_x].mean(axis=1)
    mean_y = py[seeds_y].mean(axis=1)
    rows = np.arange(resamples)[:, None]
    diffs = (mean_x[rows, drawn_patients] - mean_y[rows, drawn_patients]).mean(axis=1)
    tail = (1 - confidence) / 2
    low, high = np.quantile(diffs, [tail, 1 - tail])
    return Interval(float((px.mean(axis=0) - py.mean(axis=0)).mean()), float(low), float(high), n_patients)
