"""Resolution of a (possibly nonlinear) reconstruction: the task transfer function from the
circular edge of a rod of known contrast (Richard et al. 2012; AAPM TG-233 section 5; docs/quality.md).

Pixels around the rod are binned by their distance to its centre into an oversampled edge spread
function (ESF); its derivative, the line spread function (LSF), is windowed (flat near the edge, tapered at the ends) and Fourier
transformed; the TTF is its modulus normalised to 1 at zero frequency. A denoiser's TTF depends on
the contrast and the noise, so it is measured per rod contrast on the ensemble mean of repeated
noise realisations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TaskTransferFunction:
    """TTF values at ``frequencies`` [cycles/mm] from 0 to the pixel Nyquist frequency."""

    frequencies: np.ndarray
    values: np.ndarray
    contrast_hu: float  # measured rod − background contrast

    def frequency_at(self, level: float) -> float:
        """The first frequency where the TTF falls to ``level`` (linear interpolation); NaN if never."""
        below = np.flatnonzero(self.values <= level)
        if below.size == 0:
            return math.nan
        i = int(below[0])
        if i == 0:
            return float(self.frequencies[0])
        f0, f1 = self.frequencies[i - 1], self.frequencies[i]
        v0, v1 = self.values[i - 1], self.values[i]
        return float(f0 + (v0 - level) * (f1 - f0) / (v0 - v1))

    @property
    def f50(self) -> float:
        return self.frequency_at(0.5)

    @property
    def f10(self) -> float:
        return self.frequency_at(0.1)


TAPER = 0.3
"""Fraction of the LSF window (each side) that tapers to zero; the central rest is flat, so a wide
LSF (a blurry method) keeps its tails and its TTF is not read too sharp."""


def _tukey(n: int, centre: int, half: int, taper: float) -> np.ndarray:
    """A window of ``n`` samples: 1 within ``(1 - taper) * half`` of ``centre``, a cosine taper to 0 at
    ``half``, 0 beyond."""
    d = np.abs(np.arange(n) - centre) / max(half, 1)
    flat = 1.0 - taper
    out = np.where(d <= flat, 1.0, 0.5 * (1 + np.cos(np.pi * (d - flat) / taper)))
    return np.where(d <= 1.0, out, 0.0)


def edge_spread(image: np.ndarray, centre_px: tuple[float, float], radius_px: float, oversample: int = 10,
                reach: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    """The ESF around a rod: mean pixel value in radial bins of ``1 / oversample`` pixel.

    Returns ``(r, esf)`` with ``r`` in pixels from the rod's centre, from 0 to ``reach × radius``.
    Empty bins (near the centre) are filled by interpolation.
    """
    img = np.asarray(image, dtype=np.float64)
    cy, cx = centre_px
    r_max = reach * radius_px
    y0, y1 = max(int(math.floor(cy - r_max)), 0), min(int(math.ceil(cy + r_max)) + 1, img.shape[0])
    x0, x1 = max(int(math.floor(cx - r_max)), 0), min(int(math.ceil(cx + r_max)) + 1, img.shape[1])
    yy, xx = np.mgrid[y0:y1, x0:x1]
    r = np.hypot(yy - cy, xx - cx).ravel()
    values = img[y0:y1, x0:x1].ravel()
    keep = r < r_max
    index = np.floor(r[keep] * oversample).astype(np.int64)
    n_bins = int(math.ceil(r_max * oversample))
    sums = np.bincount(index, weights=values[keep], minlength=n_bins)[:n_bins]
    counts = np.bincount(index, minlength=n_bins)[:n_bins]
    centres = (np.arange(n_bins) + 0.5) / oversample
    filled = counts > 0
    esf = np.interp(centres, centres[filled], sums[filled] / counts[filled])
    return centres, esf


def circular_edge_ttf(image: np.ndarray, centre_px: tuple[float, float], radius_px: float, pixel_mm: float,
                      oversample: int = 10) -> TaskTransferFunction:
    """The TTF of the edge of a rod of radius ``radius_px`` centred at ``centre_px`` = (row, col).

    The rod must lie wholly inside ``image`` with a background ring out to twice its radius, and
    ``image`` should be noise-free or an ensemble mean (noise in the ESF becomes high-frequency
    TTF error).
    """
    img = np.asarray(image, dtype=np.float64)
    cy, cx = centre_px
    if radius_px < 3:
        raise ValueError(f"the rod must be at least 3 pixels in radius for a TTF, got {radius_px:.2f}")
    if not (2 * radius_px <= cy <= img.shape[0] - 1 - 2 * radius_px
            and 2 * radius_px <= cx <= img.shape[1] - 1 - 2 * radius_px):
        raise ValueError(f"rod at (row {cy:.1f}, col {cx:.1f}) with radius {radius_px:.1f} px needs a background "
                         f"ring out to twice its radius inside the {img.shape[0]}x{img.shape[1]} image")
    r, esf = edge_spread(img, centre_px, radius_px, oversample)
    inside = esf[r < 0.5 * radius_px].mean()
    outside = esf[r > 1.5 * radius_px].mean()
    contrast = float(inside - outside)
    if contrast == 0:
        raise ValueError("the rod has no contrast against its background")
    lsf = -np.gradient(esf, r) / contrast  # positive peak at the edge, integral ~1
    edge = int(np.argmin(np.abs(r - radius_px)))
    half = min(edge, r.size - 1 - edge)
    lsf *= _tukey(lsf.size, edge, half, TAPER)
    dr_mm = pixel_mm / oversample
    n_fft = max(4 * r.size, 1024)
    spectrum = np.abs(np.fft.rfft(lsf, n=n_fft))
    freqs = np.fft.rfftfreq(n_fft, d=dr_mm)
    nyquist = 0.5 / pixel_mm
    keep = freqs <= nyquist + 1e-12
    return TaskTransferFunction(frequencies=freqs[keep], values=spectrum[keep] / spectrum[0], contrast_hu=contrast)
