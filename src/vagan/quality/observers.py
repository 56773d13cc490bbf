"""Model observers for low-contrast detectability: the channelized Hotelling observer (CHO) with
Laguerre–Gauss channels and the non-prewhitening matched filter with an eye filter (NPWE), each
trained on one half of the realisations and tested on the other, with AUC, d' and bootstrap
intervals (Barrett & Myers 2004, ch. 13-14; FDA LCD-CT toolbox; docs/quality.md).

Images are ROIs ``(K, N, N)`` centred on the known lesion position: signal-present and
signal-absent realisations with independent noise.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import special

from vagan.study.stats import Interval

ObserverName = Literal["cho", "npwe"]
MIN_PER_CLASS_PER_CHANNEL = 5
"""A CHO needs at least this many training images per class per channel (its covariance estimate)."""


def laguerre_gauss_channels(size: int, n_channels: int, width_px: float) -> np.ndarray:
    """Rotationally symmetric Laguerre–Gauss channels ``(J, N, N)`` centred on the ROI:
    ``u_j(r) = (√2 / a) exp(−π r² / a²) L_j(2π r² / a²)`` with ``a = width_px``."""
    if n_channels < 1:
        raise ValueError(f"n_channels must be >= 1, got {n_channels}")
    if not width_px > 0:
        raise ValueError(f"channel width must be > 0 pixels, got {width_px}")
    c = (size - 1) / 2
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    g = 2 * math.pi * ((x - c) ** 2 + (y - c) ** 2) / width_px**2
    return np.stack([math.sqrt(2) / width_px * np.exp(-g / 2) * special.eval_laguerre(j, g)
                     for j in range(n_channels)])


def eye_filter(size: int, pixel_mm: float, peak_cycles_per_degree: float = 4.0,
               viewing_distance_mm: float = 500.0, zoom: float = 1.0) -> np.ndarray:
    """Burgess's eye filter ``E(f) = f^1.3 exp(−c f²)`` on the ROI's DFT grid, peaking at
    ``peak_cycles_per_degree`` for an image viewed at ``viewing_distance_mm`` (1.3/(2c) = f_peak²)."""
    f_mm = np.hypot(*np.meshgrid(np.fft.fftfreq(size, d=pixel_mm), np.fft.fftfreq(size, d=pixel_mm),
                                 indexing="ij"))
    mm_per_degree = viewing_distance_mm * math.tan(math.radians(1.0)) / zoom
    f_deg = f_mm * mm_per_degree
    c = 1.3 / (2 * peak_cycles_per_degree**2)
    return f_deg**1.3 * np.exp(-c * f_deg**2)


@dataclass(frozen=True)
class Detectability:
    """An observer's result on the test half: AUC and d' with bootstrap intervals."""

    observer: ObserverName
    auc: Interval
    d_prime: Interval
    n_train: int  # per class
    n_test: int  # per class


def auc(present: np.ndarray, absent: np.ndarray) -> float:
    """The area under the ROC curve: P(t_present > t_absent) + ½ P(tie) (Mann–Whitney)."""
    t1, t0 = np.asarray(present, np.float64), np.asarray(absent, np.float64)
    both = np.concatenate([t0, t1])
    order = np.argsort(both, kind="mergesort")
    ranks = np.empty(both.size)
    sorted_vals = both[order]
    # average ranks over ties
    _, first, counts = np.unique(sorted_vals, return_index=True, return_counts=True)
    avg = first + (counts - 1) / 2 + 1
    ranks[order] = np.repeat(avg, counts)
    u = ranks[t0.size:].sum() - t1.size * (t1.size + 1) / 2
    return float(u / (t1.size * t0.size))


def d_prime(present: np.ndarray, absent: np.ndarray) -> float:
    """d' = (<t_present> − <t_absent>) / sqrt(½ (var_present + var_absent))."""
    t1, t0 = np.asarray(present, np.float64), np.asarray(absent, np.float64)
    pooled = 0.5 * (t1.var(ddof=1) + t0.var(ddof=1))
    diff = t1.mean() - t0.mean()
    if pooled <= 0:
        return math.copysign(math.inf, diff) if diff else 0.0
    return float(diff / math.sqrt(pooled))


def _check_sets(present: np.ndarray, absent: np.ndarray, n_train: int | None, minimum: int,
                what: str) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """``((train_present, train_absent), (test_present, test_absent))``: the first ``n_train`` ROIs of
    each class train (default: half), the rest test; each part must hold ``minimum`` ROIs."""
    p, a = np.asarray(present, np.float64), np.asarray(absent, np.float64)
    if p.ndim != 3 or a.ndim != 3 or p.shape[1:] != a.shape[1:] or p.shape[1] != p.shape[2]:
        raise ValueError(f"observer ROIs must be square stacks (K, N, N) of one size, got {p.shape} and {a.shape}")
    k = n_train if n_train is not None else min(p.shape[0], a.shape[0]) // 2
    have = min(k, p.shape[0] - k, a.shape[0] - k)
    if have < minimum:
        raise ValueError(f"{what} needs at least {minimum} realisations per class in each half "
                         f"({2 * minimum} signal-present and {2 * minimum} signal-absent), got "
                         f"{p.shape[0]} and {a.shape[0]}")
    return (p[:k], a[:k]), (p[k:], a[k:])


def cho_template(present: np.ndarray, absent: np.ndarray, channels: np.ndarray) -> np.ndarray:
    """The CHO's image-domain template ``U S⁻¹ (v̄₁ − v̄₀)`` from training ROIs (Barrett & Myers eq. 14.93)."""
    u = channels.reshape(channels.shape[0], -1)
    v1 = present.reshape(present.shape[0], -1) @ u.T
    v0 = absent.reshape(absent.shape[0], -1) @ u.T
    s = 0.5 * (np.cov(v1, rowvar=False, ddof=1) + np.cov(v0, rowvar=False, ddof=1))
    s = np.atleast_2d(s)
    w = np.linalg.lstsq(s, v1.mean(axis=0) - v0.mean(axis=0), rcond=None)[0]  # a singular S (no noise) is no error
    return (w @ u).reshape(channels.shape[1:])


def radial_symmetrise(image: np.ndarray, bin_px: float = 0.5) -> np.ndarray:
    """Average ``image`` over rings of ``bin_px`` about the ROI centre: the expected signal of a
    round lesion is rotationally symmetric, so this removes most of the noise of its estimate."""
    n = image.shape[0]
    c = (n - 1) / 2
    y, x = np.mgrid[0:n, 0:n]
    index = np.floor(np.hypot(y - c, x - c) / bin_px).astype(np.int64)
    sums = np.bincount(index.ravel(), weights=image.ravel())
    counts = np.bincount(index.ravel())
    return (sums / np.maximum(counts, 1))[index]


def blurred_disc(size: int, radius_px: float, amplitude: float, blur_px: float) -> np.ndarray:
    """A disc of ``radius_px`` centred on the ROI, its edge blurred by a Gaussian of ``blur_px``."""
    c = (size - 1) / 2
    y, x = np.mgrid[0:size, 0:size]
    r = np.hypot(y - c, x - c)
    return amplitude * 0.5 * special.erfc((r - radius_px) / (math.sqrt(2) * max(blur_px, 1e-3)))


def fit_disc(signal: np.ndarray, radius_px: float) -> np.ndarray:
    """The blurred disc of known radius closest (least squares) to an estimated mean signal: a
    noise-free model of what the method did to the lesion (its contrast and its blur)."""
    best = None
    for blur in np.linspace(0.3, max(2.0, radius_px), 24):
        shape = blurred_disc(signal.shape[0], radius_px, 1.0, blur)
        amplitude = float((shape * signal).sum() / (shape * shape).sum())
        error = float(((signal - amplitude * shape) ** 2).sum())
        if best is None or error < best[0]:
            best = (error, amplitude * shape)
    return best[1]


def npwe_template(present: np.ndarray, absent: np.ndarray, eye: np.ndarray | None,
                  disc_radius_px: float | None = None) -> np.ndarray:
    """The NPW(E) template: the mean signal, filtered twice by the eye filter when one is given.

    The mean signal is the training halves' mean difference made rotationally symmetric (the
    lesions are round); with ``disc_radius_px`` it is replaced by the blurred disc of that radius
    that fits it best. The eye filter weights the high frequencies, where an estimate's noise
    dominates a low-contrast signal; the fitted model has none.
    """
    signal = radial_symmetrise(present.mean(axis=0) - absent.mean(axis=0))
    if disc_radius_px is not None:
        signal = fit_disc(signal, disc_radius_px)
    if eye is None:
        return signal
    return np.real(np.fft.ifft2(np.fft.fft2(signal) * eye**2))


def _score(template: np.ndarray, rois: np.ndarray) -> np.ndarray:
    return rois.reshape(rois.shape[0], -1) @ template.ravel()


def detectability(present: np.ndarray, absent: np.ndarray, observer: ObserverName, *, pixel_mm: float = 1.0,
                  n_channels: int = 5, channel_width_px: float | None = None, eye: bool = True,
                  disc_radius_px: float | None = None, n_train: int | None = None, resamples: int = 2000,
                  confidence: float = 0.95, seed: int = 0) -> Detectability:
    """Train ``observer`` on the first ``n_train`` ROIs of each class (default: half) and score the rest.

    ROIs of one scan must not straddle the split: pass ``n_train`` = (scans for training) x (ROIs per scan).

    ``disc_radius_px``: the lesions are discs of that radius; the NPWE's signal is a fitted blurred disc.
    The intervals come from resampling the test scores of each class (the template fixed), so they
    cover the test sample's variability, not the training's.
    """
    if observer == "cho":
        minimum = MIN_PER_CLASS_PER_CHANNEL * n_channels
        train, test = _check_sets(present, absent, n_train, minimum, f"a CHO with {n_channels} channels")
        size = train[0].shape[1]
        width = channel_width_px if channel_width_px is not None else size / 4
        template = cho_template(*train, laguerre_gauss_channels(size, n_channels, width))
    elif observer == "npwe":
        train, test = _check_sets(present, absent, n_train, 2, "an NPWE observer")
        e = eye_filter(train[0].shape[1], pixel_mm) if eye else None
        template = npwe_template(*train, e, disc_radius_px)
    else:
        raise ValueError(f"observer must be 'cho' or 'npwe', got {observer!r}")
    t1, t0 = _score(template, test[0]), _score(template, test[1])
    auc_i = _bootstrap(auc, t1, t0, resamples, confidence, seed)
    d_i = _bootstrap(d_prime, t1, t0, resamples, confidence, seed)
    return Detectability(observer, auc_i, d_i, n_train=train[0].shape[0], n_test=int(min(t1.size, t0.size)))


def _bootstrap(stat: Callable[[np.ndarray, np.ndarray], float], t1: np.ndarray, t0: np.ndarray,
               resamples: int, confidence: float, seed: int) -> Interval:
    rng = np.random.default_rng(seed)
    values = np.array([stat(t1[rng.integers(0, t1.size, t1.size)], t0[rng.integers(0, t0.size, t0.size)])
                       for _ in range(resamples)])
    values = values[np.isfinite(values)]
    tail = (1 - confidence) / 2
    low, high = np.quantile(values, [tail, 1 - tail]) if values.size else (math.nan, math.nan)
    return Interval(stat(t1, t0), float(low), float(high), int(min(t1.size, t0.size)))
