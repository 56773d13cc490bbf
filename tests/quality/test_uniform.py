"""Uniform ROIs for noise on real-like slices: found in soft tissue only, and user ROIs checked."""

import numpy as np
import pytest

from vagan.errors import ConfigError
from vagan.physics.phantom import TISSUES, make_phantom_slice
from vagan.quality.nps import noise_power_spectrum
from vagan.quality.uniform import check_user_rois, find_uniform_rois, roi_side

SOFT = {TISSUES[t] for t in ("fat", "muscle", "liver", "spleen", "kidney_cortex", "kidney_medulla", "pancreas",
                            "bowel_fluid", "gallbladder", "urine", "skin", "vessel", "disc", "csf", "cartilage",
                            "bowel_wall", "stool", "liver_lesion", "spleen_lesion")}


@pytest.fixture(scope="module")
def slice_and_labels():
    return make_phantom_slice(512, 0.7, np.random.default_rng(3), return_labels=True)


def test_found_rois_lie_in_soft_tissue_and_do_not_overlap(slice_and_labels):
    hu, labels = slice_and_labels
    side = roi_side(0.7, 20)
    rois = find_uniform_rois(hu, side, 6)
    assert 3 <= len(rois) <= 6 and side == 28
    for r, c in rois:
        assert set(np.unique(labels[r:r + side, c:c + side])) <= SOFT  # no air, lung, gas or bone
    for k, (r, c) in enumerate(rois):
        for r0, c0 in rois[:k]:
            assert abs(r - r0) >= side or abs(c - c0) >= side


def test_noise_in_found_rois_is_the_added_noise(slice_and_labels):
    hu, _ = slice_and_labels
    side = roi_side(0.7, 20)
    rois = find_uniform_rois(hu, side, 8)
    noisy = hu + np.random.default_rng(4).normal(0, 25.0, hu.shape)
    stack = np.stack([noisy[r:r + side, c:c + side] for r, c in rois])
    clean = np.stack([hu[r:r + side, c:c + side] for r, c in rois])
    assert noise_power_spectrum(clean, 0.7, "poly2").noise_std < 8.0  # the anatomy left after detrending is small
    assert noise_power_spectrum(stack, 0.7, "poly2").noise_std == pytest.approx(25.0, rel=0.1)


def test_an_image_without_soft_tissue_gives_no_roi():
    assert find_uniform_rois(np.full((128, 128), -1000.0), 16, 4) == []
    lung = np.full((128, 128), -850.0)
    assert find_uniform_rois(lung, 16, 4) == []


def test_user_rois_outside_the_image_or_the_body_name_the_value(slice_and_labels):
    hu, _ = slice_and_labels
    with pytest.raises(ConfigError, match=r"quality.rois\[0\]: \(500, 10\) with side 28 px lies outside the 512x512"):
        check_user_rois([(500, 10)], 28, hu, "slice 1")
    with pytest.raises(ConfigError, match=r"quality.rois\[1\]: \(0, 0\) .* leaves the body's soft tissue on slice 1"):
        check_user_rois([find_uniform_rois(hu, 28, 1)[0], (0, 0)], 28, hu, "slice 1")
