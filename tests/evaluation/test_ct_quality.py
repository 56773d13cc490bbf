"""The ``ct-quality`` FID feature net: its training learns dose and blur, the shipped weights see noise and
blur on a phantom they never saw, they load only as checked tensors, and FID on body tiles counts tiles."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from support import write_tiny_dataset

from vagan.data.patches import SlicePair
from vagan.errors import CheckpointError, ConfigError, InputDataError, MissingResourceError, OutputExistsError
from vagan.evaluation.ct_quality_net import LOG2_DOSE_SCALE, CTQualityNet, default_weights, load_ct_quality
from vagan.evaluation.ct_quality_training import TrainingSettings, run_training, save, train_ct_quality
from vagan.evaluation.eval_config import EvaluationConfig
from vagan.evaluation.feature_nets import body_tiles, build_feature_net, extract_features, fid_samples
from vagan.evaluation.fid import fid_from_features
from vagan.evaluation.runner import evaluate
from vagan.io.windowing import DISPLAY_RANGE


def _pairs(n: int, size: int, seed: int) -> list[SlicePair]:
    """Smooth 'anatomy' inside a body, with white unit noise images (2, 2, H, W) of 20 HU."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] / size
    out = []
    for i in range(n):
        ndct = (40 + 30 * np.sin(6 * xx + i) * np.cos(5 * yy)).astype(np.float32)
        noise = (20.0 * rng.standard_normal((2, 2, size, size))).astype(np.float16)
        out.append(SlicePair(ndct, ndct, patient="P", index=i, noise=noise))
    return out


def test_training_learns_dose_and_blur_from_noise_pools():
    settings = TrainingSettings(steps=250, batch_size=16, patch=24, lr=3e-3, val_patches=128)
    _, meta = train_ct_quality(_pairs(4, 64, 0), _pairs(2, 64, 1), settings, progress=False)
    val = meta["validation"]
    assert val["spearman_dose"] > 0.8 and val["spearman_blur"] > 0.5, val  # other slices than it trained on
    assert val["rmse_log2_dose"] < 0.25 * LOG2_DOSE_SCALE  # doses span LOG2_DOSE_SCALE in log2


def test_training_refuses_bad_slices_with_a_clear_error_instead_of_hanging():
    pairs = [SlicePair(np.zeros((96, 96), np.float32), np.zeros((96, 96), np.float32))]
    with pytest.raises(InputDataError, match="noise pools"):
        train_ct_quality(pairs, _pairs(1, 96, 1), TrainingSettings(steps=1), progress=False)
    with pytest.raises(InputDataError, match="smaller than the 80x80 crops"):
        train_ct_quality(_pairs(2, 64, 0), _pairs(1, 96, 1), TrainingSettings(steps=1), progress=False)
    air = [SlicePair(np.full((96, 96), -1000.0, np.float32), np.full((96, 96), -1000.0, np.float32),
                     noise=np.zeros((2, 2, 96, 96), np.float16))]
    with pytest.raises(InputDataError, match="no 80x80 crop inside the body"):
        train_ct_quality(air, _pairs(1, 96, 1), TrainingSettings(steps=1), progress=False)
    with pytest.raises(ConfigError, match="min_dose"):
        TrainingSettings(min_dose=1.5)


def test_training_writes_a_new_folder_whole_that_loads_back_and_refuses_an_existing_one(tmp_path, monkeypatch):
    import vagan.data.paired

    monkeypatch.setattr(vagan.data.paired, "load_slice_pairs",
                        lambda root, patients, *a, **k: _pairs(2, 96, len(patients[0])))
    settings = TrainingSettings(steps=2, batch_size=4, val_patches=8)
    weights = run_training(tmp_path / "data", tmp_path / "net", ["A"], ["BB"], settings=settings, progress=False)
    net, name = load_ct_quality(weights)
    meta = json.loads((tmp_path / "net" / "ct-quality.json").read_text())
    assert name == f"ct-quality({meta['sha256'][:8]})" and meta["training_data"]["patients"] == ["A"]
    assert meta["settings"]["steps"] == 2 and set(meta["validation"]) >= {"rmse_log2_dose", "spearman_blur"}
    before = weights.read_bytes()
    with pytest.raises(OutputExistsError):
        run_training(tmp_path / "data", tmp_path / "net", ["A"], ["BB"], settings=settings, progress=False)
    assert weights.read_bytes() == before
    with pytest.raises(ConfigError, match="both training and validation"):
        run_training(tmp_path / "data", tmp_path / "other", ["A"], ["A"], settings=settings, progress=False)
    assert not (tmp_path / "other").exists()


def test_weights_load_back_named_by_checksum_and_damaged_files_are_checkpoint_errors(tmp_path):
    net = CTQualityNet()
    (tmp_path / "w").mkdir()
    path = save(net, {"validation": {}}, tmp_path / "w")
    loaded, name = load_ct_quality(path)
    x = torch.rand(2, 1, 32, 32)
    assert torch.equal(loaded(x), net.eval()(x)) and loaded(x).shape == (2, 240)
    meta = tmp_path / "w" / "ct-quality.json"
    digest = json.loads(meta.read_text())["sha256"]
    assert name == f"ct-quality({digest[:8]})"
    save_file({"stages.0.0.weight": torch.zeros(16, 1, 3, 3)}, str(path))  # changed after its checksum was written
    with pytest.raises(CheckpointError, match="SHA-256"):
        load_ct_quality(path)
    meta.write_text("{not json")
    with pytest.raises(CheckpointError, match="no readable SHA-256"):
        load_ct_quality(path)
    meta.unlink()  # a file of one's own without a record: loaded, but it must hold the net's tensors
    with pytest.raises(CheckpointError, match="does not hold ct-quality weights"):
        load_ct_quality(path)
    path.write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="does not hold ct-quality weights"):
        load_ct_quality(path)
    with pytest.raises(MissingResourceError, match="nothing is downloaded"):
        load_ct_quality(tmp_path / "missing.safetensors")


def test_fid_samples_are_the_tiles_of_the_reference_body_at_the_same_places_for_every_method():
    ndct = np.full((2, 48, 48), -1000.0, np.float32)
    ndct[0, 6:-6, 6:-6] = 40.0  # corner tiles hold 10x10 body pixels (mean about -594 HU), edge tiles 10x16
    ndct[0, 16:32, 32:48] = 500.0  # one tile told apart by its contents
    assert body_tiles(ndct, 16) == [(0, 0, 16), (0, 16, 0), (0, 16, 16), (0, 16, 32), (0, 32, 16)]
    assert body_tiles(ndct[:, :8, :8], 16) == []
    method = np.full_like(ndct, -1000.0)  # a method that erased the body: sampled where the reference's body is
    method[0, 16:32, 32:48] = 7.0
    tiles = fid_samples(method, ndct, 16)
    assert tiles.shape == (5, 16, 16) and np.all(tiles[3] == 7.0) and np.all(tiles[[0, 1, 2, 4]] == -1000.0)
    assert np.all(fid_samples(ndct, ndct, 16)[3] == 500.0)
    assert fid_samples(ndct[1:], ndct[1:], 16).shape == (0, 16, 16) and fid_samples(method, ndct, 0) is method


def _dataset_with_air_slices(root):
    """Test patient T002: two slices of air, then two with a body; T000 trains (BM3D is not used)."""
    from vagan.io.dicom import write_dicom_series

    rng = np.random.default_rng(0)
    for pid in ("T000", "T002"):
        ndct = np.full((4, 48, 48), -1000.0, np.float32)
        ndct[2:, 6:-6, 6:-6] = 40.0
        ldct = ndct + rng.normal(0, 30, ndct.shape).astype(np.float32)
        for sub, hu in (("full_1mm", ndct), ("quarter_1mm", ldct)):
            write_dicom_series(hu, root / pid / sub, series_description=sub, patient_id=pid,
                               pixel_spacing_mm=(0.7, 0.7), slice_thickness_mm=1.0)
    return root


def _evaluate_fid(out, root, tile: int, **extra):
    cfg = EvaluationConfig.from_dict({
        "methods": ["ldct", "ndct"], "data_root": str(root), "split": {"train": ["T000"], "test": ["T002"]},
        "patches": {"size": 32}, "fid_net": "random-ct", "fid_tile": tile, "timing_slices": 0, "figure_slices": 1,
        **extra})
    return evaluate(cfg, out, progress=False), (out / "report.md").read_text()


def test_fid_on_body_tiles_counts_tiles_and_skips_chunks_without_body(tmp_path):
    root = write_tiny_dataset(tmp_path / "data")
    result, report = _evaluate_fid(tmp_path / "out", root, 16)
    assert {(r.n_real, r.n_fake) for r in result.fid.values()} == {(4 * 5, 4 * 5)}
    assert {r.feature_net for r in result.fid.values()} == {"random-ct-untrained(seed=0)/tile16"}
    assert result.fid["NDCT (oracle)"].value == pytest.approx(0.0, abs=1e-9) and result.fid["LDCT"].value > 0
    assert "16x16 tiles inside the body" in report and "n = 20 tiles" in report
    # batches of 2 slices: the first holds only air, and is left out of both sets
    result, _ = _evaluate_fid(tmp_path / "air-out", _dataset_with_air_slices(tmp_path / "air"), 16, batch_size=2)
    assert {(r.n_real, r.n_fake) for r in result.fid.values()} == {(2 * 5, 2 * 5)}


def test_too_few_body_tiles_skip_fid_and_the_report_says_why(tmp_path):
    result, report = _evaluate_fid(tmp_path / "out64", write_tiny_dataset(tmp_path / "data"), 64)  # 48 px slices
    assert result.fid == {}
    assert "FID was not computed: fewer than 2 test 64x64 tiles inside the body (fid_tile=0 takes whole slices)" in report
    result, report = _evaluate_fid(tmp_path / "out0", tmp_path / "data", 0)
    assert {r.n_real for r in result.fid.values()} == {4} and "whole slices" in report
    with pytest.raises(ConfigError, match="fid_tile"):
        EvaluationConfig.from_dict({"methods": ["ldct"], "fid_tile": 8})


# ------------------------------------------------------------------ the shipped weights, on a phantom


@pytest.fixture(scope="module")
def phantom_scans():
    """One phantom slice (256^2 at 1 mm) scanned at full dose and at 25% and 10% by vagan's simulator:
    anatomy and a noise simulator the shipped net never saw (it trained on a real patient)."""
    from vagan.physics.phantom import make_phantom_slice
    from vagan.physics.simulate import LowDoseSimulator, SimulationConfig

    truth = torch.from_numpy(make_phantom_slice(256, 1.0, np.random.default_rng(5))).float()[None]
    sim = LowDoseSimulator(SimulationConfig(), (256, 256), 1.0)
    gen = torch.Generator().manual_seed(0)
    full, quarter = sim.scan_pair(truth, 0.25, generator=gen)
    full2, tenth = sim.scan_pair(truth, 0.10, generator=gen)
    return {k: v[0].numpy().astype(np.float32) for k, v in
            dict(full=full, full2=full2, quarter=quarter, tenth=tenth).items()}


def _tiles(scans: dict[str, np.ndarray], what: str) -> np.ndarray:
    return fid_samples(scans[what][None], scans["full"][None], 32)


def test_shipped_weights_exist_and_load():
    assert default_weights().is_file()
    net = build_feature_net("ct-quality")
    assert net.name.startswith("ct-quality(") and net.module.num_features == 240


def test_shipped_net_ranks_dose_and_blur_on_a_phantom_it_never_saw(phantom_scans):
    from scipy.ndimage import gaussian_filter

    net, _ = load_ct_quality()

    def predicted(images: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            x = DISPLAY_RANGE.to_unit(torch.from_numpy(images)[:, None])
            return net.predict(x).numpy().mean(axis=0)

    full, quarter, tenth = (predicted(_tiles(phantom_scans, k)) for k in ("full", "quarter", "tenth"))
    assert tenth[0] < quarter[0] < full[0]  # less dose, more noise: lower log2 dose
    blurred = predicted(np.stack([gaussian_filter(t, 1.5) for t in _tiles(phantom_scans, "full")]))
    assert blurred[1] > full[1] + 0.2  # blur seen (targets are blur px / 2)


def test_shipped_net_fid_separates_noise_and_blur_from_a_second_full_dose_scan(phantom_scans):
    from scipy.ndimage import gaussian_filter

    blurred = np.stack([gaussian_filter(t, 1.5) for t in _tiles(phantom_scans, "full")])

    def fids(net) -> dict[str, float]:
        """FID against the full-dose tiles, relative to a second full-dose scan (fresh noise: sampling only)."""
        real = extract_features(net, _tiles(phantom_scans, "full"))
        values = {k: fid_from_features(real, extract_features(net, v), net.name).value for k, v in
                  (("full2", _tiles(phantom_scans, "full2")), ("quarter", _tiles(phantom_scans, "quarter")),
                   ("tenth", _tiles(phantom_scans, "tenth")), ("blurred", blurred))}
        return {k: v / values["full2"] for k, v in values.items()}

    trained, untrained = fids(build_feature_net("ct-quality")), fids(build_feature_net("random-ct"))
    assert trained["tenth"] > trained["quarter"] > 10 and trained["blurred"] > 10
    assert trained["quarter"] > 3 * untrained["quarter"] and trained["blurred"] > 3 * untrained["blurred"]
