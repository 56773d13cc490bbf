"""Task-based image quality inside ``vagan evaluate`` (docs/quality.md): the noise of every method in
uniform ROIs of the test slices, and the quality phantom scanned at the test data's dose and at full
dose, every method run on the low-dose scans and assessed (:mod:`vagan.quality.assessment`)."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from vagan.errors import ConfigError
from vagan.evaluation.inputs import EvaluationData, Method
from vagan.quality.assessment import (
    MethodQuality,
    assess,
    ct_number_shift,
    simulate_quality_images,
)
from vagan.quality.config import QualityConfig
from vagan.quality.nps import NoisePowerSpectrum, noise_power_spectrum
from vagan.quality.setup import QualitySetup, quality_setup
from vagan.quality.uniform import check_user_rois, find_uniform_rois, roi_side
from vagan.study.stats import Interval

log = logging.getLogger(__name__)

FULL_DOSE = "NDCT (full dose)"
REFERENCE = "NDCT"


@dataclass(frozen=True)
class SliceNoisePlan:
    """Uniform ROIs (top-left corners) of ``side`` pixels on the test slices that share one pixel size."""

    side: int
    pixel_mm: float
    rois: dict[int, list[tuple[int, int]]]  # test slice index -> corners
    note: str

    @property
    def count(self) -> int:
        return sum(len(v) for v in self.rois.values())


@dataclass(frozen=True)
class QualityPlan:
    """What the assessment will do, checked before any model is loaded."""

    phantom: QualitySetup | None
    slices: SliceNoisePlan | None


@dataclass(frozen=True)
class FullDoseEffect:
    """A method run on the full-dose scans (no noise added): what it does to a scan it should leave alone."""

    quality: MethodQuality
    shift_hu: dict[str, Interval]  # tissue -> mean of output - input inside the insert


@dataclass(frozen=True)
class QualityOutcome:
    """Each method's measurements on the phantom (the full-dose reference first)."""

    setup: QualitySetup
    config: QualityConfig
    results: dict[str, MethodQuality]
    on_full_dose: dict[str, FullDoseEffect] = field(default_factory=dict)  # quality.full_dose_input


def _pixel_group(cfg: QualityConfig, test: EvaluationData) -> tuple[float, list[int]]:
    """The pixel size of the most test slices and their indices (``cfg.pixel_mm`` applies to all)."""
    if cfg.pixel_mm is not None:
        return cfg.pixel_mm, list(range(len(test.pairs)))
    known = [(round(p.pixel_mm, 3), i) for i, p in enumerate(test.pairs) if p.pixel_mm is not None]
    if not known:
        raise ConfigError("quality.pixel_mm: the test slices' pixel size is unknown; give it, e.g. "
                          "--set quality.pixel_mm=0.7")
    pixel = Counter(p for p, _ in known).most_common(1)[0][0]
    return pixel, [i for p, i in known if p == pixel]


def plan_slice_noise(cfg: QualityConfig, test: EvaluationData) -> SliceNoisePlan:
    """ROIs on the test slices: ``cfg.rois`` (checked on every slice) or found in homogeneous soft tissue."""
    pixel, indices = _pixel_group(cfg, test)
    side = roi_side(pixel, cfg.roi_mm)
    rois = {}
    for i in indices:
        ndct = test.pairs[i].ndct
        if cfg.rois:
            check_user_rois(cfg.rois, side, ndct, test.label(i))
            rois[i] = list(cfg.rois)
        else:
            rois[i] = find_uniform_rois(ndct, side, cfg.rois_per_slice)
    left_out = len(test.pairs) - len(indices)
    note = (f"{sum(len(v) for v in rois.values())} ROIs of {side}² pixels ({side * pixel:.0f} mm) "
            f"{'given' if cfg.rois else 'found in homogeneous soft tissue of the NDCT'} on {len(indices)} test slices "
            f"of {pixel:g} mm pixels" + (f"; {left_out} slices of other pixel sizes left out" if left_out else ""))
    return SliceNoisePlan(side, pixel, rois, note)


def prepare_quality(cfg: QualityConfig, test: EvaluationData) -> QualityPlan:
    """The phantom and scan, and the test slices' ROIs (checked before any model is loaded)."""
    slices = plan_slice_noise(cfg, test) if cfg.test_slices else None
    phantom = None
    if cfg.phantom:
        side = max(max(shape) for shape in test.shapes)
        phantom = quality_setup(cfg, test.root, side, slices.pixel_mm if slices else _pixel_group(cfg, test)[0])
    return QualityPlan(phantom, slices)


def slice_noise(plan: SliceNoisePlan, test: EvaluationData, rois: dict[str, list[np.ndarray]]
                ) -> dict[str, NoisePowerSpectrum]:
    """NPS (second-order detrend) of the NDCT and of every method in the planned ROIs; methods whose
    ROIs are missing (none found) are left out."""
    side = plan.side
    reference = [test.pairs[i].ndct[r:r + side, c:c + side] for i, corners in plan.rois.items() for r, c in corners]
    out = {}
    for name, stack in {REFERENCE: reference, **rois}.items():
        if stack:
            out[name] = noise_power_spectrum(np.stack(stack), plan.pixel_mm, "poly2")
    return out


def _run(method: Method, images: np.ndarray, progress: tqdm, chunk: int = 4) -> np.ndarray:
    out = np.empty_like(images)
    for start in range(0, len(images), chunk):
        batch = images[start:start + chunk]
        out[start:start + len(batch)] = method.denoiser(batch).hu
        progress.update(len(batch))
    return out


def run_phantom(cfg: QualityConfig, setup: QualitySetup, methods: list[Method], device: torch.device,
                progress: bool = True) -> QualityOutcome:
    """Simulate ``cfg.realisations`` signal-present and -absent scans at the data's dose and at full dose,
    and assess the full-dose scans and every method's outputs on the low-dose ones."""
    phantom = setup.phantom
    k = cfg.realisations
    log.info("quality phantom: %d realisations per class, %s", k, setup.realisations_note)
    denoisers = [m for m in methods if m.spec.kind not in ("ldct", "ndct")]  # ndct: the full-dose row itself
    runs = 2 if cfg.full_dose_input else 1
    with tqdm(total=2 * k * (2 + runs * len(denoisers)), desc="quality phantom", unit="scan", disable=not progress,
              dynamic_ncols=True) as bar:
        bar.set_postfix_str("simulating")
        low = simulate_quality_images(phantom, setup.simulation, setup.dose, k, cfg.seed, device, progress=bar.update)
        full = simulate_quality_images(phantom, setup.simulation, 1.0, k, cfg.seed + 1, device, progress=bar.update)
        results = {FULL_DOSE: assess(full, phantom, channels=cfg.channels, seed=cfg.seed)}
        for method in methods:
            if method.spec.kind == "ndct":
                continue
            bar.set_postfix_str(method.name)
            outputs = low if method.spec.kind == "ldct" else low.map(lambda batch, m=method: _run(m, batch, bar))
            results[method.name] = assess(outputs, phantom, channels=cfg.channels, seed=cfg.seed)
        on_full: dict[str, FullDoseEffect] = {}
        for method in denoisers if cfg.full_dose_input else []:
            bar.set_postfix_str(f"{method.name} on full dose")
            outputs = full.map(lambda batch, m=method: _run(m, batch, bar))
            on_full[method.name] = FullDoseEffect(
                assess(outputs, phantom, channels=cfg.channels, seed=cfg.seed, detect=False),  # noise, TTF, CT numbers
                ct_number_shift(outputs, full, phantom, seed=cfg.seed))
    return QualityOutcome(setup, cfg, results, on_full)
