"""Body RMSE, the soft-tissue CT bias and the paired comparison with the strongest BM3D (issue 21, item 5)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from vagan.evaluation.eval_config import MethodSpec
from vagan.evaluation.inputs import Method
from vagan.evaluation.metrics import MetricAccumulator, body_rmse, tissue_bias
from vagan.evaluation.report_sections import supplementary_tables
from vagan.evaluation.running import Collected


def _slice(seed: int = 0) -> np.ndarray:
    """Air, a 40 HU body with fat, a bright organ and bone."""
    rng = np.random.default_rng(seed)
    image = np.full((96, 96), -1000.0)
    yy, xx = np.mgrid[:96, :96]
    image[(yy - 48) ** 2 + (xx - 48) ** 2 < 40**2] = 40.0
    image[(yy - 40) ** 2 + (xx - 60) ** 2 < 10**2] = -100.0
    image[(yy - 60) ** 2 + (xx - 35) ** 2 < 8**2] = 900.0
    return image + rng.normal(0, 2, image.shape)


def test_body_rmse_ignores_the_air_around_the_patient():
    target = _slice()
    body = target > -500
    pred = target + np.where(body, 10.0, 100.0)
    assert body_rmse(pred, target) == pytest.approx(10.0)
    assert np.sqrt(np.mean((pred - target) ** 2)) > 30  # the whole-slice RMSE is dominated by the air
    air = np.full((32, 32), -1000.0)
    assert body_rmse(air + 3.0, air) == pytest.approx(3.0)  # no body: the whole slice


def test_tissue_bias_finds_a_shift_under_noise_and_not_under_blur():
    target = _slice()
    noisy = target + 5.0 + np.random.default_rng(1).normal(0, 30, target.shape)
    assert tissue_bias(noisy, target) == pytest.approx(5.0, abs=0.6)
    blurred = ndimage.gaussian_filter(target, 0.7)  # loses resolution at edges, keeps CT numbers
    assert abs(tissue_bias(blurred, target)) < 0.5
    assert np.isnan(tissue_bias(np.zeros((16, 16)) - 1000, np.zeros((16, 16)) - 1000))  # no tissue


def _collected(errors: dict[str, float], tmp_path, slices: int = 12) -> tuple[Collected, list[Method]]:
    np.save(tmp_path / "acf.npy", np.ones((3, 3), np.float32))  # only its existence is checked here
    specs = {"LDCT": "ldct", "BM3D-PSD": f"bm3d-psd:{tmp_path / 'acf.npy'}", "BM3D": "bm3d:30", "other": "bm3d:10"}
    acc = MetricAccumulator(list(errors))
    rng = np.random.default_rng(0)
    for i in range(slices):
        target = _slice(i)
        for name, std in errors.items():
            acc.update(name, target + rng.normal(0, std, target.shape), target, image_index=i)
    return Collected(acc), [Method(name, MethodSpec(spec=specs[name])) for name in errors]


def test_paired_table_compares_with_bm3d_psd_and_calls_the_verdict(tmp_path):
    collected, methods = _collected({"LDCT": 20.0, "BM3D-PSD": 10.0, "BM3D": 14.0, "other": 6.0}, tmp_path)
    tables = {t.title: t for t in supplementary_tables(collected, methods)}
    body = tables["Body RMSE and CT-number bias"]
    rows = {row[0]: row for row in body.rows}
    assert rows["LDCT"][2] == "+0%" and rows["other"][2] == "-70%"
    paired = tables["Body RMSE against BM3D-PSD"]
    verdicts = {row[0]: row[-1] for row in paired.rows}
    assert verdicts == {"BM3D": "worse", "other": "better"}  # BM3D-PSD itself is the reference, LDCT not compared
    assert paired.rows[[r[0] for r in paired.rows].index("other")][3] == "12/0"


def test_no_bm3d_no_paired_table(tmp_path):
    collected, methods = _collected({"LDCT": 20.0}, tmp_path)
    assert [t.title for t in supplementary_tables(collected, methods)] == [
        "Whole-slice metrics in the field convention", "Body RMSE and CT-number bias"]


def test_a_slice_without_soft_tissue_leaves_the_bias_summary_defined():
    acc = MetricAccumulator(["m"])
    target = _slice()
    acc.update("m", target + 3.0, target, image_index=0)
    air = np.full((96, 96), -1000.0)
    acc.update("m", air, air, image_index=1)  # no soft tissue: bias undefined there
    summary = acc.summary()["m"]["bias_tissue_hu"]
    assert summary.n == 1 and summary.mean == pytest.approx(3.0, abs=0.01)
