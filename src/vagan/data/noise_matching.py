"""A real normal-dose series' exposure, read from its own noise: the full-dose photons per ray ``i0``
of each slice at which the simulator's full-dose noise equals the noise measured in the series.

Inserting a lower dose into a real scan (Yu et al. 2012) needs the photons its rays had. A fixed
``i0`` fits one patient size, one slice thickness and one reconstruction: on a large patient or a
3 mm iterative reconstruction it inserts several times too much noise (docs/design.md, "Low-dose
simulation from real series"). So, per series:

1. **Its noise.** The std of the series in uniform soft tissue (:func:`measured_noise`: automatically
   found ROIs of about 15 mm, each detrended by a plane, the median over ROIs), on up to
   :data:`CALIBRATION_SLICES` slices spread along z (chosen among 3x as many candidates).
2. **Its exposure along z.** The tube current each slice was scanned with (``XRayTubeCurrent``, else
   ``Exposure``, as the scanner's modulation set it), relative to the series' median. Where the
   headers carry neither, the square-root rule of :mod:`vagan.physics.exposure` applied along z:
   ``exp(mu_water * (WED - median WED) / 2)``, WED the slice's water-equivalent diameter (AAPM TG-220).
3. **Its scale.** ``i0 = c(z) * profile``, with ``c`` solved on each calibration slice so that the
   simulated full-dose noise in the same ROIs matches the measured one (noise variance goes as
   ``1 / i0``; the electronic term makes a second pass worth it), and interpolated in log between
   them: the header's current does not capture how the noise grows with the patient's size.

A quarter dose then carries the extra ``sqrt(1/a - 1) = sqrt(3)`` times the series' own noise in
those regions, twice its noise in all, as the Mayo data were made.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from vagan.physics.simulate import LowDoseSimulator
from vagan.io.windowing import BODY_THRESHOLD_HU
from vagan.quality.uniform import find_uniform_rois, plane_detrended_std, roi_side

log = logging.getLogger(__name__)

ROI_MM = 15.0
ROIS_PER_SLICE = 8
MIN_ROIS = 2  # a slice with fewer uniform soft-tissue regions tells nothing about its noise
CALIBRATION_SLICES = 6
PASSES = 2
MIN_NOISE_HU = 0.5  # below this a series is noise-free (a phantom's truth): nothing to match


@dataclass(frozen=True)
class NoiseROIs:
    """Uniform soft-tissue ROIs of one slice (top-left corners, ``side`` pixels) and its noise there."""

    corners: tuple[tuple[int, int], ...]
    side: int
    noise_hu: float


def measured_noise(hu_slice: np.ndarray, pixel_mm: float) -> NoiseROIs | None:
    """The slice's own noise: the median detrended std over its uniform soft-tissue ROIs, or ``None``
    where fewer than :data:`MIN_ROIS` are found (a slice of lung, air or bone only)."""
    side = roi_side(pixel_mm, ROI_MM)
    corners = find_uniform_rois(hu_slice, side, ROIS_PER_SLICE)
    if len(corners) < MIN_ROIS:
        return None
    stds = [plane_detrended_std(hu_slice[r:r + side, c:c + side], ddof=3) for r, c in corners]  # 3 fitted
    return NoiseROIs(tuple(corners), side, float(np.median(stds)))


def roi_std(image: np.ndarray, rois: NoiseROIs) -> float:
    """Median std of a noise image over the ROIs (the noise has zero mean: no detrending)."""
    return float(np.median([np.std(image[r:r + rois.side, c:c + rois.side]) for r, c in rois.corners]))


def water_equivalent_diameter_mm(hu_slice: np.ndarray, pixel_mm: float) -> float:
    """AAPM TG-220 water-equivalent diameter of the patient in a slice (mm); 0 for an empty slice."""
    body = hu_slice > BODY_THRESHOLD_HU
    area = float(np.sum(np.clip(hu_slice[body], -1000.0, 3000.0) / 1000.0 + 1.0)) * pixel_mm**2
    return 2.0 * math.sqrt(area / math.pi)


def _header_current(headers: list[Any] | None) -> tuple[np.ndarray, str] | None:
    if not headers:
        return None
    for keyword in ("XRayTubeCurrent", "Exposure"):
        values = []
        for header in headers:
            try:
                value = float(header.get(keyword))
            except (TypeError, ValueError):
                break
            if not (math.isfinite(value) and value > 0):
                break
            values.append(value)
        else:
            return np.asarray(values), keyword
    return None


def exposure_profile(hu: np.ndarray, pixel_mm: float, mu_water_per_mm: float,
                     headers: list[Any] | None = None) -> tuple[np.ndarray, str]:
    """Relative exposure of each slice (median 1) and where it came from (a header keyword, or the
    water-equivalent diameter rule)."""
    from_header = _header_current(headers)
    if from_header is not None and len(from_header[0]) == len(hu):
        values, keyword = from_header
        return values / np.median(values), keyword
    wed = np.array([water_equivalent_diameter_mm(s, pixel_mm) for s in hu])
    return np.exp(0.5 * mu_water_per_mm * (wed - np.median(wed))), "water-equivalent diameter"


@dataclass
class ExposureMatch:
    """Per-slice full-dose photons per ray of a series, and how they were found."""

    i0: np.ndarray
    profile_from: str
    noise_hu: float | None = None  # the series' own noise (median over the calibration slices)
    calibration_slices: list[int] = field(default_factory=list)
    residual: float | None = None  # simulated / measured noise in the last pass (1 = matched)
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"i0_median": float(np.median(self.i0)), "i0_min": float(self.i0.min()), "i0_max": float(self.i0.max()),
                "profile_from": self.profile_from, "series_noise_hu": self.noise_hu,
                "calibration_slices": self.calibration_slices, "residual": self.residual, "note": self.note}


def _spread(candidates: list[int], count: int) -> list[int]:
    if len(candidates) <= count:
        return candidates
    picks = np.linspace(0, len(candidates) - 1, count).round().astype(int)
    return [candidates[i] for i in picks]


def match_exposure(simulator: LowDoseSimulator, hu: np.ndarray, pixel_mm: float, headers: list[Any] | None,
                   generator: torch.Generator, device: torch.device | str = "cpu") -> ExposureMatch:
    """The ``i0`` of each slice of ``hu`` ``(Z, H, W)`` (see the module docstring)."""
    cfg = simulator.config
    profile, source = exposure_profile(hu, pixel_mm, cfg.mu_water_per_mm, headers)
    measured: dict[int, NoiseROIs] = {}
    for k in _spread(list(range(len(hu))), 3 * CALIBRATION_SLICES):
        found = measured_noise(hu[k], pixel_mm)
        if found is not None and found.noise_hu >= MIN_NOISE_HU:
            measured[k] = found
    if not measured:
        log.warning("no uniform soft tissue with measurable noise found in the series: i0 %.3g from the config, "
                    "shaped by %s", cfg.i0, source)
        return ExposureMatch(cfg.i0 * profile, source, note="no uniform soft tissue with noise: the config's i0")
    slices = _spread(sorted(measured), CALIBRATION_SLICES)
    batch = torch.from_numpy(np.ascontiguousarray(hu[slices], dtype=np.float32)).to(device)
    clean = simulator.line_integrals(batch)
    scales = np.full(len(slices), cfg.i0)
    residuals = np.ones(len(slices))
    for _ in range(PASSES):
        noise = simulator.full_dose_noise(clean, torch.as_tensor(scales * profile[slices]), generator).cpu().numpy()
        residuals = np.array([roi_std(noise[j], measured[k]) / measured[k].noise_hu for j, k in enumerate(slices)])
        scales = scales * residuals**2  # variance ~ 1 / i0
    # between the calibration slices the scale is interpolated in log along z (constant beyond them)
    scale_z = np.exp(np.interp(np.arange(len(hu)), slices, np.log(scales)))
    series_noise = float(np.median([measured[k].noise_hu for k in slices]))
    return ExposureMatch(scale_z * profile, source, series_noise, slices, float(np.median(residuals)))
