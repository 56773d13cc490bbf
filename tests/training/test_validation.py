"""Validation during training measures PSNR/SSIM exactly as `vagan evaluate` does (one SSIM)."""

from __future__ import annotations

import math

import numpy as np
import torch
from skimage.metrics import structural_similarity

from vagan.models.outputs import GeneratorOutput
from vagan.training.validation import validate


class _AddOffset(torch.nn.Module):
    """A 'generator' that adds a known offset, so the expected PSNR is known in closed form."""

    def __init__(self, offset: float) -> None:
        super().__init__()
        self.offset = offset

    def forward(self, x: torch.Tensor) -> GeneratorOutput:
        return GeneratorOutput(image=x + self.offset)


def test_validation_psnr_and_ssim_are_the_evaluation_measures() -> None:
    rng = np.random.default_rng(0)
    ndct = rng.uniform(0.2, 0.8, (2, 1, 48, 48)).astype(np.float32)
    ldct = np.clip(ndct + rng.normal(0, 0.05, ndct.shape), 0, 1).astype(np.float32)
    slices = [{"ldct": torch.from_numpy(ldct[i]), "ndct": torch.from_numpy(ndct[i])} for i in range(2)]
    out = validate(_AddOffset(0.01), slices, torch.device("cpu"))
    # the generator's output is the LDCT + 0.01 clamped to [0, 1]; none of it is clamped here
    shifted = (ldct + 0.01).astype(np.float32).astype(np.float64)
    expected_psnr = np.mean([10 * math.log10(1 / np.mean((shifted[i] - ndct[i]) ** 2)) for i in range(2)])
    expected_ssim = np.mean([structural_similarity(shifted[i, 0], ndct[i, 0].astype(np.float64), data_range=1.0,
                                                   gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
                             for i in range(2)])
    assert math.isclose(out["val_psnr"], expected_psnr, rel_tol=1e-5)
    assert math.isclose(out["val_ssim"], expected_ssim, rel_tol=1e-5)  # no padded border (torchmetrics' differs)
    expected_in = np.mean([10 * math.log10(1 / np.mean((ldct[i].astype(np.float64) - ndct[i]) ** 2)) for i in range(2)])
    assert math.isclose(out["val_psnr_ldct"], expected_in, rel_tol=1e-5)
