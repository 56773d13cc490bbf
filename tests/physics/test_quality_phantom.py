"""The task-based quality phantom: known inserts where the layout says, ROIs centred on them."""

import numpy as np
import pytest

from vagan.physics.quality_phantom import (
    BACKGROUND_HU,
    CELL_MM,
    DENSE,
    TISSUE_HU,
    make_quality_phantom,
    roi_stack,
)

SIZES, CONTRASTS, RODS = (3, 5, 7, 10), (5, 10, 20, 30), (50, 100, 300)


@pytest.fixture(scope="module")
def phantom():
    return make_quality_phantom(512, 0.7, SIZES, CONTRASTS, RODS)


def test_every_lesion_type_has_the_same_number_of_copies(phantom):
    counts = {t.name: len(phantom.lesions_of(t)) for t in phantom.lesion_types}
    assert len(counts) == 16 and len(set(counts.values())) == 1 and min(counts.values()) >= 3
    assert len(phantom.of_kind("rod")) == 3 and len(phantom.of_kind("tissue")) == len(TISSUE_HU)


def test_inserts_have_their_values_and_absent_images_have_no_lesions(phantom):
    present, absent = phantom.render(True), phantom.render(False)
    for ins in phantom.inserts:
        r, c = int(ins.row), int(ins.col)  # a pixel next to the (half-pixel) centre, inside the disc
        assert present[r, c] == pytest.approx(ins.hu, abs=1e-3)
        expected = BACKGROUND_HU if ins.kind == "lesion" else ins.hu
        assert absent[r, c] == pytest.approx(expected, abs=1e-3)
    assert present.min() == -1000 and present[256, 5] == -1000  # air outside the body


def test_rois_are_centred_on_their_lesions(phantom):
    present = phantom.render(True)[None]
    for t in phantom.lesion_types:
        rois = roi_stack(present, phantom.lesions_of(t), phantom.roi_px)
        assert rois.shape == (len(phantom.lesions_of(t)), 32, 32)
        np.testing.assert_allclose(rois, rois[:, ::-1, ::-1], atol=1e-4)  # point-symmetric about the centre
        np.testing.assert_allclose(rois, np.transpose(rois, (0, 2, 1)), atol=1e-4)
        # the disc's area in the ROI matches its diameter
        area = (rois[0] - BACKGROUND_HU).sum() / t.contrast_hu * 0.7**2
        assert area == pytest.approx(np.pi * t.diameter_mm**2 / 4, rel=0.05)


def test_rods_keep_their_ttf_reach_free_of_other_inserts(phantom):
    absent = phantom.render(False)
    for rod in phantom.of_kind("rod"):
        y, x = np.mgrid[0:512, 0:512]
        d = np.hypot(y - rod.row, x - rod.col) * 0.7
        ring = (d > rod.radius_mm + 1.5) & (d < 2 * rod.radius_mm)
        assert np.abs(absent[ring] - BACKGROUND_HU).max() < 1e-3


def test_dense_inserts_keep_away_from_rods_and_lesions(phantom):
    for dense in (i for i in phantom.of_kind("tissue") if i.name in DENSE):
        for other in phantom.inserts:
            gap_mm = np.hypot(dense.row - other.row, dense.col - other.col) * 0.7
            if other.kind == "rod":
                assert gap_mm > 2.5 * CELL_MM
            elif other.kind == "lesion":
                assert gap_mm > 1.5 * CELL_MM


def test_a_coarse_or_small_field_is_refused_with_its_sizes():
    with pytest.raises(ValueError, match="holds 15 cells"):
        make_quality_phantom(256, 0.7, SIZES, CONTRASTS, RODS)
    with pytest.raises(ValueError, match="under 2 pixels"):
        make_quality_phantom(128, 2.8, SIZES, CONTRASTS, RODS)
    with pytest.raises(ValueError, match="lesion diameter"):
        make_quality_phantom(512, 0.7, (15,), CONTRASTS, RODS)
