"""A derived series (``vagan denoise``'s DICOM output) conforms as a derived CT series (issue 22, item 6).

On an anonymised, Siemens-like synthetic series (SOPInstanceUID blanked, kept only in the file meta; a
de-identifying ContributingEquipmentSequence item) and on pydicom's CT_small.dcm:

- SeriesDescription is the original's plus ``[vagan <model>]``, within 64 characters (the original part
  shortened, never the bracket); ``vagan <model> denoised`` without an original;
- each instance's SourceImageSequence names its source (SOP class and instance, falling back to the file
  meta's MediaStorageSOPInstanceUID) with purpose DCM 121322;
- ContributingEquipmentSequence keeps the input's items and adds vagan (version, DCM 109102 Processing
  Equipment, date-time, description naming the model);
- the Patient and Study modules and BurnedInAnnotation are copied intact;
- dciodvfy (Debian ``dicom3tools``; skipped where it is missing) finds no error in the output that it
  does not find in the input.
"""

from __future__ import annotations

import datetime as dt
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from vagan import __version__ as vagan_version
from vagan.io.dicom import read_dicom_series, write_dicom_series
from vagan.io.dicom_write import LO_MAX, derived_series_description
from vagan.io.readers import write_volume

MODEL = "g_psnr-phantom512"
ORIGINAL = "CT Body 3.0"
STUDY_KEYWORDS = ("StudyInstanceUID", "StudyDate", "StudyTime", "StudyID", "AccessionNumber",
                  "ReferringPhysicianName", "StudyDescription", "ProcedureCodeSequence")
"""General Study module attributes compared input -> output (the Patient modules: all of group 0010)."""


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix == ".dcm")


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
    return item


def _anonymise_like_siemens(path: Path, k: int) -> None:
    """One slice as an anonymiser leaves a Siemens series: description kept, identity replaced,
    SOPInstanceUID blanked (the file meta keeps it), itself listed as De-identifying Equipment."""
    ds = pydicom.dcmread(path)
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.Manufacturer, ds.ManufacturerModelName, ds.SoftwareVersions = "SIEMENS", "SOMATOM Force", "syngo CT VA50A"
    ds.SeriesDescription = ORIGINAL
    ds.BodyPartExamined = "ABDOMEN"
    ds.BurnedInAnnotation = "NO"
    ds.PatientName, ds.PatientID, ds.PatientSex, ds.PatientAge = "Anonymized^Müller", "ANON0042", "F", "061Y"
    ds.PatientBirthDate = ""
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = "CTP: DICOM-S142-Baseline"
    ds.StudyDescription, ds.AccessionNumber, ds.StudyID = "CT Abdomen^Routine", "", "4711"
    ds.ProcedureCodeSequence = Sequence([_code("CTABD", "L", "CT Abdomen")])
    equipment = Dataset()
    equipment.PurposeOfReferenceCodeSequence = Sequence([_code("109104", "DCM", "De-identifying Equipment")])
    equipment.Manufacturer = "RSNA"
    equipment.ContributionDescription = "anonymised"
    ds.ContributingEquipmentSequence = Sequence([equipment])
    if k != 1:  # the middle slice keeps its SOPInstanceUID: both sources of the reference are used
        ds.SOPInstanceUID = ""
    ds.save_as(path)


@pytest.fixture
def anonymised(tmp_path: Path) -> Path:
    """Three 32x32 slices, Siemens-like and anonymised (two with a blank SOPInstanceUID)."""
    hu = np.full((3, 32, 32), -1000.0, np.float32)
    hu[:, 8:24, 8:24] = [[[30.0]], [[40.0]], [[50.0]]]
    folder = write_dicom_series(hu, tmp_path / "anonymised", series_description="x", pixel_spacing_mm=(0.7, 0.7),
                                slice_thickness_mm=3.0)
    for k, path in enumerate(_files(folder)):
        _anonymise_like_siemens(path, k)
    return folder


@pytest.fixture
def ct_small_series(tmp_path: Path) -> Path:
    folder = tmp_path / "ct_small"
    folder.mkdir()
    shutil.copy(pydicom.data.get_testdata_file("CT_small.dcm", download=False), folder / "CT_small.dcm")
    return folder


def _derive(source: Path, out: Path, **kwargs) -> Path:
    volume = read_dicom_series(source)
    kwargs.setdefault("model_name", MODEL)
    return write_dicom_series(volume.hu + 1.0, out, template=volume, series_description="vagan g_psnr/psnr denoised",
                              derivation_description="Denoised by vagan (g_psnr/psnr)", **kwargs)


def _pairs(source: Path, out: Path) -> list[tuple[Dataset, Dataset]]:
    """(input, output) datasets of the same slice, matched by position."""
    def key(ds: Dataset) -> tuple[float, ...]:
        return tuple(round(float(v), 3) for v in ds.ImagePositionPatient)

    inputs = {key(ds): ds for ds in (pydicom.dcmread(p) for p in _files(source))}
    outputs = [pydicom.dcmread(p) for p in _files(out)]
    assert len(outputs) == len(inputs)
    return [(inputs[key(ds)], ds) for ds in outputs]


# -- SeriesDescription --------------------------------------------------------------------------------------

@pytest.mark.parametrize("original, model, expected", [
    (ORIGINAL, MODEL, "CT Body 3.0 [vagan g_psnr-phantom512]"),
    ("", MODEL, "vagan g_psnr-phantom512 denoised"),
    (None, "my_run", "vagan my_run denoised"),
    ("  Thorax  1.0  Br40 ", "run\\7", "Thorax 1.0 Br40 [vagan run 7]"),  # a backslash would split the value
])
def test_description_rules(original, model, expected) -> None:
    assert derived_series_description(original, model) == expected


def test_long_description_is_shortened_before_the_bracket() -> None:
    original = "Thorax-Abdomen-Becken 1.0 Br40 3 SAFIRE ASA nativ mit KM portal venös"
    text = derived_series_description(original, MODEL)
    assert len(text) == LO_MAX and text.endswith(f"... [vagan {MODEL}]")
    assert original.startswith(text.split("...")[0])
    long_model = "run-" + "x" * 90
    text = derived_series_description(original, long_model)
    assert len(text) <= LO_MAX and text.startswith("[vagan run-x") and text.endswith("...]")
    assert len(derived_series_description("", long_model)) <= LO_MAX


def test_series_named_after_original_and_model(anonymised: Path, ct_small_series: Path, tmp_path: Path) -> None:
    out = _derive(anonymised, tmp_path / "out")
    assert {pydicom.dcmread(p).SeriesDescription for p in _files(out)} == {f"{ORIGINAL} [vagan {MODEL}]"}
    assert "SeriesDescription" not in pydicom.dcmread(_files(ct_small_series)[0])
    small = pydicom.dcmread(_files(_derive(ct_small_series, tmp_path / "small"))[0])
    assert small.SeriesDescription == f"vagan {MODEL} denoised"


def test_long_original_description_stays_within_64(anonymised: Path, tmp_path: Path) -> None:
    long = "Thorax-Abdomen-Becken 1.0 Br40 3 SAFIRE ASA nativ KM venoes"
    assert len(long) + len(f" [vagan {MODEL}]") > LO_MAX >= len(long)
    for path in _files(anonymised):
        ds = pydicom.dcmread(path)
        ds.SeriesDescription = long
        ds.save_as(path)
    ds = pydicom.dcmread(_files(_derive(anonymised, tmp_path / "out"))[0])
    assert len(ds.SeriesDescription) <= LO_MAX and ds.SeriesDescription.endswith(f"[vagan {MODEL}]")
    assert ds.SeriesDescription.startswith("Thorax-Abdomen-Becken 1.0")


def test_without_model_name_the_description_is_as_given(anonymised: Path, tmp_path: Path) -> None:
    out = _derive(anonymised, tmp_path / "out", model_name=None)
    assert pydicom.dcmread(_files(out)[0]).SeriesDescription == "vagan g_psnr/psnr denoised"


def test_write_volume_passes_the_model_name(anonymised: Path, tmp_path: Path) -> None:
    volume = read_dicom_series(anonymised)
    out = write_volume(tmp_path / "out", volume.with_hu(volume.hu), series_description="vagan x denoised",
                       model_name=MODEL)
    assert pydicom.dcmread(_files(out)[0]).SeriesDescription == f"{ORIGINAL} [vagan {MODEL}]"


def test_non_ascii_model_name(ct_small_series: Path, anonymised: Path, tmp_path: Path) -> None:
    """In a data set of the default repertoire (ASCII) vagan declares UTF-8; one in Latin-1 keeps it."""
    path = _files(ct_small_series)[0]
    ds = pydicom.dcmread(path)
    del ds.SpecificCharacterSet
    ds.save_as(path)
    ds = pydicom.dcmread(_files(_derive(ct_small_series, tmp_path / "ascii", model_name="modèle-1"))[0])
    assert ds.SpecificCharacterSet == "ISO_IR 192" and ds.SeriesDescription == "vagan modèle-1 denoised"
    ds = pydicom.dcmread(_files(_derive(anonymised, tmp_path / "latin1", model_name="modèle-1"))[0])
    assert ds.SpecificCharacterSet == "ISO_IR 100" and ds.SeriesDescription == f"{ORIGINAL} [vagan modèle-1]"
    assert "modèle-1" in ds.ContributingEquipmentSequence[-1].ContributionDescription


# -- SourceImageSequence ------------------------------------------------------------------------------------

def test_each_instance_refers_to_its_source(anonymised: Path, ct_small_series: Path, tmp_path: Path) -> None:
    for source, out in ((anonymised, _derive(anonymised, tmp_path / "a")),
                        (ct_small_series, _derive(ct_small_series, tmp_path / "b"))):
        pairs = _pairs(source, out)
        for old, new in pairs:
            expected_uid = old.get("SOPInstanceUID") or old.file_meta.MediaStorageSOPInstanceUID
            assert expected_uid and new.SOPInstanceUID != expected_uid
            (ref,) = new.SourceImageSequence
            assert ref.ReferencedSOPInstanceUID == expected_uid
            assert ref.ReferencedSOPClassUID == old.file_meta.MediaStorageSOPClassUID
            (purpose,) = ref.PurposeOfReferenceCodeSequence
            assert (purpose.CodeValue, purpose.CodingSchemeDesignator) == ("121322", "DCM")
            assert list(new.ImageType)[:3] == ["DERIVED", "SECONDARY", "AXIAL"]
            assert new.DerivationDescription.startswith("Denoised by vagan")
        assert len({new.SourceImageSequence[0].ReferencedSOPInstanceUID for _, new in pairs}) == len(pairs)


def test_blank_sop_instance_uid_falls_back_to_the_file_meta(anonymised: Path, tmp_path: Path) -> None:
    pairs = _pairs(anonymised, _derive(anonymised, tmp_path / "out"))
    blanked = [(old, new) for old, new in pairs if not old.SOPInstanceUID]
    assert len(blanked) == 2
    for old, new in blanked:
        assert new.SourceImageSequence[0].ReferencedSOPInstanceUID == old.file_meta.MediaStorageSOPInstanceUID


# -- ContributingEquipmentSequence --------------------------------------------------------------------------

def test_vagan_is_contributing_equipment(anonymised: Path, ct_small_series: Path, tmp_path: Path) -> None:
    for source, expected_before in ((anonymised, ["109104"]), (ct_small_series, [])):
        for old, new in _pairs(source, _derive(source, tmp_path / f"out_{source.name}")):
            items = list(new.ContributingEquipmentSequence)
            assert [i.PurposeOfReferenceCodeSequence[0].CodeValue for i in items] == [*expected_before, "109102"]
            for before, after in zip(old.get("ContributingEquipmentSequence") or [], items):
                assert before == after  # the input's items, unchanged and first
            vagan = items[-1]
            code = vagan.PurposeOfReferenceCodeSequence[0]
            assert (code.CodingSchemeDesignator, code.CodeMeaning) == ("DCM", "Processing Equipment")
            assert vagan.Manufacturer == "vagan" and vagan.SoftwareVersions == vagan_version
            assert MODEL in vagan.ContributionDescription and vagan_version in vagan.ContributionDescription
            when = dt.datetime.strptime(vagan.ContributionDateTime, "%Y%m%d%H%M%S.%f")
            assert abs((dt.datetime.now() - when).total_seconds()) < 600
            assert new.Manufacturer == old.Manufacturer  # the General Equipment module stays the scanner's


def test_a_series_written_from_scratch_lists_no_contributing_equipment(tmp_path: Path) -> None:
    out = write_dicom_series(np.zeros((1, 16, 16), np.float32), tmp_path / "s", series_description="s")
    ds = pydicom.dcmread(_files(out)[0])
    assert "ContributingEquipmentSequence" not in ds and ds.Manufacturer == "vagan"


# -- Patient, Study, BurnedInAnnotation ---------------------------------------------------------------------

def test_patient_study_and_burned_in_annotation_are_intact(anonymised: Path, ct_small_series: Path,
                                                           tmp_path: Path) -> None:
    for source in (anonymised, ct_small_series):
        for old, new in _pairs(source, _derive(source, tmp_path / f"out_{source.name}")):
            patient = [elem.tag for elem in old if elem.tag.group == 0x0010]
            assert len(patient) >= 3
            for tag in patient:
                assert tag in new and new[tag].value == old[tag].value, (source.name, old[tag].keyword)
            for keyword in (*STUDY_KEYWORDS, "BurnedInAnnotation", "SpecificCharacterSet"):
                assert new.get(keyword) == old.get(keyword), (source.name, keyword)
    new = pydicom.dcmread(_files(tmp_path / "out_anonymised")[0])
    assert new.BurnedInAnnotation == "NO" and str(new.PatientName) == "Anonymized^Müller"


def test_missing_patient_id_is_added_empty_not_invented(ct_small_series: Path, tmp_path: Path) -> None:
    path = _files(ct_small_series)[0]
    ds = pydicom.dcmread(path)
    del ds.PatientID
    ds.save_as(path)
    new = pydicom.dcmread(_files(_derive(ct_small_series, tmp_path / "out"))[0])
    assert "PatientID" in new and new.PatientID == ""  # Type 2: present, empty; no synthetic identity
    assert new.PatientName == ds.PatientName


# -- dciodvfy ------------------------------------------------------------------------------------------------

def _dciodvfy_errors(path: Path) -> set[str]:
    """dciodvfy's Error lines for one file, the values they quote (`` = <value>``) replaced so that one
    finding reads alike in input and output; attribute and module names (``Element=<Name>``) are kept."""
    run = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
    lines = (run.stdout + run.stderr).splitlines()
    assert "CTImage" in lines, f"dciodvfy did not check {path} as a CT image: {lines}"
    return {re.sub(r"\s=\s*<[^<>]*>", " = <value>", line.strip()) for line in lines if line.strip().startswith("Error")}


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dciodvfy (Debian package dicom3tools) is not installed")
@pytest.mark.parametrize("which", ["anonymised", "ct_small_series"])
def test_dciodvfy_finds_no_error_the_input_has_not(which: str, request, tmp_path: Path) -> None:
    source: Path = request.getfixturevalue(which)
    pairs = _pairs(source, _derive(source, tmp_path / "out"))
    for old, new in pairs:
        old_errors = _dciodvfy_errors(Path(old.filename))
        new_errors = _dciodvfy_errors(Path(new.filename))
        added = new_errors - old_errors
        assert not added, f"{new.filename}: dciodvfy errors that {old.filename} has not: {added}"


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dciodvfy (Debian package dicom3tools) is not installed")
def test_dciodvfy_finds_no_error_in_a_series_written_from_scratch(tmp_path: Path) -> None:
    """A series with no input headers (a phantom, a .npy) is complete CT Image Storage on its own."""
    from vagan.io.dicom import write_dicom_series

    hu = np.full((2, 32, 32), 40.0, np.float32)
    folder = write_dicom_series(hu, tmp_path / "scratch", series_description="phantom", pixel_spacing_mm=(0.7, 0.7),
                                slice_thickness_mm=1.0)
    for path in sorted(Path(folder).glob("*.dcm")):
        assert _dciodvfy_errors(path) == set(), path
