"""HU <-> attenuation: known values, clipping, round trip."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vagan.physics.attenuation import MU_WATER_PER_MM, hu_to_mu, mu_to_hu


def test_known_values() -> None:
    mu = hu_to_mu(torch.tensor([-1000.0, 0.0, 1000.0]))
    assert torch.allclose(mu, torch.tensor([0.0, MU_WATER_PER_MM, 2 * MU_WATER_PER_MM]))
    assert 0.018 < MU_WATER_PER_MM < 0.021  # water near 70 keV


def test_negative_attenuation_is_clipped() -> None:
    assert hu_to_mu(torch.tensor([-3024.0, -1001.0])).eq(0).all()


def test_round_trip_torch_and_numpy(rng: torch.Generator) -> None:
    hu = torch.rand(4, 7, 5, generator=rng) * 4000 - 1000
    assert torch.allclose(mu_to_hu(hu_to_mu(hu, 0.02), 0.02), hu, atol=1e-3)
    arr = np.linspace(-1000, 3000, 9)
    np.testing.assert_allclose(mu_to_hu(hu_to_mu(arr)), arr, atol=1e-9)


def test_bad_mu_water() -> None:
    with pytest.raises(ValueError, match="mu_water_per_mm"):
        hu_to_mu(torch.zeros(2), 0.0)
