"""Metrics: exact reference values, the two conventions, patch choice, the accumulator."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity
from torchmetrics.functional.image import structural_similarity_index_measure

from vagan.errors import ConfigError
from vagan.evaluation.metrics import (
    FIELD,
    METRICS,
    WINDOW,
    MetricAccumulator,
    PatchSpec,
    image_metrics,
    psnr,
    psnr_hu,
    rmse,
    select_patches,
    ssim,
    ssim_hu,
)


def body_phantom(h: int = 150, w: int = 170) -> np.ndarray:
    """Air around an off-centre elliptic 'body' of soft tissue (40 HU) with a bone disc."""
    yy, xx = np.mgrid[:h, :w].astype(float)
    img = np.full((h, w), -1000.0)
    img[((yy - 80) / 50) ** 2 + ((xx - 95) / 60) ** 2 < 1] = 40.0
    img[((yy - 70) / 8) ** 2 + ((xx - 100) / 8) ** 2 < 1] = 700.0
    return img


def test_psnr_constant_offset_is_20_db() -> None:
    target = np.zeros((16, 16))
    assert psnr(target + 0.1, target, data_range=1.0) == pytest.approx(20.0, abs=1e-9)
    assert psnr(target + 0.1, target, data_range=10.0) == pytest.approx(40.0, abs=1e-9)


def test_psnr_identical_is_inf_and_range_is_required() -> None:
    img = np.ones((8, 8))
    assert psnr(img, img, data_range=1.0) == math.inf
    with pytest.raises(TypeError):
        psnr(img, img)  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="data_range"):
        psnr(img, img, data_range=0.0)


def test_psnr_matches_skimage(np_rng: np.random.Generator) -> None:
    a, b = np_rng.random((33, 29)), np_rng.random((33, 29))
    assert psnr(a, b, 1.0) == pytest.approx(peak_signal_noise_ratio(b, a, data_range=1.0), abs=1e-10)


def test_field_and_window_psnr_of_4_hu_error() -> None:
    """A uniform 4 HU error: field 20 log10(4096/4) ~ 60.21 dB, window 20 log10(400/4) = 40 dB."""
    target = np.full((64, 64), 40.0)
    target[20:40, 10:50] = 100.0  # inside the display window, so clipping changes nothing
    pred = target + 4.0
    assert psnr_hu(pred, target, FIELD) == pytest.approx(20 * math.log10(4096 / 4), abs=1e-9)
    assert psnr_hu(pred, target, FIELD) == pytest.approx(60.206, abs=1e-3)
    assert psnr_hu(pred, target, WINDOW) == pytest.approx(40.0, abs=1e-9)
    assert rmse(pred, target) == pytest.approx(4.0)


def test_window_clips_to_display_range() -> None:
    target = np.full((32, 32), -1000.0)
    pred = target + 50.0  # -950 and -1000 both clip to -160: no error in the window
    assert psnr_hu(pred, target, WINDOW) == math.inf
    assert psnr_hu(pred, target, FIELD) == pytest.approx(20 * math.log10(4096 / 50), abs=1e-9)


def test_ssim_identity_is_one(np_rng: np.random.Generator) -> None:
    img = np_rng.random((37, 31))
    assert ssim(img, img, data_range=1.0) == pytest.approx(1.0, abs=1e-12)
    assert ssim_hu(body_phantom(), body_phantom(), WINDOW) == pytest.approx(1.0, abs=1e-12)


def test_ssim_matches_skimage_and_cropped_torchmetrics(np_rng: np.random.Generator) -> None:
    target = np_rng.random((37, 45))
    pred = np.clip(target + 0.1 * np_rng.standard_normal(target.shape), 0, 1)
    ours = ssim(pred, target, data_range=1.0)
    ref = structural_similarity(
        pred, target, data_range=1.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
    )
    assert ours == pytest.approx(ref, abs=1e-10)
    _, full = structural_similarity_index_measure(
        torch.from_numpy(pred)[None, None],
        torch.from_numpy(target)[None, None],
        gaussian_kernel=True,
        sigma=1.5,
        kernel_size=11,
        data_range=1.0,
        return_full_image=True,
    )
    assert float(full[..., 5:-5, 5:-5].mean()) == pytest.approx(ours, abs=1e-8)
    assert 0.0 < ours < 1.0


def test_window_ssim_is_on_clipped_hu(np_rng: np.random.Generator) -> None:
    """Window SSIM = SSIM of HU clipped to [-160, 240], range 400 (RED-CNN code); SSIM is
    invariant to scaling but not to offsets, so shifting the window to [0, 1] would differ."""
    target = body_phantom() + 20 * np_rng.standard_normal((150, 170))
    pred = target + 15 * np_rng.standard_normal(target.shape)
    tc, pc = np.clip(target, -160, 240), np.clip(pred, -160, 240)
    window = ssim_hu(pred, target, WINDOW)
    assert window == pytest.approx(ssim(pc, tc, data_range=400.0), abs=1e-12)
    assert window == pytest.approx(ssim(pc / 400, tc / 400, data_range=1.0), abs=1e-10)
    shifted = ssim((pc + 160) / 400, (tc + 160) / 400, data_range=1.0)
    assert abs(window - shifted) > 1e-3


def test_metrics_reject_bad_input() -> None:
    img = np.zeros((16, 16))
    with pytest.raises(ValueError, match="shapes differ"):
        psnr(img, np.zeros((16, 17)), 1.0)
    bad = img.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        rmse(bad, img)
    with pytest.raises(ValueError, match="11x11"):
        ssim(np.zeros((8, 8)), np.zeros((8, 8)), 1.0)


@pytest.mark.parametrize("mode", ["body-quadrants", "image-quadrants", "random-body"])
def test_patch_selection_is_deterministic_and_inside(mode: str) -> None:
    target = body_phantom()
    spec = PatchSpec(mode=mode, seed=7)
    first = select_patches(target, spec, image_index=3)
    assert first == select_patches(target.copy(), spec, image_index=3)
    assert len(first) == 4
    for r, c in first:
        assert 0 <= r <= target.shape[0] - 64 and 0 <= c <= target.shape[1] - 64


def test_body_quadrant_patches_follow_the_body() -> None:
    target = body_phantom()  # body rows 31..129 (h 99), cols 36..154 (w 119)
    corners = select_patches(target, PatchSpec())
    rows = np.nonzero((target > -500).any(axis=1))[0]
    cols = np.nonzero((target > -500).any(axis=0))[0]
    h, w = rows[-1] + 1 - rows[0], cols[-1] + 1 - cols[0]
    centres = [(rows[0] + round(fr * h), cols[0] + round(fc * w)) for fr in (0.25, 0.75) for fc in (0.25, 0.75)]
    expected = [(min(max(r - 32, 0), 150 - 64), min(max(c - 32, 0), 170 - 64)) for r, c in centres]
    assert corners == expected
    assert corners == [(24, 34), (24, 93), (73, 34), (73, 93)]  # centres 56/105, 66/125


def test_random_body_patches_depend_on_index_and_seed() -> None:
    target = body_phantom()
    spec = PatchSpec(mode="random-body", seed=1)
    a = select_patches(target, spec, 0)
    assert a != select_patches(target, spec, 1)
    assert a != select_patches(target, PatchSpec(mode="random-body", seed=2), 0)
    for r, c in a:  # centre lies on the body
        assert target[r + 32, c + 32] > -500


def test_patch_spec_validation() -> None:
    with pytest.raises(ConfigError, match="mode: 'corners' is not one of"):
        PatchSpec(mode="corners")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="per_image: .*4 patches"):
        PatchSpec(per_image=3)
    with pytest.raises(ConfigError, match="size: must be >= 11"):
        PatchSpec(size=8)
    with pytest.raises(ValueError, match="smaller than"):
        select_patches(np.zeros((40, 40)), PatchSpec())


def test_image_metrics_counts_and_values() -> None:
    target = body_phantom()
    values = image_metrics(target + 4.0, target)
    assert set(values) == set(METRICS)
    assert len(values["psnr_patch"]) == 4 and len(values["rmse_hu"]) == 1
    assert values["psnr_patch"] == pytest.approx([20 * math.log10(1024)] * 4, abs=1e-9)
    assert values["rmse_hu"][0] == pytest.approx(4.0)


def test_accumulator_summary(np_rng: np.random.Generator) -> None:
    target = body_phantom()
    acc = MetricAccumulator(["LDCT", "ideal"])
    errors = [2.0, 4.0, 8.0]
    for e in errors:
        acc.update("LDCT", torch.from_numpy(target + e), target)
    acc.update("ideal", np.stack([target + 1.0] * 2)[:, None], np.stack([target] * 2)[:, None])
    summary = acc.summary()
    mean, std, n = summary["LDCT"]["rmse_hu"]
    assert (mean, n) == (pytest.approx(np.mean(errors)), 3)
    assert std == pytest.approx(np.std(errors, ddof=1))
    assert summary["LDCT"]["psnr_patch"].n == 12
    expected = [20 * math.log10(4096 / e) for e in errors]
    assert summary["LDCT"]["psnr_patch"].mean == pytest.approx(np.mean(expected), abs=1e-9)
    assert summary["ideal"]["rmse_hu"] == (pytest.approx(1.0), pytest.approx(0.0), 2)
    assert len(acc.rows()) == 5
    assert acc.values("LDCT", "rmse_hu") == pytest.approx(errors)
    with pytest.raises(ValueError, match="unknown method"):
        acc.update("BM3D", target, target)
