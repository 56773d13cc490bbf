"""BM3D-PSD: the noise autocorrelation and its spectrum (known answers), calibration on non-test
pairs that beats scalar-sigma BM3D on correlated noise, the file it is stored in, the optional extra."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from scipy import ndimage
from typer.testing import CliRunner

from vagan.cli import app
from vagan.data.patches import SlicePair
from vagan.errors import ConfigError, InputDataError
from vagan.evaluation.bm3d_calibration import calibrate_bm3d, calibrate_bm3d_psd
from vagan.inference.noise_psd import (
    load_autocorrelation,
    noise_autocorrelation,
    power_spectrum,
    save_autocorrelation,
)


def correlated_noise(rng: np.random.Generator, shape: tuple[int, int], std: float = 30.0) -> np.ndarray:
    """White noise blurred by a Gaussian of 1.2 px: CT-like noise correlated over a few pixels."""
    noise = ndimage.gaussian_filter(rng.normal(0.0, 1.0, shape), 1.2, mode="wrap")
    return noise / noise.std() * std


def test_autocorrelation_of_white_noise_is_its_variance_at_zero_lag_only():
    rng = np.random.default_rng(0)
    images = [rng.normal(0.0, 20.0, (64, 80)) for _ in range(4)]
    r = noise_autocorrelation(images, [np.ones((64, 80), bool)] * 4, max_lag=3)
    assert r.shape == (7, 7)
    assert r[3, 3] == pytest.approx(400.0, rel=0.05)
    off = r.copy()
    off[3, 3] = 0.0
    assert np.abs(off).max() < 0.05 * 400.0


def test_autocorrelation_counts_only_pairs_inside_the_mask():
    rng = np.random.default_rng(1)
    image = rng.normal(0.0, 10.0, (64, 64))
    mask = np.zeros((64, 64), bool)
    mask[8:40, 10:50] = True
    image_outside = np.where(mask, image, 1e4)  # huge values outside the mask must not count
    r = noise_autocorrelation([image_outside], [mask], max_lag=2)
    inside = image[mask].reshape(32, 40) - image[mask].mean()
    lag01 = np.mean(inside[:, :-1] * inside[:, 1:])  # the direct estimate at lag (0, 1)
    assert r[2, 3] == pytest.approx(lag01, rel=1e-6)
    assert r[2, 2] == pytest.approx(np.mean(inside**2), rel=1e-6)


def test_power_spectrum_follows_bm3d_convention_and_parseval():
    white = np.zeros((5, 5))
    white[2, 2] = 9.0
    psd = power_spectrum(white, (32, 48))
    assert psd.shape == (32, 48) and np.allclose(psd, 9.0 * 32 * 48)  # white noise: sigma^2 M N everywhere
    rng = np.random.default_rng(2)
    r = noise_autocorrelation([correlated_noise(rng, (96, 96)) for _ in range(3)], [np.ones((96, 96), bool)] * 3)
    psd = power_spectrum(r, (64, 64))
    assert psd.min() > 0
    assert psd.mean() / (64 * 64) == pytest.approx(r[r.shape[0] // 2, r.shape[1] // 2], rel=1e-6)  # variance
    assert psd[0, 0] > 5 * psd[32, 32]  # correlated noise: power at low frequencies, little at Nyquist


def _pairs(rng: np.random.Generator, n: int, name: str) -> list[SlicePair]:
    pairs = []
    for k in range(n):
        ndct = np.full((96, 96), -1000.0, np.float32)
        ndct[6:-6, 6:-6] = 40.0
        ndct[20:60, 25:45] = 150.0
        ndct[50:70, 55:80] = 80.0
        ldct = (ndct + correlated_noise(rng, ndct.shape)).astype(np.float32)
        pairs.append(SlicePair(ldct, ndct, patient=name, index=k))
    return pairs


def test_bm3d_psd_calibrated_on_other_pairs_beats_the_best_scalar_sigma_on_correlated_noise():
    rng = np.random.default_rng(3)
    calibration, test = _pairs(rng, 2, "C"), _pairs(rng, 1, "T")[0]
    sigma = calibrate_bm3d(calibration, factors=(1.0, 2.0, 3.0))
    psd = calibrate_bm3d_psd(calibration, factors=(0.75, 1.0, 1.5))
    assert psd.autocorrelation is not None and psd.autocorrelation.shape == (25, 25)
    assert "autocorrelation" in psd.describe() and psd.to_dict()["kind"] == "psd"
    from vagan.inference.bm3d_denoiser import BM3DDenoiser

    body = test.ndct > -500

    def rmse(denoiser) -> float:
        return float(np.sqrt(np.mean((denoiser(test.ldct).hu[0] - test.ndct)[body] ** 2)))

    ldct = float(np.sqrt(np.mean((test.ldct - test.ndct)[body] ** 2)))
    best_sigma = rmse(BM3DDenoiser(sigma_hu=sigma.sigma_hu))
    with_psd = rmse(BM3DDenoiser(autocorrelation=psd.autocorrelation))
    assert with_psd < best_sigma < ldct


def test_autocorrelation_file_round_trip_and_bad_files(tmp_path):
    r = np.zeros((5, 5))
    r[2, 2], r[2, 3], r[2, 1] = 100.0, 40.0, 40.0
    save_autocorrelation(tmp_path / "r.npy", r)
    assert np.array_equal(load_autocorrelation(tmp_path / "r.npy"), r)
    np.save(tmp_path / "even.npy", np.ones((4, 4)))
    np.save(tmp_path / "pickle.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    bomb = tmp_path / "bomb.npy"  # a header that claims a huge array over a few bytes
    header = np.lib.format.header_data_from_array_1_0(np.zeros((2, 2)))
    header["shape"] = (100000, 100000)
    with bomb.open("wb") as handle:
        np.lib.format.write_array_header_1_0(handle, header)
        handle.write(b"\0" * 32)
    for name in ("even.npy", "pickle.npy", "bomb.npy", "missing.npy"):
        with pytest.raises(InputDataError):
            load_autocorrelation(tmp_path / name)


def test_denoise_with_bm3d_psd_needs_its_file_and_says_so_in_one_line(tmp_path):
    runner = CliRunner()
    image = tmp_path / "in.npy"
    np.save(image, np.zeros((1, 32, 32), np.float32))
    for model in ("bm3d-psd", f"bm3d-psd:{tmp_path / 'nope.npy'}"):
        result = runner.invoke(app, ["denoise", "--model", model, str(image), str(tmp_path / "out.npy")])
        lines = [ln for ln in result.output.splitlines() if ln.startswith("error:")]
        assert result.exit_code == 2 and len(lines) == 1 and "autocorrelation" in lines[0]
    assert not (tmp_path / "out.npy").exists()
    r = np.zeros((3, 3))
    r[1, 1] = 400.0
    save_autocorrelation(tmp_path / "r.npy", r)
    result = runner.invoke(app, ["denoise", "--model", f"bm3d-psd:{tmp_path / 'r.npy'}", str(image),
                                 str(tmp_path / "out.npy")])
    assert result.exit_code == 0, result.output
    assert np.load(tmp_path / "out.npy").shape == (1, 32, 32)


def test_a_missing_bm3d_extra_is_one_clear_error(monkeypatch):
    from vagan.inference.bm3d_denoiser import BM3DDenoiser

    monkeypatch.setitem(sys.modules, "bm3d", None)  # import bm3d now raises ImportError
    with pytest.raises(ConfigError, match=r'pip install "vagan\[bm3d\]"'):
        BM3DDenoiser(sigma_hu=10.0)
