"""How many photons each ray of a scan receives: the bowtie filter and the tube-current modulation.

The expected full-dose count of the ray through channel ``gamma`` in view ``beta`` is

    I(beta, gamma) = i0 * B(gamma) * m(beta) * exp(-p(beta, gamma))

* ``i0``: photons per ray at the centre channel, averaged over the views of the slice (a scan's
  exposure; for a real series it is matched to the series' own noise, :mod:`vagan.data.noise_matching`).
* ``B(gamma)``: the bowtie's transmission (:func:`bowtie_transmission`). A body bowtie is thin at the
  centre and thick at the edges; it is modelled as the water that tops up a cylinder of
  ``radius_mm`` to its central thickness, capped at ``BOWTIE_MAX_LINE_INTEGRAL`` (a transmission of
  about 1/12, the edge flux of clinical body bowties).
* ``m(beta)``: angular tube-current modulation (:func:`angular_modulation`): the current follows the
  square root of each view's attenuation, ``m ∝ exp(p_max(beta) / 2)`` (Gies et al., "Dose reduction
  in CT by anatomically adapted tube current modulation", Med. Phys. 26(11), 1999: the rule that
  minimises the noise for a given mAs), normalised to a mean of 1 over the views.

A fixed ``i0`` with neither (the phantom default) starves the lateral rays of a large patient: the
noise inserted there is far too high, with streaks (docs/design.md, "Low-dose simulation").
"""

from __future__ import annotations

import math
from typing import Literal

import torch

from vagan.physics.geometry import FanBeamGeometry, Geometry

__all__ = ["BOWTIE_MAX_LINE_INTEGRAL", "BowtieKind", "angular_modulation", "bowtie_transmission", "ray_distance_mm"]

BowtieKind = Literal["none", "body"]
BOWTIE_MAX_LINE_INTEGRAL = math.log(12.0)  # the thickest part passes about 1/12 of the flux


def ray_distance_mm(geometry: Geometry) -> torch.Tensor:
    """Distance of each channel's ray from the isocenter (mm), signed, ``(n_detectors,)`` float64."""
    coords = geometry.detector_coordinates(torch.float64)
    if isinstance(geometry, FanBeamGeometry):
        return geometry.source_isocenter_mm * torch.sin(coords)
    return coords


def bowtie_transmission(geometry: Geometry, kind: BowtieKind, radius_mm: float, mu_water_per_mm: float) -> torch.Tensor:
    """Fraction of the flux the bowtie passes in each channel, ``(n_detectors,)`` float64 in (0, 1].

    >>> from vagan.physics.geometry import ParallelBeamGeometry
    >>> t = bowtie_transmission(ParallelBeamGeometry(n_views=4, n_detectors=5, detector_spacing_mm=100.0), "body", 160.0, 0.02)
    >>> [round(float(v), 3) for v in t]
    [0.083, 0.246, 1.0, 0.246, 0.083]
    """
    distance = ray_distance_mm(geometry).abs()
    if kind == "none":
        return torch.ones_like(distance)
    if kind != "body":
        raise ValueError(f"bowtie must be 'none' or 'body', got {kind!r}")
    if not radius_mm > 0:
        raise ValueError(f"bowtie radius must be > 0 mm, got {radius_mm!r}")
    chord = 2.0 * torch.sqrt((radius_mm**2 - distance**2).clamp(min=0.0))
    line_integral = (mu_water_per_mm * (2.0 * radius_mm - chord)).clamp(max=BOWTIE_MAX_LINE_INTEGRAL)
    return torch.exp(-line_integral)


def angular_modulation(line_integrals: torch.Tensor) -> torch.Tensor:
    """Relative tube current of each view, ``(B, views, 1)`` with a mean of 1 over the views.

    ``m ∝ exp(p_max / 2)``, ``p_max`` the largest line integral of the view (Gies et al. 1999's
    square-root rule), from the noise-free projections ``(B, views, channels)`` of the slice.
    """
    if line_integrals.dim() != 3:
        raise ValueError(f"expected projections (B, views, channels), got {tuple(line_integrals.shape)}")
    peak = line_integrals.amax(dim=-1, keepdim=True).double()
    weight = torch.exp(0.5 * (peak - peak.mean(dim=1, keepdim=True)))
    return (weight / weight.mean(dim=1, keepdim=True)).to(line_integrals.dtype)
