"""Noise insertion into real series follows each series' own exposure (docs/design.md, "Low-dose
simulation from real series"): a known i0 is recovered, a quarter dose adds sqrt(3) x the series'
own noise with no mean shift, and a wide field of view and padding are kept."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from vagan.data.noise_matching import exposure_profile, match_exposure, measured_noise, roi_std
from vagan.data.simulated import series_simulator
from vagan.physics.simulate import LowDoseSimulator, SimulationConfig, covering_config

SMALL = SimulationConfig(n_views=288, n_detectors=184, detector_spacing_mm=4 * 1.2858)
SHAPE, PIXEL = (96, 96), 3.5
# real slices keep the scanner's channels (the field of view) but a third of its views: the matching does
# not depend on the view count, and the tests run three times faster
REAL = SimulationConfig(n_views=384)
REAL_SERIES = Path(__file__).resolve().parents[3] / "shared" / "data" / "real-ct" / "pancreatic-ct-cbct-seg"


def water_body(shape=SHAPE, pixel=PIXEL, half_axes=(150.0, 110.0)) -> np.ndarray:
    h, w = shape
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    x = (x - (w - 1) / 2) * pixel
    y = (y - (h - 1) / 2) * pixel
    hu = np.full(shape, -1000.0, np.float32)
    hu[(x / half_axes[0]) ** 2 + (y / half_axes[1]) ** 2 <= 1] = 0.0
    return hu


def test_a_known_exposure_is_recovered_from_the_noise_of_the_scan():
    truth = np.stack([water_body()] * 4)
    true_i0 = 4.0e4
    scanner = LowDoseSimulator(dataclasses.replace(SMALL, i0=true_i0), SHAPE, PIXEL)
    gen = torch.Generator().manual_seed(0)
    ndct = scanner(torch.from_numpy(truth), 1.0, gen, source="truth").numpy()
    # start the matching from another i0: it has to find the scan's own
    matched = match_exposure(LowDoseSimulator(dataclasses.replace(SMALL, i0=5.0e5), SHAPE, PIXEL), ndct, PIXEL,
                             None, gen)
    assert matched.profile_from == "water-equivalent diameter"
    assert np.median(matched.i0) == pytest.approx(true_i0, rel=0.2)
    assert matched.residual == pytest.approx(1.0, abs=0.05)


def test_quarter_dose_adds_sqrt3_times_the_series_own_noise_without_a_shift():
    truth = np.stack([water_body()] * 4)
    gen = torch.Generator().manual_seed(1)
    ndct = LowDoseSimulator(dataclasses.replace(SMALL, i0=2.0e4), SHAPE, PIXEL)(
        torch.from_numpy(truth), 1.0, gen, source="truth").numpy()
    simulator = series_simulator(SMALL, "matched", SHAPE, PIXEL, torch.device("cpu"))
    matched = match_exposure(simulator, ndct, PIXEL, None, gen)
    quarter = simulator(torch.from_numpy(ndct), 0.25, gen, source="ndct", i0=torch.as_tensor(matched.i0)).numpy()
    added = quarter - ndct
    ratios = []
    for k in range(len(ndct)):
        rois = measured_noise(ndct[k], PIXEL)
        ratios.append(roi_std(added[k], rois) / rois.noise_hu)
    assert np.median(ratios) == pytest.approx(math.sqrt(3.0), rel=0.15)
    interior = np.stack([water_body(half_axes=(120.0, 80.0))] * 4) == 0.0
    assert abs(added[interior].mean()) <= 2.0


def test_exposure_profile_follows_the_tube_current_or_the_patient_size():
    hu = np.stack([water_body(half_axes=(a, a)) for a in (80.0, 100.0, 120.0)])
    headers = [{"XRayTubeCurrent": mA} for mA in (200, 400, 800)]
    profile, source = exposure_profile(hu, PIXEL, 0.0192, headers)
    assert source == "XRayTubeCurrent" and profile.tolist() == pytest.approx([0.5, 1.0, 2.0])
    profile, source = exposure_profile(hu, PIXEL, 0.0192, [{"XRayTubeCurrent": "n/a"}] * 3)
    assert source == "water-equivalent diameter"
    # exp(mu * (WED - median) / 2): 40 mm more water -> exp(0.384) more photons
    assert profile[1] == pytest.approx(1.0) and profile[2] == pytest.approx(math.exp(0.0192 * 40 / 2), rel=0.05)
    assert profile[0] == pytest.approx(math.exp(-0.0192 * 40 / 2), rel=0.05)


def test_a_wide_field_of_view_is_measured_and_padding_passes_through():
    shape, pixel = (96, 96), 6.0  # 576 mm across: wider than the default 502 mm field of view
    hu = water_body(shape, pixel, half_axes=(270.0, 200.0))
    hu[:6, :6] = -3024.0  # padding outside a scanner's reconstruction circle
    assert SMALL.make_geometry().fov_radius_mm < 0.5 * 96 * pixel
    widened = covering_config(SMALL, shape, pixel)
    assert widened.make_geometry().fov_radius_mm >= 0.5 * 96 * pixel
    simulator = series_simulator(SMALL, "matched", shape, pixel, torch.device("cpu"))
    out = simulator(torch.from_numpy(hu), 0.25, torch.Generator().manual_seed(0), source="ndct").numpy()
    assert np.array_equal(out[:6, :6], hu[:6, :6])  # padding unchanged
    assert np.array_equal(out[-1, -1], hu[-1, -1])  # the corner outside every field of view keeps its value
    body_edge = (hu == 0.0) & (np.abs(np.arange(96) - 47.5)[None, :] * pixel > 240.0)
    assert body_edge.any() and np.all(out[body_edge] != hu[body_edge])  # measured, with noise, to the edge


@pytest.mark.skipif(not REAL_SERIES.is_dir(), reason=f"real CT not found at {REAL_SERIES} (shared data)")
def test_a_real_large_patient_gets_realistic_quarter_dose_noise(tmp_path):
    """Pancreatic-CT-CBCT-SEG (TCIA, CC BY 4.0), 550 mm field of view: with one fixed i0 a quarter dose
    added 169 HU with a -34 HU shift in the body; matched to the series it must add sqrt(3) x the
    series' own noise and shift soft tissue by at most 2 HU."""
    from scipy import ndimage

    from vagan.io.dicom import read_dicom_series

    import shutil

    (tmp_path / "two").mkdir()
    for name in ("1-041.dcm", "1-101.dcm"):  # a chest and an abdomen slice of the series, read alone
        shutil.copy(REAL_SERIES / name, tmp_path / "two" / name)
    volume = read_dicom_series(tmp_path / "two")
    hu, headers = volume.hu, volume.headers
    pixel = float(volume.pixel_spacing_mm[0])
    simulator = series_simulator(REAL, "matched", hu.shape[1:], pixel, torch.device("cpu"))
    gen = torch.Generator().manual_seed(0)
    matched = match_exposure(simulator, hu, pixel, headers, gen)
    assert matched.profile_from == "XRayTubeCurrent"
    quarter = simulator(torch.from_numpy(hu), 0.25, gen, source="ndct", i0=torch.as_tensor(matched.i0)).numpy()
    added = quarter - hu
    for k in range(len(hu)):
        rois = measured_noise(hu[k], pixel)
        assert roi_std(added[k], rois) / rois.noise_hu == pytest.approx(math.sqrt(3.0), rel=0.3)
        smooth = ndimage.uniform_filter(hu[k], 7)
        soft = (smooth > -100) & (smooth < 150) & ndimage.binary_erosion(hu[k] > -300, iterations=5)
        assert abs(added[k][soft].mean()) <= 2.0
        assert added[k][soft].std() <= 3.0 * math.sqrt(3.0) * rois.noise_hu  # no photon-starved streaks


@pytest.mark.parametrize("name", ["693_UNCR.dcm", "explicit_VR-UN.dcm"])
def test_real_slices_of_other_scanners_and_fields_of_view_get_sqrt3_their_noise(name, tmp_path):
    """pydicom-data's real slices: a 245 mm head (5 mm, 0.48 mm pixels) and a 440 mm abdomen (JPEG 2000)."""
    import shutil

    from scipy import ndimage

    from vagan.io.dicom import read_dicom_series

    pydicom_data = pytest.importorskip("pydicom.data")
    try:
        source = pydicom_data.get_testdata_file(name, download=False)
    except (TypeError, ValueError):
        source = None
    if source is None:
        pytest.skip(f"{name} is not in the installed pydicom-data")
    (tmp_path / "s").mkdir()
    shutil.copy(source, tmp_path / "s" / name)
    try:
        volume = read_dicom_series(tmp_path / "s")
    except Exception as err:  # noqa: BLE001 - a missing JPEG 2000 decoder
        pytest.skip(f"{name} cannot be decoded here: {err}")
    pixel = float(volume.pixel_spacing_mm[0])
    simulator = series_simulator(REAL, "matched", volume.hu.shape[1:], pixel, torch.device("cpu"))
    gen = torch.Generator().manual_seed(0)
    matched = match_exposure(simulator, volume.hu, pixel, volume.headers, gen)
    assert matched.noise_hu is not None
    quarter = simulator(torch.from_numpy(volume.hu), 0.25, gen, source="ndct", i0=torch.as_tensor(matched.i0)).numpy()
    added, hu = quarter[0] - volume.hu[0], volume.hu[0]
    rois = measured_noise(hu, pixel)
    assert roi_std(added, rois) / rois.noise_hu == pytest.approx(math.sqrt(3.0), rel=0.3)
    smooth = ndimage.uniform_filter(hu, 7)
    soft = (smooth > -100) & (smooth < 150) & ndimage.binary_erosion(hu > -300, iterations=5)
    assert abs(added[soft].mean()) <= 2.0
