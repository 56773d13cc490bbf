"""Hounsfield units <-> linear attenuation coefficients (1/mm): the one place this conversion lives.

``HU = 1000 * (mu - mu_water) / mu_water`` (air, mu = 0, is -1000 HU), so
``mu = mu_water * (1 + HU / 1000)``, clipped at 0 because a negative attenuation is unphysical
(padding values such as -2048 or -3024 HU outside a scanner's reconstruction circle become air).

The default ``MU_WATER_PER_MM = 0.0192`` 1/mm is water at the effective energy of a 120 kVp
abdominal beam, about 70 keV (NIST XCOM: 0.206 cm^2/g at 60 keV, 0.184 cm^2/g at 80 keV, about
0.193 cm^2/g at 70 keV; density 1 g/cm^3). A monochromatic model: no beam hardening.
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import torch

__all__ = ["MU_WATER_PER_MM", "hu_to_mu", "mu_to_hu"]

MU_WATER_PER_MM = 0.0192

ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)


def _check_mu_water(mu_water_per_mm: float) -> None:
    if not mu_water_per_mm > 0:
        raise ValueError(f"mu_water_per_mm must be > 0 (about 0.019 1/mm at 70 keV), got {mu_water_per_mm!r}")


def hu_to_mu(hu: ArrayT, mu_water_per_mm: float = MU_WATER_PER_MM) -> ArrayT:
    """HU -> linear attenuation (1/mm): ``mu_water * (1 + HU/1000)``, clipped at >= 0.

    >>> hu_to_mu(torch.tensor([-1000.0, 0.0, 1000.0]), 0.02)
    tensor([0.0000, 0.0200, 0.0400])
    """
    _check_mu_water(mu_water_per_mm)
    mu = mu_water_per_mm * (1.0 + hu / 1000.0)
    return mu.clip(min=0.0)


def mu_to_hu(mu: ArrayT, mu_water_per_mm: float = MU_WATER_PER_MM) -> ArrayT:
    """Linear attenuation (1/mm) -> HU: ``1000 * (mu / mu_water - 1)`` (not clipped).

    >>> mu_to_hu(torch.tensor([0.0, 0.02]), 0.02)
    tensor([-1000.,     0.])
    """
    _check_mu_water(mu_water_per_mm)
    return 1000.0 * (mu / mu_water_per_mm - 1.0)
