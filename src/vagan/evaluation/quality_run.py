"""Task-based image quality inside ``vagan evaluate``: scan the quality phantom at the test data's
dose and at full dose, run every method on the low-dose realisations and assess each
(:mod:`vagan.quality.assessment`; docs/quality.md)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from vagan.evaluation.inputs import EvaluationData, Method
from vagan.quality.assessment import (
    MethodQuality,
    assess,
    simulate_quality_images,
)
from vagan.quality.config import QualityConfig
from vagan.quality.setup import QualitySetup, quality_setup

log = logging.getLogger(__name__)

FULL_DOSE = "NDCT (full dose)"


@dataclass(frozen=True)
class QualityOutcome:
    """Each method's measurements, the full-dose reference first."""

    setup: QualitySetup
    config: QualityConfig
    results: dict[str, MethodQuality]


def prepare_quality(cfg: QualityConfig, test: EvaluationData) -> QualitySetup:
    """The phantom and scan for this test set (checked before any model is loaded)."""
    side = max(max(shape) for shape in test.shapes)
    return quality_setup(cfg, test.root, side)


def _run(method: Method, images: np.ndarray, chunk: int = 4) -> np.ndarray:
    if method.spec.kind == "ldct":
        return images
    out = np.empty_like(images)
    for start in range(0, len(images), chunk):
        out[start:start + chunk] = method.denoiser(images[start:start + chunk]).hu
    return out


def run_quality(cfg: QualityConfig, setup: QualitySetup, methods: list[Method], device: torch.device,
                progress: bool = True) -> QualityOutcome:
    """Simulate ``cfg.realisations`` signal-present and -absent scans at the data's dose and at full dose,
    and assess the full-dose scans and every method's outputs on the low-dose ones."""
    phantom = setup.phantom
    log.info("quality phantom: %d realisations per class, %s", cfg.realisations, setup.realisations_note)
    low = simulate_quality_images(phantom, setup.simulation, setup.dose, cfg.realisations, cfg.seed, device)
    full = simulate_quality_images(phantom, setup.simulation, 1.0, cfg.realisations, cfg.seed + 1, device)
    results = {FULL_DOSE: assess(full, phantom, channels=cfg.channels, seed=cfg.seed)}
    for method in tqdm(methods, desc="quality phantom", disable=not progress):
        if method.spec.kind == "ndct":
            continue  # the oracle returns the full-dose scan: the first row
        outputs = low.map(lambda batch, m=method: _run(m, batch))
        results[method.name] = assess(outputs, phantom, channels=cfg.channels, seed=cfg.seed)
    return QualityOutcome(setup, cfg, results)



