"""BM3D's sigma calibrated on non-test pairs: known noise levels give known answers."""

from __future__ import annotations

import numpy as np
import pytest

from vagan.data.patches import SlicePair
from vagan.errors import InputDataError
from vagan.evaluation.bm3d_calibration import (
    body_noise_std_hu,
    calibrate_bm3d,
    spread_slices,
)


def _phantom(size: int = 64) -> np.ndarray:
    """Air around a 40 HU disc with a 200 HU insert: body pixels and edges for BM3D to keep."""
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2
    image = np.full((size, size), -1000.0, np.float32)
    image[xx**2 + yy**2 < (0.42 * size) ** 2] = 40.0
    image[(xx - 8) ** 2 + yy**2 < 36] = 200.0
    return image


def _pairs(sigma: float, n: int = 3, seed: int = 0) -> list[SlicePair]:
    rng = np.random.default_rng(seed)
    clean = _phantom()
    return [SlicePair((clean + rng.normal(0, sigma, clean.shape)).astype(np.float32), clean.copy(), f"P{i}", i)
            for i in range(n)]


def test_body_noise_is_the_std_of_ldct_minus_ndct_inside_the_body() -> None:
    assert body_noise_std_hu(_pairs(25.0)) == pytest.approx(25.0, rel=0.04)
    assert body_noise_std_hu(_pairs(50.0, seed=1)) == pytest.approx(50.0, rel=0.04)


def test_calibration_on_white_noise_picks_about_the_noise_sigma_and_denoises() -> None:
    pairs = _pairs(30.0)
    result = calibrate_bm3d(pairs)
    assert result.diff_std_hu == pytest.approx(30.0, rel=0.05)
    assert 0.7 * 30.0 <= result.sigma_hu <= 1.6 * 30.0  # BM3D's optimum for white noise lies near its sigma
    errors = dict(result.grid)
    assert errors[result.sigma_hu] == min(errors.values())
    assert errors[result.sigma_hu] < 0.6 * 30.0  # clearly below the LDCT's own RMSE
    assert result.patients == ("P0", "P1", "P2") and result.slices == 3
    assert "calibrated on 3 slice(s)" in result.describe()


def test_the_walk_finds_the_exhaustive_optimum_with_fewer_bm3d_runs() -> None:
    """Searching from factor 1 towards lower RMSE picks what trying every factor picks."""
    from vagan.evaluation.bm3d_calibration import FACTORS
    from vagan.inference.bm3d_denoiser import BM3DDenoiser

    pairs = _pairs(40.0, n=1, seed=5)
    result = calibrate_bm3d(pairs)
    body = [p.ndct > -500 for p in pairs]

    def rmse(sigma: float) -> float:
        err = np.concatenate([(BM3DDenoiser(sigma_hu=sigma)(p.ldct).hu[0] - p.ndct)[b] for p, b in zip(pairs, body)])
        return float(np.sqrt(np.mean(err.astype(np.float64) ** 2)))

    exhaustive = {f * result.diff_std_hu: rmse(f * result.diff_std_hu) for f in FACTORS}
    assert result.sigma_hu == pytest.approx(min(exhaustive, key=exhaustive.get))
    assert 2 <= len(result.grid) < len(FACTORS)


def test_calibration_needs_body_pixels_and_pairs() -> None:
    air = np.full((32, 32), -1000.0, np.float32)
    with pytest.raises(InputDataError, match="body pixels"):
        calibrate_bm3d([SlicePair(air + 5, air, "A", 0)])
    with pytest.raises(InputDataError, match="at least one"):
        calibrate_bm3d([])


def test_spread_slices_takes_evenly_spaced_slices_per_patient() -> None:
    clean = _phantom(16)
    pairs = [SlicePair(clean, clean, p, i) for p in ("A", "B") for i in range(10)] + [SlicePair(clean, clean, "C", 0)]
    chosen = spread_slices(pairs, per_patient=3)
    assert [(p.patient, p.index) for p in chosen] == [("A", 0), ("A", 4), ("A", 9), ("B", 0), ("B", 4), ("B", 9),
                                                      ("C", 0)]
