"""Noise magnitude and texture: the 2-D noise power spectrum, its radial average and its
frequency summaries (ICRU Report 87 eq. 11.1; AAPM TG-233 section 4; docs/quality.md).

The NPS of square noise-only ROIs ``n_k`` (HU) of ``N x N`` pixels of size ``Δ`` mm is

    NPS(u, v) = Δ² / N² · < |DFT(n_k − trend_k)|² >_k        [HU² mm²]

so that its integral over the frequency plane equals the noise variance (Parseval), and white noise
of variance σ² has the flat spectrum σ² Δ². Noise-only ROIs come either from repeated noise
realisations of one object (:func:`ensemble_noise`, the NPS of a nonlinear denoiser at its operating
point) or from uniform regions of one image with a fitted trend removed (``detrend="poly2"``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

Detrend = Literal["mean", "poly2"]


@dataclass(frozen=True)
class RadialNPS:
    """The radially averaged NPS: ``values[i]`` [HU² mm²] at ``frequencies[i]`` [cycles/mm]."""

    frequencies: np.ndarray
    values: np.ndarray

    @property
    def mean_frequency(self) -> float:
        """f_av = ∫ f NPS(f) df / ∫ NPS(f) df (TG-233): lower for smoother (blotchier) noise; NaN without noise."""
        total = float(np.sum(self.values))
        return float(np.sum(self.frequencies * self.values)) / total if total > 0 else math.nan

    @property
    def peak_frequency(self) -> float:
        """f_peak: the frequency of the largest radial NPS value; NaN without noise."""
        if not np.any(self.values > 0):
            return math.nan
        return float(self.frequencies[int(np.argmax(self.values))])


@dataclass(frozen=True)
class NoisePowerSpectrum:
    """A 2-D NPS with zero frequency at ``[N // 2, N // 2]`` (``np.fft.fftshift`` order)."""

    values: np.ndarray  # (N, N) HU² mm²
    pixel_mm: float
    n_rois: int

    @property
    def size(self) -> int:
        return int(self.values.shape[0])

    @property
    def frequencies(self) -> np.ndarray:
        """Frequencies of each axis [cycles/mm], in the order of :attr:`values`."""
        return np.fft.fftshift(np.fft.fftfreq(self.size, d=self.pixel_mm))

    @property
    def variance(self) -> float:
        """∫∫ NPS du dv [HU²]: the noise variance of the (detrended) ROIs."""
        df = 1.0 / (self.size * self.pixel_mm)
        return float(self.values.sum() * df * df)

    @property
    def noise_std(self) -> float:
        return math.sqrt(self.variance)

    def radial(self) -> RadialNPS:
        """Average over annuli of width 1/(NΔ) from 0 up to the Nyquist frequency 1/(2Δ).

        Bin ``i`` holds the frequencies whose radius rounds to ``i / (NΔ)``; the zero-frequency
        bin, emptied by detrending, is left out.
        """
        f = self.frequencies
        fr = np.hypot(*np.meshgrid(f, f, indexing="ij"))
        df = 1.0 / (self.size * self.pixel_mm)
        index = np.rint(fr / df).astype(np.int64)
        n_bins = self.size // 2 + 1
        keep = index < n_bins
        sums = np.bincount(index[keep], weights=self.values[keep], minlength=n_bins)
        counts = np.bincount(index[keep], minlength=n_bins)
        bins = np.arange(1, n_bins)
        return RadialNPS(frequencies=bins * df, values=sums[bins] / counts[bins])


def ensemble_noise(realisations: np.ndarray) -> np.ndarray:
    """Noise of ``K`` realisations ``(K, H, W)`` of one object: each minus the ensemble mean, scaled
    by ``sqrt(K / (K − 1))`` so that its variance is unbiased."""
    x = np.asarray(realisations, dtype=np.float64)
    if x.ndim != 3 or x.shape[0] < 2:
        raise ValueError(f"ensemble noise needs at least 2 realisations (K, H, W), got shape {x.shape}")
    k = x.shape[0]
    return (x - x.mean(axis=0)) * math.sqrt(k / (k - 1))


def _poly2_design(n: int) -> np.ndarray:
    y, x = np.mgrid[0:n, 0:n].astype(np.float64) / max(n - 1, 1) - 0.5
    return np.stack([np.ones_like(x), x, y, x * x, x * y, y * y], axis=-1).reshape(n * n, 6)


def detrend_rois(rois: np.ndarray, detrend: Detrend) -> np.ndarray:
    """Subtract each ROI's mean (``"mean"``) or its least-squares 2nd-order surface (``"poly2"``,
    TG-233's choice for ROIs from one image, which removes cupping and slow shading)."""
    x = np.asarray(rois, dtype=np.float64)
    if detrend == "mean":
        return x - x.mean(axis=(1, 2), keepdims=True)
    if detrend == "poly2":
        n = x.shape[1]
        design = _poly2_design(n)
        flat = x.reshape(x.shape[0], n * n).T
        coef, *_ = np.linalg.lstsq(design, flat, rcond=None)
        return (flat - design @ coef).T.reshape(x.shape)
    raise ValueError(f"detrend must be 'mean' or 'poly2', got {detrend!r}")


def noise_power_spectrum(rois: np.ndarray, pixel_mm: float, detrend: Detrend = "mean") -> NoisePowerSpectrum:
    """The 2-D NPS of square noise ROIs ``(K, N, N)`` in HU with pixels of ``pixel_mm`` (ICRU 87 eq. 11.1).

    Detrending removes ``K`` (``"mean"``) or ``6 K`` (``"poly2"``) degrees of freedom; the estimate
    is rescaled by ``N² / (N² − dof)`` so that the integral stays an unbiased variance.
    """
    x = np.asarray(rois, dtype=np.float64)
    if x.ndim != 3 or x.shape[1] != x.shape[2] or x.shape[0] < 1:
        raise ValueError(f"NPS needs square ROIs shaped (K, N, N), got shape {x.shape}")
    n = x.shape[1]
    if n < 8:
        raise ValueError(f"NPS ROIs must be at least 8 pixels wide, got {n}")
    if not np.isfinite(x).all():
        raise ValueError("NPS ROIs hold NaN or infinite values")
    if not (math.isfinite(pixel_mm) and pixel_mm > 0):
        raise ValueError(f"pixel_mm must be a finite number > 0, got {pixel_mm!r}")
    residual = detrend_rois(x, detrend)
    dof = 1 if detrend == "mean" else 6
    power = np.abs(np.fft.fft2(residual)) ** 2
    nps = power.mean(axis=0) * (pixel_mm * pixel_mm) / (n * n) * (n * n / (n * n - dof))
    return NoisePowerSpectrum(values=np.fft.fftshift(nps), pixel_mm=float(pixel_mm), n_rois=int(x.shape[0]))
