"""Uniform regions of real slices for noise measurements: found automatically in homogeneous soft
tissue of the reference (NDCT) slice, or given by the user and checked (docs/quality.md)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from vagan.errors import ConfigError

SOFT_TISSUE_HU = (-150.0, 250.0)  # fat to enhanced parenchyma: no air, lung or bone in a noise ROI
SMOOTH_PX = 2.0  # the structure measure looks at the slice smoothed by this Gaussian: noise averages out
MAX_STRUCTURE_HU = 12.0  # a region whose smoothed, detrended values vary more than this holds anatomy


def roi_side(pixel_mm: float, roi_mm: float) -> int:
    """An even ROI side of about ``roi_mm`` (at least 16 pixels, for a useful NPS)."""
    return max(16, 2 * int(round(roi_mm / pixel_mm / 2)))


def plane_detrended_std(window: np.ndarray, ddof: int = 0) -> float:
    """Std of a window after removing its best-fitting plane (least squares): what a slow trend leaves."""
    n0, n1 = window.shape
    y, x = np.mgrid[0:n0, 0:n1].astype(np.float64)
    design = np.stack([np.ones(window.size), x.ravel(), y.ravel()], axis=1)
    values = window.ravel().astype(np.float64)
    coef, *_ = np.linalg.lstsq(design, values, rcond=None)
    return float(np.std(values - design @ coef, ddof=ddof))


def find_uniform_rois(reference: np.ndarray, side: int, count: int) -> list[tuple[int, int]]:
    """Top-left corners of up to ``count`` non-overlapping ``side``² ROIs in homogeneous soft tissue.

    Candidates on a half-ROI grid must hold only soft-tissue values once smoothed
    (:data:`SOFT_TISSUE_HU`) and little structure (:data:`MAX_STRUCTURE_HU`); the most uniform win.
    """
    image = np.asarray(reference, np.float64)
    smooth = ndimage.gaussian_filter(image, SMOOTH_PX)
    step = max(side // 2, 1)
    scored = []
    for r in range(0, image.shape[0] - side + 1, step):
        for c in range(0, image.shape[1] - side + 1, step):
            window = smooth[r:r + side, c:c + side]
            if window.min() < SOFT_TISSUE_HU[0] or window.max() > SOFT_TISSUE_HU[1]:
                continue
            score = plane_detrended_std(window)  # of the smoothed slice: anatomy, not noise
            if score <= MAX_STRUCTURE_HU:
                scored.append((score, r, c))
    chosen: list[tuple[int, int]] = []
    for _, r, c in sorted(scored):
        if all(abs(r - r0) >= side or abs(c - c0) >= side for r0, c0 in chosen):
            chosen.append((r, c))
            if len(chosen) == count:
                break
    return chosen


def check_user_rois(rois: Sequence[tuple[int, int]], side: int, reference: np.ndarray, where: str) -> None:
    """Each given ROI (top-left row, col) must lie inside the image and inside the body (soft tissue)."""
    h, w = reference.shape
    smooth = ndimage.gaussian_filter(np.asarray(reference, np.float64), SMOOTH_PX)
    for k, (r, c) in enumerate(rois):
        if r < 0 or c < 0 or r + side > h or c + side > w:
            raise ConfigError(f"quality.rois[{k}]: ({r}, {c}) with side {side} px lies outside the {h}x{w} slice "
                              f"of {where}")
        window = smooth[r:r + side, c:c + side]
        if not (SOFT_TISSUE_HU[0] <= window.min() and window.max() <= SOFT_TISSUE_HU[1]):
            raise ConfigError(f"quality.rois[{k}]: ({r}, {c}) with side {side} px leaves the body's soft tissue on "
                              f"{where} (values {window.min():.0f} to {window.max():.0f} HU once smoothed; "
                              f"a noise ROI needs {SOFT_TISSUE_HU[0]:g} to {SOFT_TISSUE_HU[1]:g} HU)")
