"""Fresh low-dose noise every epoch, at any dose, from a pool of four unit noise images per slice
(vagan.data.noise_pool): it has the simulator's statistics, pairs with its series, and trains."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from support import tiny_config
from typer.testing import CliRunner

from vagan.cli import app
from vagan.data.noise_pool import load_pool, mix, pool_path
from vagan.data.paired import load_slice_pairs
from vagan.data.patches import PatchPairDataset
from vagan.errors import InputDataError
from vagan.physics.simulate import LowDoseSimulator, SimulationConfig, dose_noise_weights

FAST = ["--set", "simulation.n_views=360", "--set", "simulation.n_detectors=368",
        "--set", "simulation.detector_spacing_mm=2.5716"]


def ellipse(size: int = 96, pixel: float = 3.5) -> torch.Tensor:
    y, x = torch.meshgrid(torch.arange(size) - (size - 1) / 2, torch.arange(size) - (size - 1) / 2, indexing="ij")
    hu = torch.full((size, size), -1000.0)
    hu[((x * pixel / 150) ** 2 + (y * pixel / 110) ** 2) <= 1] = 0.0
    return hu


@pytest.mark.parametrize("dose", [0.1, 0.25, 0.5])
def test_noise_mixed_from_the_pool_has_the_simulators_statistics(dose):
    cfg = SimulationConfig(n_views=288, n_detectors=184, detector_spacing_mm=4 * 1.2858, i0=2e4,
                           electronic_noise_var=30.0)
    sim = LowDoseSimulator(cfg, (96, 96), 3.5)
    hu = ellipse().expand(8, 96, 96)
    y, x = torch.meshgrid(torch.arange(96) - 47.5, torch.arange(96) - 47.5, indexing="ij")
    roi = ((x * 3.5 / 100) ** 2 + (y * 3.5 / 70) ** 2) <= 1
    gen = torch.Generator().manual_seed(0)
    direct = (sim(hu, dose, gen, source="ndct") - hu)[:, roi]
    pool = sim.noise_components(sim.line_integrals(hu), None, gen, realisations=2).numpy()
    for angle in (0.0, 1.1, 4.0):  # any mixing angle is another realisation with the same statistics
        mixed = torch.from_numpy(mix(pool, dose, angle, angle))[:, roi]
        assert float(mixed.std()) == pytest.approx(float(direct.std()), rel=0.06)
        assert abs(float(mixed.mean())) < 0.1 * float(direct.std())
    w_q, w_e = dose_noise_weights(dose)
    assert w_q == pytest.approx(math.sqrt((1 - dose) / dose))


@pytest.fixture(scope="module")
def pooled(tmp_path_factory):
    """Two patients of 3 slices (64^2) with noise pools."""
    from vagan.io.dicom import write_dicom_series

    base = tmp_path_factory.mktemp("pool")
    for pid in ("A", "B"):
        volume = np.full((3, 64, 64), -1000.0, np.float32)
        volume[:, 8:-8, 6:-6] = 40.0
        volume[:, 20:30, 20:40] = 200.0
        write_dicom_series(volume, base / "in" / pid, series_description="ndct", patient_id=pid,
                           pixel_spacing_mm=(2.0, 2.0), slice_thickness_mm=2.0)
    result = CliRunner().invoke(app, ["simulate", str(base / "data"), "--from", str(base / "in"), "--dose", "0.25",
                                      "--device", "cpu", "--set", "noise_pool=true", "--set", "exposure=config",
                                      "--set", "simulation.i0=20000", *FAST])
    assert result.exit_code == 0, result.output
    return base / "data"


def test_the_written_ldct_is_the_pools_noise_at_the_dataset_dose(pooled):
    pairs = load_slice_pairs(pooled, ["A"], "any", with_noise_pool=True)
    assert len(pairs) == 3 and all(p.noise is not None and p.noise.shape == (2, 2, 64, 64) for p in pairs)
    for pair in pairs:
        expected = pair.ndct + mix(pair.noise, 0.25)
        assert np.abs(pair.ldct - expected).max() < 0.5  # DICOM stores whole HU
        assert pair.ldct.std() > pair.ndct.std()


def test_each_epoch_sees_new_noise_and_the_same_epoch_the_same(pooled):
    pairs = load_slice_pairs(pooled, ["A", "B"], "any", with_noise_pool=True)
    data = PatchPairDataset(pairs, patch_size=32, patches_per_slice=4, seed=0, augment=False, doses=(0.25,))
    n = len(data)
    first, again, later = data[3], data[3], data[3 + n]
    assert torch.equal(first["ldct"], again["ldct"])  # a resumed run sees exactly the same
    assert torch.equal(first["ndct"], later["ndct"]) and not torch.equal(first["ldct"], later["ldct"])


def test_noise_follows_the_drawn_dose(pooled):
    pairs = load_slice_pairs(pooled, ["A", "B"], "any", with_noise_pool=True)

    def noise_std(dose: float) -> float:
        data = PatchPairDataset(pairs, patch_size=32, patches_per_slice=8, seed=1, augment=False, doses=(dose,))
        diffs = [(data[i]["ldct"] - data[i]["ndct"]).flatten() for i in range(len(data))]
        return float(torch.cat(diffs).std())

    ratio = noise_std(0.1) / noise_std(0.5)
    assert ratio == pytest.approx(dose_noise_weights(0.1)[0] / dose_noise_weights(0.5)[0], rel=0.1)


def test_a_pool_of_another_series_or_no_pool_is_refused(pooled, tmp_path):
    import shutil

    copy = tmp_path / "data"
    shutil.copytree(pooled, copy)
    shutil.copy(pool_path(copy / "B", "2mm"), pool_path(copy / "A", "2mm"))  # B's pool under A: same positions
    a_positions = np.array([0.0, 1.0, 2.0]) + 500.0
    with pytest.raises(InputDataError, match="positions"):
        load_pool(pool_path(copy / "A", "2mm"), a_positions, (3, 64, 64))
    pool_path(copy / "A", "2mm").unlink()
    with pytest.raises(InputDataError, match="no noise pool"):
        load_slice_pairs(copy, ["A"], "any", with_noise_pool=True)
    with pytest.raises(ValueError, match="noise pool for every training slice"):
        PatchPairDataset(load_slice_pairs(copy, ["A"], "any"), patch_size=32, doses=(0.25,))


def test_training_with_fresh_noise_at_several_doses_runs(pooled, tmp_path):
    from vagan.training.trainer import train

    common = ["data.split={train: [A], val: [B]}", f"data.root={pooled}", "data.thickness=any",
              "data.patches_per_slice=2", "data.val_slices=1", "data.train_doses=[0.1, 0.5]"]
    cfg = tiny_config("g_psnr", "stages.*.max_steps=3", *common)
    train(cfg, tmp_path / "run")
    assert (tmp_path / "run").is_dir()
