"""Mayo 2016 layout: listing, pairing by position, patient-level splits."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from pydicom.uid import generate_uid

from vagan.errors import ConfigError, InputDataError
from vagan.io.dicom import write_dicom_series
from vagan.io.mayo import DataSplit, list_mayo_patients, load_mayo_pair, split_patients


def _write_patient(root: Path, patient: str, hu_full: np.ndarray, hu_low: np.ndarray, thickness: str = "1mm") -> None:
    study, frame = generate_uid(), generate_uid()
    for dose, hu in (("full", hu_full), ("quarter", hu_low)):
        write_dicom_series(
            hu, root / patient / f"{dose}_{thickness}", series_description=f"{dose} dose",
            patient_id=patient, study_instance_uid=study, frame_of_reference_uid=frame,
            pixel_spacing_mm=(0.75, 0.75), slice_thickness_mm=1.0,
        )


@pytest.fixture
def mayo_root(tmp_path: Path, np_rng) -> Path:
    root = tmp_path / "mayo"
    for patient in ("L067", "L096"):
        full = np_rng.uniform(-1000, 1000, (4, 24, 24)).astype(np.float32)
        _write_patient(root, patient, full, full + np_rng.normal(0, 50, full.shape).astype(np.float32))
    (root / "L100" / "full_1mm").mkdir(parents=True)  # only one dose: not listed
    (root / "manifest.json").write_text("{}")
    return root


def test_lists_only_complete_patients(mayo_root: Path) -> None:
    assert list_mayo_patients(mayo_root) == ["L067", "L096"]
    assert list_mayo_patients(mayo_root, thickness="3mm") == []
    with pytest.raises(InputDataError, match="nowhere"):
        list_mayo_patients(mayo_root / "nowhere")


def test_loads_and_pairs(mayo_root: Path) -> None:
    pair = load_mayo_pair(mayo_root, "L067")
    assert pair.patient == "L067"
    assert pair.ldct.hu.shape == pair.ndct.hu.shape == (4, 24, 24)
    np.testing.assert_allclose(pair.ldct.slice_positions_mm, pair.ndct.slice_positions_mm)
    # known answer: the LDCT was NDCT + N(0, 50) noise, so the slice-wise difference is ~50 HU
    assert 40 < float((pair.ldct.hu - pair.ndct.hu).std()) < 60


def test_pairs_by_position_when_names_disagree(mayo_root: Path) -> None:
    low = mayo_root / "L067" / "quarter_1mm"
    files = sorted(low.glob("*.dcm"))
    for i, path in enumerate(reversed(files)):  # reverse the file-name order
        path.rename(low / f"tmp{i}")
    pair = load_mayo_pair(mayo_root, "L067")
    assert 40 < float((pair.ldct.hu - pair.ndct.hu).std()) < 60  # still paired slice by slice


def test_unpaired_counts_raise(mayo_root: Path) -> None:
    last = sorted((mayo_root / "L096" / "quarter_1mm").glob("*.dcm"))[-1]
    last.unlink()
    with pytest.raises(InputDataError, match=r"patient L096: 3 LDCT slices .* 4 NDCT slices .*NDCT-only positions \[3\.00\]"):
        load_mayo_pair(mayo_root, "L096")


def test_mismatched_geometry_raises(mayo_root: Path, np_rng) -> None:
    shutil.rmtree(mayo_root / "L096" / "quarter_1mm")
    write_dicom_series(np.zeros((4, 24, 24), np.float32), mayo_root / "L096" / "quarter_1mm",
                       series_description="q", patient_id="L096", pixel_spacing_mm=(0.5, 0.5))
    with pytest.raises(InputDataError, match="patient L096: LDCT pixel spacing"):
        load_mayo_pair(mayo_root, "L096")


def test_missing_patient(mayo_root: Path) -> None:
    with pytest.raises(InputDataError, match="L999"):
        load_mayo_pair(mayo_root, "L999")


PATIENTS = [f"L{i:03d}" for i in range(10)]


def test_fraction_split_covers_each_patient_once() -> None:
    out = split_patients(PATIENTS, {"train": 0.7, "val": 0.1, "test": 0.2}, seed=3)
    assert [len(out[k]) for k in ("train", "val", "test")] == [7, 1, 2]
    flat = [p for k in out for p in out[k]]
    assert sorted(flat) == PATIENTS  # every patient exactly once: never split across sets
    assert split_patients(PATIENTS, {"train": 0.7, "val": 0.1, "test": 0.2}, seed=3) == out
    assert split_patients(PATIENTS, {"train": 0.7, "val": 0.1, "test": 0.2}, seed=4) != out


def test_tiny_split_gives_every_subset_a_patient() -> None:
    out = split_patients(["a", "b", "c"], {"train": 0.8, "val": 0.1, "test": 0.1})
    assert sorted(len(v) for v in out.values()) == [1, 1, 1]


def test_named_split() -> None:
    out = split_patients(PATIENTS, {"train": PATIENTS[:6], "test": PATIENTS[6:]})
    assert out == {"train": PATIENTS[:6], "val": [], "test": PATIENTS[6:]}


def test_split_errors() -> None:
    with pytest.raises(ConfigError, match="'L001' is in both 'train' and 'test'"):
        split_patients(PATIENTS, {"train": ["L000", "L001"], "test": ["L001"]})
    with pytest.raises(ConfigError, match="unknown patient 'L0O1'.*did you mean 'L001'"):
        split_patients(PATIENTS, {"train": ["L0O1"]})
    with pytest.raises(ConfigError, match="sum to 1.1"):
        split_patients(PATIENTS, {"train": 0.9, "val": 0.1, "test": 0.1})
    with pytest.raises(ConfigError, match="all fractions .* or all lists"):
        split_patients(PATIENTS, {"train": 0.9, "test": ["L001"]})
    with pytest.raises(InputDataError, match="L001"):
        split_patients(["L001", "L001"], {"train": 1.0})


def test_datasplit_from_dict() -> None:
    split = DataSplit.from_dict({"train": 0.5, "test": 0.5})
    assert split == DataSplit(train=0.5, val=0.0, test=0.5)
    assert split_patients(PATIENTS, split, seed=1) == split_patients(PATIENTS, {"train": 0.5, "test": 0.5}, seed=1)
    with pytest.raises(ConfigError, match=r"'data.split.tset'.*did you mean 'test'"):
        DataSplit.from_dict({"train": 0.5, "tset": 0.5})
    with pytest.raises(dataclasses_frozen_error()):
        split.train = 0.1  # type: ignore[misc]


def dataclasses_frozen_error() -> type[Exception]:
    import dataclasses

    return dataclasses.FrozenInstanceError


def test_any_thickness_takes_each_patient_s_one_pair(tmp_path) -> None:
    from vagan.io.mayo import ANY_THICKNESS

    hu = np.zeros((2, 16, 16), np.float32) - 1000.0
    hu[:, 4:12, 4:12] = 40.0
    for patient, label in (("A", "1mm"), ("B", "5mm")):
        for dose in ("full", "quarter"):
            write_dicom_series(hu, tmp_path / patient / f"{dose}_{label}", series_description=dose, patient_id=patient,
                               slice_thickness_mm=float(label[:-2]))
    assert list_mayo_patients(tmp_path, "1mm") == ["A"]
    assert list_mayo_patients(tmp_path, ANY_THICKNESS) == ["A", "B"]
    assert load_mayo_pair(tmp_path, "B", ANY_THICKNESS).ndct.slice_thickness_mm == 5.0
    for dose in ("full", "quarter"):
        write_dicom_series(hu, tmp_path / "B" / f"{dose}_1mm", series_description=dose, patient_id="B")
    with pytest.raises(InputDataError, match="dose folders at 1mm, 5mm; give the thickness"):
        list_mayo_patients(tmp_path, ANY_THICKNESS)
