"""Known answers for the noise power spectrum (ICRU 87 eq. 11.1)."""

import numpy as np
import pytest
from scipy import ndimage

from vagan.quality.nps import detrend_rois, ensemble_noise, noise_power_spectrum


def white(k: int, n: int, sigma: float, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, sigma, size=(k, n, n))


def test_white_noise_is_flat_at_variance_times_pixel_area():
    sigma, pixel = 10.0, 0.5
    nps = noise_power_spectrum(white(300, 64, sigma), pixel)
    expected = sigma**2 * pixel**2  # 25 HU^2 mm^2
    radial = nps.radial()
    assert radial.values.mean() == pytest.approx(expected, rel=0.02)
    assert np.abs(radial.values[2:] / expected - 1).max() < 0.12  # flat in every annulus
    assert radial.frequencies[-1] == pytest.approx(1 / (2 * pixel))  # up to Nyquist


def test_integral_equals_the_sample_variance():
    roi = np.random.default_rng(1).gamma(2.0, 5.0, size=(1, 32, 32))  # any values, not only Gaussian
    nps = noise_power_spectrum(roi, 0.7)
    assert nps.variance == pytest.approx(roi.var(ddof=1), rel=1e-10)


def test_gaussian_filtered_noise_matches_its_analytic_spectrum():
    sigma, pixel, s_px = 20.0, 0.7, 1.5
    rois = np.stack([ndimage.gaussian_filter(r, s_px, mode="wrap") for r in white(300, 64, sigma, seed=2)])
    radial = noise_power_spectrum(rois, pixel).radial()
    s_mm = s_px * pixel
    # white NPS times |H(f)|^2 with H the Gaussian's transfer function exp(-2 pi^2 s^2 f^2)
    analytic = sigma**2 * pixel**2 * np.exp(-4 * np.pi**2 * s_mm**2 * radial.frequencies**2)
    strong = analytic > 0.05 * analytic.max()
    np.testing.assert_allclose(radial.values[strong], analytic[strong], rtol=0.15)
    white_radial = noise_power_spectrum(white(50, 64, sigma), pixel).radial()
    assert radial.mean_frequency < 0.5 * white_radial.mean_frequency  # smoothing shifts texture low
    assert radial.peak_frequency < 0.2


def test_poly2_detrending_removes_shading_that_the_mean_keeps():
    n = 48
    y, x = np.mgrid[0:n, 0:n] / n
    shading = 80 * (x - 0.5) ** 2 + 40 * y
    rois = white(40, n, 5.0, seed=3) + shading
    assert noise_power_spectrum(rois, 1.0, "poly2").noise_std == pytest.approx(5.0, rel=0.03)
    assert noise_power_spectrum(rois, 1.0, "mean").noise_std > 8.0
    assert np.allclose(detrend_rois(shading[None], "poly2"), 0, atol=1e-9)


def test_ensemble_noise_has_unbiased_variance_and_no_object():
    obj = np.random.default_rng(4).uniform(-500, 500, size=(32, 32))
    noisy = obj + white(6, 32, 10.0, seed=5)
    noise = ensemble_noise(noisy)
    assert np.abs(noise.mean(axis=0)).max() < 1e-9  # the object is gone
    many = ensemble_noise(obj + white(400, 32, 10.0, seed=6))
    assert many.var() == pytest.approx(100.0, rel=0.02)


@pytest.mark.parametrize("shape", [(10, 16, 12), (16, 16), (2, 4, 4)])
def test_bad_roi_shapes_are_refused(shape):
    with pytest.raises(ValueError, match="ROIs"):
        noise_power_spectrum(np.zeros(shape), 1.0)


def test_bad_pixel_size_and_nan_are_refused():
    with pytest.raises(ValueError, match="pixel_mm"):
        noise_power_spectrum(np.zeros((2, 16, 16)), 0.0)
    rois = np.zeros((2, 16, 16))
    rois[0, 3, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        noise_power_spectrum(rois, 1.0)
