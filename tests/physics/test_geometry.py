"""Scan geometries: Siemens-like defaults, derived quantities, validation."""

from __future__ import annotations

import math

import pytest
import torch

from vagan.physics.geometry import FanBeamGeometry, ParallelBeamGeometry


def test_fan_defaults_are_the_mayo_scanner() -> None:
    geo = FanBeamGeometry()
    assert (geo.n_views, geo.n_detectors) == (1152, 736)
    assert geo.source_isocenter_mm == 595.0 and geo.source_detector_mm == 1085.6
    assert geo.angular_spacing_rad == pytest.approx(1.2858 / 1085.6)
    # the fan covers about 50 deg and a field of view of about 500 mm
    assert math.degrees(2 * geo.max_fan_angle_rad) == pytest.approx(49.9, abs=0.2)
    assert 2 * geo.fov_radius_mm == pytest.approx(502.0, abs=2.0)


def test_fan_coordinates_are_centred_and_offset() -> None:
    geo = FanBeamGeometry(n_detectors=5, detector_spacing_mm=2.0, source_detector_mm=1000.0, n_views=8)
    gammas = geo.detector_coordinates()
    assert torch.allclose(gammas, torch.tensor([-4.0, -2.0, 0.0, 2.0, 4.0], dtype=torch.float64) / 1000.0)
    shifted = FanBeamGeometry(n_detectors=5, detector_spacing_mm=2.0, source_detector_mm=1000.0, detector_offset_mm=0.5)
    assert shifted.detector_coordinates()[2].item() == pytest.approx(0.5 / 1000.0)
    angles = geo.view_angles()
    assert angles[1].item() == pytest.approx(2 * math.pi / 8) and angles[-1].item() < 2 * math.pi


def test_rebinned_parallel_keeps_rays_and_pitch_at_isocenter() -> None:
    fan = FanBeamGeometry()
    par = fan.rebinned_parallel()
    assert (par.n_views, par.n_detectors, par.arc_deg) == (1152, 736, 360.0)
    assert par.detector_spacing_mm == pytest.approx(1.2858 * 595.0 / 1085.6)
    assert par.fov_radius_mm == pytest.approx(736 / 2 * par.detector_spacing_mm, rel=1e-2)
    assert ParallelBeamGeometry() == par


@pytest.mark.parametrize(
    "kwargs, word",
    [
        ({"n_views": 0}, "n_views"),
        ({"n_detectors": 2.5}, "n_detectors"),
        ({"detector_spacing_mm": -1.0}, "detector_spacing_mm"),
        ({"source_detector_mm": 500.0}, "source_detector_mm"),
        ({"source_isocenter_mm": float("nan")}, "source_isocenter_mm"),
        ({"n_detectors": 3000}, "fan is too wide"),
    ],
)
def test_fan_rejects_bad_values(kwargs: dict, word: str) -> None:
    with pytest.raises(ValueError, match=word):
        FanBeamGeometry(**kwargs)


def test_parallel_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="arc_deg"):
        ParallelBeamGeometry(arc_deg=90.0)
    with pytest.raises(ValueError, match="n_views"):
        ParallelBeamGeometry(n_views=-3)
    with pytest.raises(ValueError, match="detector_spacing_mm"):
        ParallelBeamGeometry(detector_spacing_mm=0.0)
