"""Known answers for the circular-edge task transfer function."""

import math

import numpy as np
import pytest
from scipy import special

from vagan.quality.ttf import circular_edge_ttf, edge_spread


def blurred_rod(n: int, centre: tuple[float, float], radius_px: float, sigma_px: float, contrast: float,
                background: float = 40.0) -> np.ndarray:
    """A rod edge blurred by a Gaussian of ``sigma_px``, sampled at pixel centres (no pixel aperture)."""
    y, x = np.mgrid[0:n, 0:n].astype(np.float64)
    r = np.hypot(y - centre[0], x - centre[1])
    return background + contrast * 0.5 * special.erfc((r - radius_px) / (math.sqrt(2) * sigma_px))


@pytest.mark.parametrize("contrast", [300.0, -100.0, 10.0])
def test_gaussian_blurred_edge_gives_the_gaussian_ttf(contrast):
    pixel, sigma_px = 0.5, 2.0
    image = blurred_rod(128, (63.3, 64.7), 20.0, sigma_px, contrast)
    ttf = circular_edge_ttf(image, (63.3, 64.7), 20.0, pixel)
    s_mm = sigma_px * pixel
    analytic = np.exp(-2 * math.pi**2 * s_mm**2 * ttf.frequencies**2)
    np.testing.assert_allclose(ttf.values, analytic, atol=0.03)
    assert ttf.f50 == pytest.approx(math.sqrt(math.log(2) / (2 * math.pi**2)) / s_mm, rel=0.03)
    assert ttf.f10 == pytest.approx(math.sqrt(math.log(10) / (2 * math.pi**2)) / s_mm, rel=0.03)
    assert ttf.contrast_hu == pytest.approx(contrast, rel=0.01)
    assert ttf.frequencies[-1] <= 1 / (2 * pixel) + 1e-9


@pytest.mark.parametrize("sigma_px", [1.5, 2.5, 3.5])
def test_a_blurry_edge_of_a_small_rod_is_not_read_too_sharp(sigma_px):
    # the phantom's rods: 7 mm = 10 px at 0.7 mm; the LSF window must keep a wide LSF's tails
    pixel = 0.7
    ttf = circular_edge_ttf(blurred_rod(96, (47.5, 47.5), 10.0, sigma_px, 100), (47.5, 47.5), 10.0, pixel)
    s_mm = sigma_px * pixel
    assert ttf.f50 == pytest.approx(math.sqrt(math.log(2) / (2 * math.pi**2)) / s_mm, rel=0.05)
    assert ttf.f10 == pytest.approx(math.sqrt(math.log(10) / (2 * math.pi**2)) / s_mm, rel=0.05)


def test_a_sharper_edge_has_a_higher_f50():
    soft = circular_edge_ttf(blurred_rod(128, (64, 64), 20, 2.5, 100), (64, 64), 20, 0.7)
    sharp = circular_edge_ttf(blurred_rod(128, (64, 64), 20, 1.0, 100), (64, 64), 20, 0.7)
    assert sharp.f50 > 2 * soft.f50


def test_edge_spread_is_the_radial_profile():
    image = blurred_rod(96, (48, 48), 15, 0.01, 100, background=0)
    r, esf = edge_spread(image, (48, 48), 15)
    assert esf[r < 14].min() == pytest.approx(100, abs=1e-6)
    assert esf[r > 16].max() == pytest.approx(0, abs=1e-6)


def test_rods_too_small_or_near_the_border_are_refused():
    image = np.zeros((64, 64))
    with pytest.raises(ValueError, match="3 pixels"):
        circular_edge_ttf(image, (32, 32), 2.0, 1.0)
    with pytest.raises(ValueError, match="background ring"):
        circular_edge_ttf(image, (10, 32), 8.0, 1.0)
    with pytest.raises(ValueError, match="no contrast"):
        circular_edge_ttf(image, (32, 32), 8.0, 1.0)
