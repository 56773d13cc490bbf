"""Noise models of CT projection data: quantum (Poisson) plus electronic (Gaussian) noise.

**Simulation from noise-free line integrals** ``p`` (:func:`add_quantum_noise`): a ray with incident
photon count ``I0 * dose`` records ``N = Poisson(I0 dose exp(-p)) + Normal(0, sigma_e^2)`` counts;
counts are clamped to ``count_floor`` (photon starvation: the log needs a positive value) and the
noisy line integral is ``-log(N / (I0 dose))``.

**Noise insertion into real normal-dose data** (:func:`insert_dose_reduction_noise`; Yu et al.,
"Development and validation of a practical lower-dose-simulation tool for optimizing CT scan
protocols", Med. Phys. 39(8), 2012). The normal-dose measurement already carries full-dose noise, so
only the missing variance is added, as Gaussian noise in the line-integral domain. With
``I = I0 exp(-p)`` the expected full-dose count of the ray, the first-order (delta-method) variance of
``-log(N / I0)`` is ``(I + sigma_e^2) / I^2`` at full dose and ``(a I + sigma_e^2) / (a I)^2`` at
dose fraction ``a``; their difference is

    var_add = (1 - a) / a * 1 / I * (1 + (1 + a) / a * sigma_e^2 / I),

which this module adds, ``I`` being estimated from the normal-dose projection itself (as Yu et al.
do) and clamped to ``count_floor``. For ``a = 1`` nothing is added. Being first order, it
underestimates the variance of photon-starved rays (fewer than about 30 photons at the reduced
dose, where the log of a Poisson count is no longer Gaussian).

Default parameters (docs/design.md, "Low-dose simulation"): ``sigma_e^2 = 10`` counts^2 and the
full-dose ``I0`` calibrated in :mod:`vagan.physics.simulate`. A random generator is always passed in;
when it lives on another device than the data, the numbers are drawn there and moved, so results do
not depend on where the projection ran.
"""

from __future__ import annotations

import torch

__all__ = [
    "DEFAULT_COUNT_FLOOR",
    "full_dose_variance",
    "DEFAULT_ELECTRONIC_NOISE_VAR",
    "add_quantum_noise",
    "counts_to_line_integrals",
    "dose_reduction_variance",
    "insert_dose_reduction_noise",
    "sample_counts",
    "standard_normal_like",
]

DEFAULT_ELECTRONIC_NOISE_VAR = 10.0  # counts^2 (Mayo-like scanners: 8-10)
DEFAULT_COUNT_FLOOR = 1.0  # counts: the smallest value the log transform sees


def _check_positive(name: str, value: float | torch.Tensor) -> None:
    """``value`` (a number, or a tensor of per-ray photon counts) must be > 0 everywhere."""
    ok = bool(torch.all(value > 0)) if isinstance(value, torch.Tensor) else value > 0
    if not ok:
        raise ValueError(f"{name} must be > 0, got {value!r}")


def _check_non_negative(name: str, value: float) -> None:
    if not value >= 0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")


def _generator_device(like: torch.Tensor, generator: torch.Generator | None) -> torch.device:
    return like.device if generator is None else generator.device


def _poisson(rate: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    device = _generator_device(rate, generator)
    return torch.poisson(rate.to(device), generator=generator).to(rate.device)


def standard_normal_like(like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """N(0, 1) numbers of ``like``'s shape, dtype and device, drawn on the generator's device."""
    device = _generator_device(like, generator)
    return torch.randn(like.shape, generator=generator, dtype=like.dtype, device=device).to(like.device)


def sample_counts(
    line_integrals: torch.Tensor,
    i0: float | torch.Tensor,
    electronic_noise_var: float = DEFAULT_ELECTRONIC_NOISE_VAR,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Detected counts ``Poisson(i0 exp(-p)) + Normal(0, electronic_noise_var)`` (not clamped).

    ``i0`` is the incident photon count per ray (already scaled by the dose fraction): a number, or a
    tensor that broadcasts against ``line_integrals`` (a bowtie, a tube-current modulation).
    """
    _check_positive("i0", i0)
    _check_non_negative("electronic_noise_var", electronic_noise_var)
    expected = i0 * torch.exp(-line_integrals)
    counts = _poisson(expected, generator)
    if electronic_noise_var > 0:
        counts = counts + electronic_noise_var**0.5 * standard_normal_like(counts, generator)
    return counts


def counts_to_line_integrals(counts: torch.Tensor, i0: float | torch.Tensor, count_floor: float = DEFAULT_COUNT_FLOOR) -> torch.Tensor:
    """``-log(max(counts, count_floor) / i0)``: the log transform of a scanner's pre-processing."""
    _check_positive("i0", i0)
    _check_positive("count_floor", count_floor)
    return -torch.log(counts.clamp(min=count_floor) / i0)


def add_quantum_noise(
    line_integrals: torch.Tensor,
    i0: float | torch.Tensor,
    electronic_noise_var: float = DEFAULT_ELECTRONIC_NOISE_VAR,
    generator: torch.Generator | None = None,
    count_floor: float = DEFAULT_COUNT_FLOOR,
) -> torch.Tensor:
    """Noisy line integrals of a scan with ``i0`` incident photons per ray (the dose is in ``i0``).

    >>> p = torch.zeros(2, 3)
    >>> add_quantum_noise(p, 1e12, 0.0, torch.Generator().manual_seed(0)).abs().max() < 1e-5
    tensor(True)
    """
    counts = sample_counts(line_integrals, i0, electronic_noise_var, generator)
    return counts_to_line_integrals(counts, i0, count_floor)


def dose_reduction_variance(
    line_integrals: torch.Tensor,
    i0: float | torch.Tensor,
    dose: float,
    electronic_noise_var: float = DEFAULT_ELECTRONIC_NOISE_VAR,
    count_floor: float = DEFAULT_COUNT_FLOOR,
) -> torch.Tensor:
    """Yu et al. (2012) extra line-integral variance that takes full-dose data to dose fraction ``dose``.

    ``var_add = (1 - a) / a / I * (1 + (1 + a) / a * sigma_e^2 / I)`` with ``I = i0 exp(-p)``.
    ``i0`` may be a tensor of per-ray incident counts (:mod:`vagan.physics.exposure`).
    """
    _check_positive("i0", i0)
    _check_non_negative("electronic_noise_var", electronic_noise_var)
    if not 0 < dose <= 1:
        raise ValueError(f"dose must be a fraction in (0, 1], got {dose!r}")
    counts = (i0 * torch.exp(-line_integrals)).clamp(min=count_floor)
    a = float(dose)
    return (1.0 - a) / a / counts * (1.0 + (1.0 + a) / a * electronic_noise_var / counts)


def full_dose_variance(
    line_integrals: torch.Tensor,
    i0: float | torch.Tensor,
    electronic_noise_var: float = DEFAULT_ELECTRONIC_NOISE_VAR,
    count_floor: float = DEFAULT_COUNT_FLOOR,
) -> torch.Tensor:
    """First-order variance ``(I + sigma_e^2) / I^2`` of a full-dose line integral, ``I = i0 exp(-p)``:
    the noise a scan at ``i0`` carries, which :mod:`vagan.data.noise_matching` matches to a real series."""
    _check_positive("i0", i0)
    _check_non_negative("electronic_noise_var", electronic_noise_var)
    counts = (i0 * torch.exp(-line_integrals)).clamp(min=count_floor)
    return (counts + electronic_noise_var) / counts**2


def insert_dose_reduction_noise(
    line_integrals: torch.Tensor,
    i0: float | torch.Tensor,
    dose: float,
    electronic_noise_var: float = DEFAULT_ELECTRONIC_NOISE_VAR,
    generator: torch.Generator | None = None,
    count_floor: float = DEFAULT_COUNT_FLOOR,
) -> torch.Tensor:
    """Full-dose line integrals (already noisy) -> line integrals at dose fraction ``dose``."""
    variance = dose_reduction_variance(line_integrals, i0, dose, electronic_noise_var, count_floor)
    if dose == 1:
        return line_integrals.clone()
    return line_integrals + variance.sqrt() * standard_normal_like(line_integrals, generator)
