"""A fair BM3D: its noise sigma calibrated on LDCT/NDCT pairs that are not test data.

BM3D needs the standard deviation of the noise it should remove. The per-slice wavelet estimator
(:func:`vagan.inference.bm3d_denoiser.estimate_noise_sigma_hu`) assumes white noise and reads CT
noise, which is correlated by the reconstruction kernel, far too low: on data made by other software
it gave 3.4 HU where LDCT - NDCT spread by 23 HU, and BM3D then changed nothing. Calibration
(docs/design.md, "Baselines"):

1. ``diff_std_hu``: the standard deviation of LDCT - NDCT inside the body (NDCT above
   :data:`~vagan.io.windowing.BODY_THRESHOLD_HU`) on the calibration slices: the noise that separates
   the input from its reference.
2. A grid of sigmas, ``factors x diff_std_hu``, run on the same central crops of those slices;
   the sigma with the lowest mean squared error against NDCT inside the body wins (equivalently the
   best PSNR in any fixed convention). The error is unimodal in sigma, so the search starts at factor
   1 and walks towards lower error until it rises, trying 3-4 of the sigmas rather than all.

The calibration slices come from patients outside the test subset (validation first, then
training), so BM3D is tuned exactly as the networks are: on data it is not scored on.

**BM3D-PSD** (:func:`calibrate_bm3d_psd`) is told the noise's power spectrum instead: the
autocorrelation of LDCT - NDCT inside the body of the same slices (:mod:`vagan.inference.noise_psd`),
scaled by ``factor^2`` over :data:`PSD_FACTORS`, the RMSE-best scale winning as above.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from vagan.data.patches import SlicePair
from vagan.errors import InputDataError
from vagan.io.windowing import BODY_THRESHOLD_HU

log = logging.getLogger(__name__)

FACTORS: tuple[float, ...] = (0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0)
"""Multiples of ``diff_std_hu`` tried. CT noise is correlated, so BM3D's white-noise sigma that removes
it best can lie well above its standard deviation: 1.25x on vagan's phantom data, 2x and more on a
real abdominal slice with inserted noise."""
PSD_FACTORS: tuple[float, ...] = (0.75, 1.0, 1.25, 1.5, 2.0)
"""Amplitude multiples of the measured noise autocorrelation tried by BM3D-PSD (its variance by the square)."""
CROP = 192
"""Side of the central crop of each calibration slice that BM3D runs on (BM3D is local; the crop
bounds the cost at 512^2)."""
MIN_BODY_PIXELS = 100


@dataclass(frozen=True)
class BM3DCalibration:
    """The chosen sigma (or, for BM3D-PSD, the scaled noise autocorrelation) and how it was found.

    For BM3D-PSD ``sigma_hu`` is the std of the chosen autocorrelation and the grid lists it per factor.
    """

    sigma_hu: float
    diff_std_hu: float  # std of LDCT - NDCT inside the body
    grid: tuple[tuple[float, float], ...]  # (sigma in HU, RMSE in HU inside the body) per candidate
    slices: int
    patients: tuple[str, ...]
    autocorrelation: np.ndarray | None = field(default=None, compare=False)  # BM3D-PSD: HU^2, chosen scale

    def describe(self) -> str:
        tried = ", ".join(f"{s:.1f} HU -> {e:.2f}" for s, e in self.grid)
        what = (f"noise autocorrelation ({self.autocorrelation.shape[0]}x{self.autocorrelation.shape[1]} lags) of "
                f"LDCT - NDCT scaled to a std of {self.sigma_hu:.1f} HU" if self.autocorrelation is not None
                else f"sigma {self.sigma_hu:.1f} HU")
        return (f"{what}, calibrated on {self.slices} slice(s) of patient(s) "
                f"{', '.join(self.patients)} (not test data): std of LDCT - NDCT inside the body "
                f"{self.diff_std_hu:.1f} HU; candidates tried (noise std -> RMSE in HU inside the body, central "
                f"{CROP}x{CROP} crops): {tried}; the lowest RMSE wins")

    def to_dict(self) -> dict:
        """Plain data for summary.json (the autocorrelation is written beside it as a .npy file)."""
        return {"kind": "psd" if self.autocorrelation is not None else "sigma", "sigma_hu": self.sigma_hu,
                "diff_std_hu": self.diff_std_hu, "grid": [list(g) for g in self.grid], "slices": self.slices,
                "patients": list(self.patients)}


def _crop(image: np.ndarray, size: int) -> tuple[slice, slice]:
    """The central ``size x size`` window of the body's bounding box (clamped to the image)."""
    h, w = image.shape
    rows, cols = np.nonzero(image > BODY_THRESHOLD_HU)
    cr, cc = (int(rows.mean()), int(cols.mean())) if rows.size else (h // 2, w // 2)
    sh, sw = min(size, h), min(size, w)
    r0 = min(max(cr - sh // 2, 0), h - sh)
    c0 = min(max(cc - sw // 2, 0), w - sw)
    return slice(r0, r0 + sh), slice(c0, c0 + sw)


def body_noise_std_hu(pairs: Sequence[SlicePair]) -> float:
    """Standard deviation of LDCT - NDCT over the body pixels of ``pairs`` (pooled)."""
    diffs = [(p.ldct - p.ndct)[p.ndct > BODY_THRESHOLD_HU].astype(np.float64) for p in pairs]
    diff = np.concatenate(diffs) if diffs else np.empty(0)
    if diff.size < MIN_BODY_PIXELS:
        raise InputDataError(f"BM3D calibration: only {diff.size} body pixels (NDCT > {BODY_THRESHOLD_HU:g} HU) in "
                             f"{len(pairs)} calibration slice(s); at least {MIN_BODY_PIXELS} are needed")
    return float(diff.std())


def _crops(pairs: Sequence[SlicePair], crop: int) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    windows = [_crop(p.ndct, crop) for p in pairs]
    ldct = [p.ldct[w] for p, w in zip(pairs, windows)]
    ndct = [p.ndct[w] for p, w in zip(pairs, windows)]
    body = [n > BODY_THRESHOLD_HU for n in ndct]
    if sum(int(b.sum()) for b in body) < MIN_BODY_PIXELS:
        raise InputDataError(f"BM3D calibration: the central {crop}x{crop} crops hold too little body")
    return ldct, ndct, body


def _best(pairs: Sequence[SlicePair], crop: int, candidates: Sequence[tuple[float, object]], start: int
          ) -> tuple[int, tuple[tuple[float, float], ...]]:
    """Index of the RMSE-best ``(noise std, denoiser)`` candidate on the crops, and the candidates tried.

    The RMSE is unimodal in the noise level (too low leaves noise, too high smooths anatomy), so
    rather than run BM3D at every candidate, the search walks from ``start`` towards the neighbour with
    the lower RMSE and stops at the first rise: usually 3 runs of BM3D instead of all of them.
    """
    ldct, ndct, body = _crops(pairs, crop)
    scores: dict[int, float] = {}

    def rmse(i: int) -> float:
        if i not in scores:
            denoiser = candidates[i][1]
            squared = np.concatenate([((denoiser(x).hu[0] - y)[b].astype(np.float64)) ** 2  # type: ignore[operator]
                                      for x, y, b in zip(ldct, ndct, body)])
            scores[i] = float(np.sqrt(squared.mean()))
        return scores[i]

    best = start
    for step in (1, -1):
        i = best
        while 0 <= i + step < len(candidates) and rmse(i + step) < rmse(i):
            i += step
        if i != best:
            best = i
            break
    if best in (0, len(candidates) - 1):
        log.warning("BM3D calibration: the best noise level (%.1f HU) is at the edge of the grid %s; the optimum "
                    "may lie beyond it", candidates[best][0], [round(float(s), 1) for s, _ in candidates])
    return best, tuple((float(candidates[i][0]), scores[i]) for i in sorted(scores))


def _start(factors: Sequence[float]) -> int:
    """Where the search begins: the factor nearest 1 (the measured noise itself)."""
    return min(range(len(factors)), key=lambda i: abs(float(factors[i]) - 1.0))


def _patients(pairs: Sequence[SlicePair]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(p.patient for p in pairs))


def calibrate_bm3d(pairs: Sequence[SlicePair], factors: Sequence[float] = FACTORS, crop: int = CROP
                   ) -> BM3DCalibration:
    """Choose BM3D's sigma on ``pairs`` (LDCT/NDCT slices that are not test data); see the module docstring."""
    from vagan.inference.bm3d_denoiser import BM3DDenoiser

    if not pairs:
        raise InputDataError("BM3D calibration needs at least one LDCT/NDCT slice pair outside the test set")
    diff_std = body_noise_std_hu(pairs)
    sigmas = [max(float(f) * diff_std, 1e-3) for f in factors]
    best, grid = _best(pairs, crop, [(s, BM3DDenoiser(sigma_hu=s)) for s in sigmas], _start(factors))
    return BM3DCalibration(sigmas[best], diff_std, grid, len(pairs), _patients(pairs))


def calibrate_bm3d_psd(pairs: Sequence[SlicePair], factors: Sequence[float] = PSD_FACTORS, crop: int = CROP
                       ) -> BM3DCalibration:
    """BM3D-PSD's noise autocorrelation from ``pairs`` (not test data), its scale chosen on them."""
    from scipy import ndimage

    from vagan.inference.bm3d_denoiser import BM3DDenoiser, noise_std_hu
    from vagan.inference.noise_psd import noise_autocorrelation

    if not pairs:
        raise InputDataError("BM3D-PSD calibration needs at least one LDCT/NDCT slice pair outside the test set")
    diff_std = body_noise_std_hu(pairs)
    masks = [ndimage.binary_erosion(p.ndct > BODY_THRESHOLD_HU, iterations=3) for p in pairs]
    measured = noise_autocorrelation([p.ldct.astype(np.float64) - p.ndct for p in pairs], masks)
    scaled = [measured * float(f) ** 2 for f in factors]
    best, grid = _best(pairs, crop, [(noise_std_hu(a), BM3DDenoiser(autocorrelation=a)) for a in scaled],
                       _start(factors))
    return BM3DCalibration(noise_std_hu(scaled[best]), diff_std, grid, len(pairs), _patients(pairs), scaled[best])


def spread_slices(pairs: Sequence[SlicePair], per_patient: int) -> list[SlicePair]:
    """At most ``per_patient`` slices of each patient, evenly spaced through its series."""
    by_patient: dict[str, list[SlicePair]] = {}
    for pair in pairs:
        by_patient.setdefault(pair.patient, []).append(pair)
    chosen = []
    for items in by_patient.values():
        picks = np.unique(np.linspace(0, len(items) - 1, min(per_patient, len(items))).round().astype(int))
        chosen.extend(items[i] for i in picks)
    return chosen
