"""Every shipped model, on a real scanner slice (pydicom-data's abdominal CT) with quarter-dose noise
inserted by vagan's simulator: it must lower the RMSE against the slice clearly and beat BM3D with a
sigma calibrated on that very pair (which favours BM3D). Runs whenever a model is shipped."""

from __future__ import annotations

import shutil

import numpy as np
import pydicom
import pytest
import torch

from vagan.data.patches import SlicePair
from vagan.evaluation.bm3d_calibration import calibrate_bm3d
from vagan.inference.bm3d_denoiser import BM3DDenoiser
from vagan.inference.denoise import NetworkDenoiser
from vagan.inference.pretrained import load_shipped, shipped_models
from vagan.io.dicom import read_dicom_series
from vagan.io.windowing import BODY_THRESHOLD_HU
from vagan.physics.simulate import LowDoseSimulator, SimulationConfig

SHIPPED = sorted(shipped_models())


@pytest.fixture(scope="module")
def noisy_real_slice(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pancreas")
    shutil.copy(pydicom.data.get_testdata_file("explicit_VR-UN.dcm"), folder / "slice.dcm")
    volume = read_dicom_series(folder)
    clean = volume.hu[0]
    simulator = LowDoseSimulator(SimulationConfig(), clean.shape, float(volume.pixel_spacing_mm[0]))
    noisy = simulator(torch.from_numpy(clean), 0.25, generator=torch.Generator().manual_seed(0), source="ndct")
    return noisy.numpy().astype(np.float32), clean


def _rmse(image: np.ndarray, clean: np.ndarray) -> float:
    body = clean > BODY_THRESHOLD_HU
    return float(np.sqrt(np.mean((image - clean)[body].astype(np.float64) ** 2)))


@pytest.mark.skipif(not SHIPPED, reason="no pretrained model is shipped in this version")
@pytest.mark.parametrize("name", SHIPPED)
def test_a_shipped_model_clearly_denoises_a_real_slice_and_beats_calibrated_bm3d(name, noisy_real_slice) -> None:
    noisy, clean = noisy_real_slice
    before = _rmse(noisy, clean)
    after = _rmse(NetworkDenoiser(load_shipped(name))(noisy).hu[0], clean)
    sigma = calibrate_bm3d([SlicePair(noisy, clean, "pancreas", 0)]).sigma_hu
    bm3d = _rmse(BM3DDenoiser(sigma_hu=sigma)(noisy).hu[0], clean)
    assert after <= 0.75 * before, f"{name}: RMSE {before:.1f} -> {after:.1f} HU"
    assert after < bm3d, f"{name}: {after:.1f} HU against calibrated BM3D's {bm3d:.1f} HU"
