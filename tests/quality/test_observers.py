"""Known answers for the model observers: AUC, d', CHO and NPW(E)."""

import math

import numpy as np
import pytest
from scipy import stats

from vagan.quality.observers import (
    auc,
    blurred_disc,
    cho_template,
    d_prime,
    detectability,
    eye_filter,
    fit_disc,
    laguerre_gauss_channels,
    radial_symmetrise,
)

N = 32


def gaussian_signal(amplitude: float, width_px: float) -> np.ndarray:
    """``A exp(-pi r^2 / a^2)``: exactly the shape of the first Laguerre-Gauss channel of width a."""
    c = (N - 1) / 2
    y, x = np.mgrid[0:N, 0:N]
    return amplitude * np.exp(-math.pi * ((x - c) ** 2 + (y - c) ** 2) / width_px**2)


def realisations(signal: np.ndarray, k: int, sigma: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return signal + rng.normal(0, sigma, (k, N, N)), rng.normal(0, sigma, (k, N, N))


def test_auc_is_the_mann_whitney_statistic():
    assert auc(np.array([3.0, 4.0]), np.array([1.0, 2.0])) == 1.0
    assert auc(np.array([1.0, 2.0]), np.array([3.0, 4.0])) == 0.0
    assert auc(np.array([1.0, 1.0]), np.array([1.0, 1.0])) == 0.5
    rng = np.random.default_rng(0)
    a, b = rng.normal(0.5, 1, 37).round(1), rng.normal(0, 1, 41).round(1)  # rounded: many ties
    u = stats.mannwhitneyu(a, b).statistic
    assert auc(a, b) == pytest.approx(u / (a.size * b.size))


def test_d_prime_and_auc_of_gaussian_scores_agree_with_theory():
    rng = np.random.default_rng(1)
    t1, t0 = rng.normal(1.5, 1, 20000), rng.normal(0, 1, 20000)
    assert d_prime(t1, t0) == pytest.approx(1.5, abs=0.03)
    assert auc(t1, t0) == pytest.approx(stats.norm.cdf(1.5 / math.sqrt(2)), abs=0.01)


def test_npw_on_white_noise_reaches_the_ideal_d_prime():
    sigma, signal = 10.0, gaussian_signal(6.0, 6.0)
    ideal = math.sqrt((signal**2).sum()) / sigma  # ||s|| / sigma for a known signal in white noise
    present, absent = realisations(signal, 600, sigma, seed=2)
    result = detectability(present, absent, "npwe", eye=False)
    assert result.d_prime.estimate == pytest.approx(ideal, rel=0.12)
    assert result.d_prime.low < ideal < result.d_prime.high
    assert result.n_train == result.n_test == 300


def test_cho_with_a_channel_matched_to_the_signal_reaches_the_ideal_d_prime():
    sigma, width = 10.0, 6.0
    signal = gaussian_signal(6.0, width)
    ideal = math.sqrt((signal**2).sum()) / sigma
    present, absent = realisations(signal, 600, sigma, seed=3)
    result = detectability(present, absent, "cho", n_channels=3, channel_width_px=width)
    assert result.d_prime.estimate == pytest.approx(ideal, rel=0.12)
    assert result.auc.estimate == pytest.approx(stats.norm.cdf(ideal / math.sqrt(2)), abs=0.04)


def test_cho_template_of_a_channel_shaped_signal_is_that_signal_shape():
    width = 5.0
    channels = laguerre_gauss_channels(N, 4, width)
    signal = gaussian_signal(20.0, width)
    present, absent = realisations(signal, 2000, 1.0, seed=4)
    template = cho_template(present, absent, channels)
    cosine = (template * signal).sum() / np.linalg.norm(template) / np.linalg.norm(signal)
    assert cosine > 0.99


def test_a_strong_signal_gives_auc_one_and_no_signal_gives_one_half():
    present, absent = realisations(gaussian_signal(40.0, 6.0), 200, 5.0, seed=5)
    strong = detectability(present, absent, "cho")
    assert strong.auc.low > 0.99
    rng = np.random.default_rng(6)
    null = detectability(rng.normal(0, 5, (200, N, N)), rng.normal(0, 5, (200, N, N)), "cho")
    assert null.auc.low < 0.5 < null.auc.high
    assert null.d_prime.low < 0 < null.d_prime.high


def test_in_white_noise_the_eye_filter_cannot_beat_the_matched_filter():
    # NPW is the ideal linear observer for a known signal in white noise; NPWE's template differs from it
    present, absent = realisations(gaussian_signal(8.0, 3.0), 400, 10.0, seed=7)
    npw = detectability(present, absent, "npwe", eye=False)
    npwe = detectability(present, absent, "npwe", pixel_mm=0.7)
    assert 0 < npwe.d_prime.estimate < npw.d_prime.estimate


def test_eye_filter_peaks_at_its_stated_frequency():
    pixel, distance = 0.1, 500.0
    eye = eye_filter(256, pixel, peak_cycles_per_degree=4.0, viewing_distance_mm=distance)
    f_mm = np.fft.fftfreq(256, d=pixel)
    peak_mm = abs(f_mm[int(np.argmax(eye[0]))])
    mm_per_degree = distance * math.tan(math.radians(1.0))
    assert peak_mm * mm_per_degree == pytest.approx(4.0, rel=0.05)
    # Burgess's shape: E(f) = f^1.3 exp(-c f^2) with c = 1.3 / (2 * 4^2), f in cycles/degree
    f_deg = np.abs(f_mm[1:60]) * mm_per_degree
    shape = f_deg**1.3 * np.exp(-1.3 / 32 * f_deg**2)
    np.testing.assert_allclose(eye[0, 1:60] / eye[0, 1:60].max(), shape / shape.max(), rtol=1e-9)


def test_too_few_realisations_name_how_many_are_needed():
    present, absent = realisations(gaussian_signal(5.0, 5.0), 30, 1.0, seed=8)
    with pytest.raises(ValueError, match="at least 25 realisations per class in each half.*50 signal-present"):
        detectability(present, absent, "cho", n_channels=5)
    with pytest.raises(ValueError, match="square stacks"):
        detectability(present[:, :10], absent, "npwe")


def test_fit_disc_recovers_the_contrast_and_blur_of_a_noisy_disc():
    truth = blurred_disc(N, 6.0, 12.0, 1.5)
    noisy = truth + np.random.default_rng(9).normal(0, 4.0, truth.shape)
    fitted = fit_disc(radial_symmetrise(noisy), 6.0)
    assert fitted.max() == pytest.approx(12.0, rel=0.08)
    assert np.sqrt(np.mean((fitted - truth) ** 2)) < 0.6  # far below the noise of 4


def test_a_fitted_disc_template_beats_the_raw_estimate_for_a_faint_lesion():
    signal = blurred_disc(N, 5.0, 3.0, 0.5)
    present, absent = realisations(signal, 120, 10.0, seed=10)
    raw = detectability(present, absent, "npwe", pixel_mm=0.7)
    fitted = detectability(present, absent, "npwe", pixel_mm=0.7, disc_radius_px=5.0)
    assert fitted.d_prime.estimate > raw.d_prime.estimate
