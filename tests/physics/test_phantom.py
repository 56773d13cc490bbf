"""The procedural abdomen phantom: determinism, HU of tissues, physical size, lesions, z continuity."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from vagan.physics.phantom import (
    FIELD_OF_VIEW_MM,
    TISSUES,
    Lesion,
    PhantomPatient,
    make_phantom_slice,
    make_phantom_volume,
    slice_positions,
)

SIZE, SPACING = 128, FIELD_OF_VIEW_MM / 128  # 2.8 mm pixels: fast, whole body in view


def _patient(seed: int) -> PhantomPatient:
    return PhantomPatient.random(np.random.default_rng(seed))


def _body_extent_mm(labels: np.ndarray, spacing: float) -> tuple[float, float]:
    """Width (left-right) and depth (antero-posterior) of the non-air region in mm."""
    body = labels != TISSUES["air"]
    cols, rows = np.nonzero(body.any(axis=0))[0], np.nonzero(body.any(axis=1))[0]
    return (cols[-1] - cols[0] + 1) * spacing, (rows[-1] - rows[0] + 1) * spacing


def test_same_seed_same_volume_and_different_seeds_differ() -> None:
    a = make_phantom_volume(2, size=SIZE, seed=3)
    b = make_phantom_volume(2, size=SIZE, seed=3)
    c = make_phantom_volume(2, size=SIZE, seed=4)
    np.testing.assert_array_equal(a, b)
    assert np.mean(np.abs(a - c)) > 20.0


def test_slice_is_deterministic_given_the_generator_state() -> None:
    a = make_phantom_slice(SIZE, SPACING, np.random.default_rng(7), z_mm=5.0)
    b = make_phantom_slice(SIZE, SPACING, np.random.default_rng(7), z_mm=5.0)
    np.testing.assert_array_equal(a, b)


def test_output_is_finite_float32_with_the_requested_shape() -> None:
    hu, labels = make_phantom_slice(97, 3.7, np.random.default_rng(0), return_labels=True)
    vol = make_phantom_volume(3, size=64, seed=1)
    assert hu.shape == labels.shape == (97, 97)
    assert hu.dtype == np.float32 and labels.dtype == np.uint8
    assert vol.shape == (3, 64, 64) and vol.dtype == np.float32
    assert np.isfinite(hu).all() and np.isfinite(vol).all()
    assert hu.min() >= -1000.0 and hu.max() < 3071.0
    assert set(np.unique(labels)) <= set(TISSUES.values())


# tissue -> (lowest, highest) accepted median HU
EXPECTED_HU = {
    "air": (-1001, -950),
    "fat": (-120, -60),
    "muscle": (30, 70),
    "liver": (40, 80),
    "spleen": (35, 70),
    "kidney_cortex": (110, 190),
    "kidney_medulla": (60, 130),
    "vessel": (100, 260),
    "cortical_bone": (700, 1400),
    "trabecular_bone": (150, 350),
    "lung": (-900, -700),
    "gas": (-1001, -900),
    "bowel_fluid": (-10, 40),
}


@pytest.mark.parametrize("seed", [0, 1])
def test_tissue_hu_by_label(seed: int) -> None:
    patient = _patient(seed)
    found: dict[str, list[np.ndarray]] = {}
    for z in (-40.0, 0.0, 70.0):  # lower abdomen, renal hila, lung bases
        hu, labels = make_phantom_slice(256, 1.4, None, z, patient, return_labels=True)
        for name, label in TISSUES.items():
            if (labels == label).sum() >= 5:
                found.setdefault(name, []).append(hu[labels == label])
    for name, (lo, hi) in EXPECTED_HU.items():
        assert name in found, f"no {name} pixels at all"
        median = float(np.median(np.concatenate(found[name])))
        assert lo <= median <= hi, f"{name}: median {median:.0f} HU outside [{lo}, {hi}]"


def test_organs_have_texture_not_flat_values() -> None:
    hu, labels = make_phantom_slice(256, 1.4, np.random.default_rng(2), return_labels=True)
    liver = hu[labels == TISSUES["liver"]]
    robust_std = 1.4826 * float(np.median(np.abs(liver - np.median(liver))))  # edges do not count
    assert 1.5 < robust_std < 10.0


def test_lesion_contrast_and_diameter_in_every_random_patient() -> None:
    for seed in range(20):
        lesions = _patient(seed).lesions
        assert any(les.organ == "liver" for les in lesions)
        for les in lesions:
            assert 3.0 <= les.diameter_mm <= 20.0
            assert 10.0 <= abs(les.contrast_hu) <= 30.0


@pytest.mark.parametrize(("organ", "diameter", "contrast", "size", "spacing"),
                         [("liver", 16.0, -20.0, 256, 1.4), ("liver", 12.0, 25.0, 192, 1.0),
                          ("spleen", 10.0, -15.0, 320, 1.1)])
def test_rendered_lesion_matches_its_contrast_and_diameter(organ, diameter, contrast, size, spacing) -> None:
    patient = _patient(5)
    host = patient.liver[0] if organ == "liver" else patient.spleen
    z = host.z - 0.3 * host.hz
    lesion = Lesion(organ, -0.3 * host.ax if organ == "spleen" else 0.0, 0.0, z, diameter, contrast)
    patient = dataclasses.replace(patient, lesions=(lesion,), hepatic_vessels=())
    hu, labels = make_phantom_slice(size, spacing, None, z, patient, return_labels=True)
    inside = labels == TISSUES[f"{organ}_lesion"]
    without = make_phantom_slice(size, spacing, None, z, dataclasses.replace(patient, lesions=()))
    measured = float(np.median(hu[inside] - without[inside]))  # the same texture, with and without
    assert abs(measured - contrast) < 2.0
    assert np.median(hu[labels == TISSUES[organ]] - without[labels == TISSUES[organ]]) == 0.0
    equivalent_diameter = 2.0 * np.sqrt(inside.sum() * spacing**2 / np.pi)
    assert abs(equivalent_diameter - diameter) < max(2.0 * spacing, 1.5)
    # a sphere: gone one radius (plus a pixel) above its centre
    _, labels_above = make_phantom_slice(size, spacing, None, z + diameter / 2 + 1.0, patient, return_labels=True)
    assert not (labels_above == TISSUES[f"{organ}_lesion"]).any()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_body_size_in_mm_is_independent_of_the_pixel_grid(seed: int) -> None:
    patient = _patient(seed)
    _, coarse = make_phantom_slice(256, 1.4, None, 0.0, patient, return_labels=True)
    _, fine = make_phantom_slice(512, 0.7, None, 0.0, patient, return_labels=True)
    w_coarse, ap_coarse = _body_extent_mm(coarse, 1.4)
    w_fine, ap_fine = _body_extent_mm(fine, 0.7)
    assert abs(w_coarse - w_fine) / w_fine < 0.02 and abs(ap_coarse - ap_fine) / ap_fine < 0.02
    assert 300.0 <= w_fine <= 360.0
    assert 215.0 <= ap_fine <= 265.0
    # the liver is physically sized too
    area_coarse = (coarse == TISSUES["liver"]).sum() * 1.4**2
    area_fine = (fine == TISSUES["liver"]).sum() * 0.7**2
    assert abs(area_coarse - area_fine) / area_fine < 0.05


def test_body_width_stays_in_range_along_z() -> None:
    for seed in range(4):
        patient = _patient(seed)
        for z in (-100.0, 100.0):
            _, labels = make_phantom_slice(SIZE, SPACING, None, z, patient, return_labels=True)
            width, depth = _body_extent_mm(labels, SPACING)
            assert 295.0 <= width <= 365.0 and 205.0 <= depth <= 270.0


def test_adjacent_slices_are_closer_than_distant_ones() -> None:
    vol = make_phantom_volume(4, size=SIZE, slice_spacing_mm=1.0, seed=2)  # z = -1.5 ... 1.5 mm
    far = make_phantom_slice(SIZE, SPACING, None, 31.5, PhantomPatient.random(np.random.default_rng(2)))
    adjacent = max(np.abs(vol[k + 1] - vol[k]).mean() for k in range(3))
    distant = np.abs(far - vol[3]).mean()  # 30 mm apart
    assert adjacent < 0.3 * distant


def test_volume_slices_are_the_patients_slices_at_their_heights() -> None:
    patient = _patient(9)
    vol = make_phantom_volume(3, size=64, slice_spacing_mm=2.5, z_center_mm=10.0, patient=patient)
    np.testing.assert_allclose(slice_positions(3, 2.5, 10.0), [7.5, 10.0, 12.5])
    np.testing.assert_array_equal(vol[2], make_phantom_slice(64, FIELD_OF_VIEW_MM / 64, None, 12.5, patient))


def test_anatomy_changes_with_height() -> None:
    patient = _patient(0)
    counts = {}
    for z in (-60.0, 0.0, 80.0):
        _, labels = make_phantom_slice(SIZE, SPACING, None, z, patient, return_labels=True)
        counts[z] = {name: int((labels == v).sum()) for name, v in TISSUES.items()}
    assert counts[80.0]["lung"] > 20 and counts[-60.0]["lung"] == 0
    assert counts[0.0]["kidney_cortex"] > 20 and counts[80.0]["kidney_cortex"] == 0
    assert counts[80.0]["liver"] > counts[0.0]["liver"] > counts[-60.0]["liver"]


@pytest.mark.parametrize("size", [63, 0, -5, 64.0, True, "512"])
def test_bad_size_raises(size) -> None:
    with pytest.raises(ValueError, match="size"):
        make_phantom_slice(size, 1.0, np.random.default_rng(0))


@pytest.mark.parametrize("spacing", [0.0, -0.7, float("nan"), float("inf"), None, "abc"])
def test_bad_spacing_raises(spacing) -> None:
    with pytest.raises(ValueError, match="pixel_spacing_mm"):
        make_phantom_slice(128, spacing, np.random.default_rng(0))
    if spacing is not None:  # None is the volume's default (fit the field of view)
        with pytest.raises(ValueError, match="pixel_spacing_mm"):
            make_phantom_volume(1, 128, pixel_spacing_mm=spacing)


@pytest.mark.parametrize(("n_slices", "slice_spacing"), [(0, 1.0), (2, 0.0), (2, -1.0), (2, float("nan"))])
def test_bad_volume_arguments_raise(n_slices: int, slice_spacing: float) -> None:
    with pytest.raises(ValueError):
        make_phantom_volume(n_slices, size=64, slice_spacing_mm=slice_spacing)


def test_patient_is_frozen_and_seeded() -> None:
    a, b = _patient(11), _patient(11)
    assert a == b and a != _patient(12)
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.texture_seed = 1  # type: ignore[misc]
