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
from vagan.errors import CheckpointError, ConfigError, MissingResourceError
from vagan.evaluation.ct_quality_net import LOG2_DOSE_SCALE, CTQualityNet, default_weights, load_ct_quality
from vagan.evaluation.ct_quality_training import TrainingSettings, save, train_ct_quality
from vagan.evaluation.eval_config import EvaluationConfig
from vagan.evaluation.feature_nets import body_tiles, build_feature_net, cut_tiles, extract_features
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


def test_training_refuses_slices_without_noise_pools():
    pairs = [SlicePair(np.zeros((64, 64), np.float32), np.zeros((64, 64), np.float32))]
    with pytest.raises(ConfigError, match="noise pools"):
        train_ct_quality(pairs, _pairs(1, 64, 1), TrainingSettings(steps=1), progress=False)
    with pytest.raises(ConfigError):
        TrainingSettings(min_dose=1.5)


def test_saved_weights_load_back_named_by_checksum_and_a_changed_file_is_refused(tmp_path):
    net = CTQualityNet()
    path = save(net, {"validation": {}}, tmp_path / "w")
    loaded, name = load_ct_quality(path)
    x = torch.rand(2, 1, 32, 32)
    assert torch.equal(loaded(x), net.eval()(x)) and loaded(x).shape == (2, 240)
    digest = json.loads((tmp_path / "w" / "ct-quality.json").read_text())["sha256"]
    assert name == f"ct-quality({digest[:8]})"
    save_file({"stages.0.0.weight": torch.zeros(16, 1, 3, 3)}, str(path))  # changed after its checksum was written
    with pytest.raises(CheckpointError, match="SHA-256"):
        load_ct_quality(path)
    (tmp_path / "w" / "ct-quality.json").unlink()
    with pytest.raises(CheckpointError, match="does not hold ct-quality weights"):
        load_ct_quality(path)
    with pytest.raises(MissingResourceError, match="nothing is downloaded"):
        load_ct_quality(tmp_path / "missing.safetensors")


def test_body_tiles_are_the_tiles_mostly_inside_the_body():
    ndct = np.full((2, 48, 48), -1000.0, np.float32)
    ndct[0, 6:-6, 6:-6] = 40.0  # corner tiles hold 10x10 body pixels (mean about -594 HU), edge tiles 10x16
    tiles = body_tiles(ndct, 16)
    assert tiles == [(0, 0, 16), (0, 16, 0), (0, 16, 16), (0, 16, 32), (0, 32, 16)]
    assert cut_tiles(ndct, tiles, 16).shape == (5, 16, 16) and body_tiles(ndct[:, :8, :8], 16) == []


def test_fid_on_body_tiles_uses_the_same_tiles_for_every_method(tmp_path):
    root = write_tiny_dataset(tmp_path / "data")
    cfg = EvaluationConfig.from_dict({
        "methods": ["ldct", "ndct"], "data_root": str(root), "split": {"train": ["T000"], "test": ["T002"]},
        "patches": {"size": 32}, "fid_net": "random-ct", "fid_tile": 16, "timing_slices": 0, "figure_slices": 1})
    result = evaluate(cfg, tmp_path / "out", progress=False)
    assert {r.n_real for r in result.fid.values()} == {4 * 5} and {r.n_fake for r in result.fid.values()} == {4 * 5}
    assert result.fid["NDCT (oracle)"].value == pytest.approx(0.0, abs=1e-9) and result.fid["LDCT"].value > 0
    assert "16x16 tiles inside the body" in (tmp_path / "out" / "report.md").read_text()


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
    where = body_tiles(scans["full"][None], 32)
    return cut_tiles(scans[what][None], where, 32)


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
