"""Noise models: Poisson statistics, electronic noise, log floor, Yu et al. insertion."""

from __future__ import annotations

import pytest
import torch

from vagan.physics.noise import (
    add_quantum_noise,
    counts_to_line_integrals,
    dose_reduction_variance,
    insert_dose_reduction_noise,
    sample_counts,
)


def test_poisson_mean_equals_variance(rng: torch.Generator) -> None:
    p = torch.full((200_000,), 2.0)
    counts = sample_counts(p, 1000.0, electronic_noise_var=0.0, generator=rng)
    expected = 1000.0 * torch.exp(torch.tensor(-2.0))
    assert counts.mean().item() == pytest.approx(expected.item(), rel=0.005)
    assert counts.var().item() == pytest.approx(expected.item(), rel=0.02)
    assert torch.equal(counts, counts.round())  # whole photons


def test_electronic_noise_adds_its_variance(rng: torch.Generator) -> None:
    p = torch.full((200_000,), 3.0)
    counts = sample_counts(p, 2000.0, electronic_noise_var=25.0, generator=rng)
    mean = 2000.0 * torch.exp(torch.tensor(-3.0)).item()
    assert counts.mean().item() == pytest.approx(mean, rel=0.005)
    assert counts.var().item() == pytest.approx(mean + 25.0, rel=0.03)


def test_log_transform_and_floor() -> None:
    counts = torch.tensor([100.0, 0.0, -5.0])
    p = counts_to_line_integrals(counts, 100.0, count_floor=0.5)
    assert p[0].item() == pytest.approx(0.0, abs=1e-7)
    assert p[1].item() == pytest.approx(p[2].item()) == pytest.approx(-torch.log(torch.tensor(0.005)).item())


def test_quantum_noise_variance_in_the_line_integral_domain(rng: torch.Generator) -> None:
    p = torch.full((200_000,), 1.5)
    i0 = 5e4
    noisy = add_quantum_noise(p, i0, 0.0, rng)
    expected_var = 1.0 / (i0 * torch.exp(torch.tensor(-1.5)).item())  # delta method: 1 / counts
    assert noisy.var().item() == pytest.approx(expected_var, rel=0.03)
    assert noisy.mean().item() == pytest.approx(1.5, abs=1e-3)


@pytest.mark.parametrize("dose", [0.5, 0.25, 0.1])
def test_yu_insertion_matches_a_direct_low_dose_scan(dose: float, rng: torch.Generator) -> None:
    """Full-dose data + inserted noise has the variance of a scan made at ``dose`` (electronic noise on)."""
    p = torch.full((200_000,), 3.0)
    i0, sigma2 = 1e4, 10.0  # about 500 photons per ray at full dose, 50 at a tenth: electronic noise matters
    full = add_quantum_noise(p, i0, sigma2, rng)
    inserted = insert_dose_reduction_noise(full, i0, dose, sigma2, rng)
    direct = add_quantum_noise(p, i0 * dose, sigma2, rng)
    assert inserted.var().item() == pytest.approx(direct.var().item(), rel=0.06)
    assert (inserted.mean() - direct.mean()).abs().item() < 0.02


def test_yu_variance_formula_and_full_dose() -> None:
    p = torch.tensor([0.0, 2.0])
    var = dose_reduction_variance(p, 1000.0, 0.25, electronic_noise_var=0.0)
    counts = 1000.0 * torch.exp(-p)
    assert torch.allclose(var, 3.0 / counts)  # (1 - a) / a / I
    assert dose_reduction_variance(p, 1000.0, 1.0).eq(0).all()
    assert torch.equal(insert_dose_reduction_noise(p, 1000.0, 1.0), p)
    with pytest.raises(ValueError, match="dose"):
        dose_reduction_variance(p, 1000.0, 0.0)


def test_same_generator_state_gives_same_noise() -> None:
    p = torch.rand(64, 32)
    a = add_quantum_noise(p, 1e4, 10.0, torch.Generator().manual_seed(7))
    b = add_quantum_noise(p, 1e4, 10.0, torch.Generator().manual_seed(7))
    c = add_quantum_noise(p, 1e4, 10.0, torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_bad_parameters() -> None:
    with pytest.raises(ValueError, match="i0"):
        sample_counts(torch.zeros(3), 0.0)
    with pytest.raises(ValueError, match="electronic_noise_var"):
        sample_counts(torch.zeros(3), 10.0, electronic_noise_var=-1.0)
