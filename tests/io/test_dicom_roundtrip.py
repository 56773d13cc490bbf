"""DICOM -> HU -> DICOM -> HU keeps values (within 1 HU), geometry and patient/study tags."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest

from vagan.errors import OutputExistsError
from vagan.io import dicom_write as dicom_module
from vagan.io.dicom import read_dicom_series, write_dicom_series


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if not p.name.startswith("."))


def test_ct_small_known_values(ct_small: Path) -> None:
    vol = read_dicom_series(ct_small)
    raw = pydicom.dcmread(pydicom.data.get_testdata_file("CT_small.dcm"))
    assert vol.hu.shape == (1, 128, 128) and vol.hu.dtype == np.float32
    # intercept -1024, slope 1: HU = stored - 1024, checked on the raw stored values
    np.testing.assert_array_equal(vol.hu[0], raw.pixel_array.astype(np.float32) - 1024.0)
    assert vol.pixel_spacing_mm == pytest.approx((0.661468, 0.661468))
    assert vol.slice_thickness_mm == pytest.approx(5.0)
    assert vol.headers is not None and "PixelData" not in vol.headers[0]


def test_ct_small_round_trip_with_template(ct_small: Path, tmp_path: Path) -> None:
    vol = read_dicom_series(ct_small)
    shifted = vol.hu + 0.4  # non-integer HU: stored rounded, error <= 0.5 HU
    out = write_dicom_series(shifted, tmp_path / "out", template=vol, series_description="denoised", derivation_description="test model")
    back = read_dicom_series(out)
    assert np.abs(back.hu - shifted).max() <= 0.5
    new, old = pydicom.dcmread(_files(out)[0]), vol.headers[0]
    for key in ("PatientID", "PatientName", "StudyInstanceUID", "FrameOfReferenceUID"):
        assert new.get(key) == old.get(key), key
    np.testing.assert_allclose([float(v) for v in new.ImagePositionPatient], [float(v) for v in old.ImagePositionPatient])
    np.testing.assert_allclose([float(v) for v in new.PixelSpacing], [float(v) for v in old.PixelSpacing])
    np.testing.assert_allclose([float(v) for v in new.ImageOrientationPatient], [float(v) for v in old.ImageOrientationPatient])
    assert new.SeriesInstanceUID != old.SeriesInstanceUID
    assert new.SOPInstanceUID != old.SOPInstanceUID
    assert new.file_meta.MediaStorageSOPInstanceUID == new.SOPInstanceUID
    assert list(new.ImageType)[:2] == ["DERIVED", "SECONDARY"]
    assert new.SeriesDescription == "denoised" and new.DerivationDescription == "test model"
    assert int(new.SeriesNumber) != int(old.get("SeriesNumber", -1))
    assert new.SourceImageSequence[0].ReferencedSOPInstanceUID == old.SOPInstanceUID
    assert new.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert not any(elem.tag.is_private for elem in new)


def test_generated_series_round_trip(random_hu: np.ndarray, make_series, tmp_path: Path) -> None:
    first = make_series(random_hu, pixel_spacing_mm=(0.7, 0.8), slice_thickness_mm=2.5, patient_id="P001")
    vol = read_dicom_series(first)
    assert np.abs(vol.hu - random_hu).max() <= 0.5
    assert vol.pixel_spacing_mm == pytest.approx((0.7, 0.8))
    assert vol.slice_spacing_mm == pytest.approx(2.5)
    # second generation, with the first as template: values and tags survive again
    second = write_dicom_series(vol.hu, tmp_path / "second", template=vol, series_description="copy")
    again = read_dicom_series(second)
    assert np.abs(again.hu - random_hu).max() <= 0.5
    np.testing.assert_allclose(again.slice_positions_mm, vol.slice_positions_mm)
    old_uids = {h.SOPInstanceUID for h in vol.headers}
    new_uids = {h.SOPInstanceUID for h in again.headers}
    assert len(new_uids) == 5 and not old_uids & new_uids
    assert {h.PatientID for h in again.headers} == {"P001"}
    assert {h.StudyInstanceUID for h in again.headers} == {vol.headers[0].StudyInstanceUID}
    assert again.headers[0].SeriesInstanceUID != vol.headers[0].SeriesInstanceUID


def test_implicit_vr_template(random_hu: np.ndarray, make_series, tmp_path: Path) -> None:
    """Mayo .IMA files are Implicit VR Little Endian; derived series are written explicit."""
    folder = make_series(random_hu[:3])
    for path in _files(folder):
        ds = pydicom.dcmread(path)
        ds.file_meta.TransferSyntaxUID = pydicom.uid.ImplicitVRLittleEndian
        ds.save_as(path.with_suffix(".IMA"), implicit_vr=True, little_endian=True)
        path.unlink()
    vol = read_dicom_series(folder)
    assert vol.headers[0].file_meta.TransferSyntaxUID == pydicom.uid.ImplicitVRLittleEndian
    out = write_dicom_series(vol.hu, tmp_path / "derived", template=vol, series_description="d")
    assert pydicom.dcmread(_files(out)[0]).file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert np.abs(read_dicom_series(out).hu - random_hu[:3]).max() <= 0.5


def test_scratch_series_has_required_tags(random_hu: np.ndarray, make_series) -> None:
    folder = make_series(random_hu[:2])
    names = [p.name for p in _files(folder)]
    assert names == ["IM000001.dcm", "IM000002.dcm"]
    ds = pydicom.dcmread(folder / names[0])
    assert ds.file_meta.MediaStorageSOPClassUID == pydicom.uid.CTImageStorage == ds.SOPClassUID
    for key in ("StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID", "ImagePositionPatient",
                "ImageOrientationPatient", "PixelSpacing", "RescaleIntercept", "RescaleSlope",
                "WindowCenter", "WindowWidth", "Modality", "ImageType"):
        assert ds.get(key) not in (None, ""), key
    assert ds.pixel_array.dtype == np.int16


def test_out_of_range_hu_clipped(make_series, caplog) -> None:
    hu = np.array([[[-40000.0, 0.0], [100.0, 40000.0]]], dtype=np.float32)
    vol = read_dicom_series(make_series(hu))
    assert "2 HU values outside" in caplog.text
    assert vol.hu[0, 0, 0] == -32768 - 1024 and vol.hu[0, 1, 1] == 32767 - 1024
    assert vol.hu[0, 1, 0] == 100.0


def test_sorted_by_position_not_by_name(random_hu: np.ndarray, make_series, tmp_path: Path, np_rng) -> None:
    folder = make_series(random_hu, slice_thickness_mm=3.0)
    shuffled = tmp_path / "shuffled"
    shuffled.mkdir()
    files = _files(folder)
    names = [f"x{i}" for i in np_rng.permutation(len(files))]  # no extension, random order
    for src, name in zip(files, names):
        shutil.copy(src, shuffled / name)
    vol = read_dicom_series(shuffled)
    np.testing.assert_array_equal(vol.hu, read_dicom_series(folder).hu)
    z = vol.slice_positions_mm[:, 2]
    assert np.all(np.diff(z) > 0)


def test_reads_bare_data_sets_without_preamble(random_hu: np.ndarray, make_series, tmp_path: Path) -> None:
    folder = make_series(random_hu[:2])
    bare = tmp_path / "bare"
    bare.mkdir()
    for i, path in enumerate(_files(folder)):
        ds = pydicom.dcmread(path)
        del ds.file_meta
        ds.preamble = None
        pydicom.dcmwrite(bare / f"slice{i}", ds, implicit_vr=False, little_endian=True)
    assert (bare / "slice0").read_bytes()[:2] == b"\x08\x00"  # no preamble, no "DICM"
    (bare / "notes").write_bytes(b"free text, not DICOM")
    np.testing.assert_array_equal(read_dicom_series(bare).hu, read_dicom_series(folder).hu)


def test_sorted_along_normal_of_flipped_orientation(random_hu: np.ndarray, make_series, edit) -> None:
    # rows running posterior->anterior (0,-1,0): normal is -z, so slices sort by decreasing z
    folder = make_series(random_hu[:3])
    for k, path in enumerate(_files(folder)):
        edit(path, ImageOrientationPatient=[1, 0, 0, 0, -1, 0], ImagePositionPatient=[0, 0, 10.0 * k])
    vol = read_dicom_series(folder)
    np.testing.assert_array_equal(vol.hu, random_hu[:3][::-1].round())
    assert vol.slice_spacing_mm == pytest.approx(10.0)


def test_refuses_overwrite_and_keeps_existing(random_hu: np.ndarray, make_series) -> None:
    folder = make_series(random_hu)
    before = {p.name: p.read_bytes() for p in _files(folder)}
    with pytest.raises(OutputExistsError, match="exists"):
        make_series(random_hu + 1)
    assert {p.name: p.read_bytes() for p in _files(folder)} == before
    make_series(random_hu + 1, overwrite=True)
    assert np.abs(read_dicom_series(folder).hu - (random_hu + 1)).max() <= 0.5


def test_no_half_written_output(random_hu: np.ndarray, tmp_path: Path, monkeypatch) -> None:
    calls = []

    def failing(ds, path):
        calls.append(path)
        if len(calls) == 3:
            raise OSError("disk full (simulated)")
        pydicom.dcmwrite(path, ds, enforce_file_format=True)

    monkeypatch.setattr(dicom_module, "_write_slice", failing)
    with pytest.raises(OSError, match="disk full"):
        write_dicom_series(random_hu, tmp_path / "out", series_description="x")
    assert len(calls) == 3
    assert list(tmp_path.iterdir()) == []  # neither the output nor a temporary folder is left


def test_refuses_writing_over_its_template(ct_small: Path) -> None:
    vol = read_dicom_series(ct_small)
    with pytest.raises(Exception, match="input"):
        write_dicom_series(vol.hu, ct_small, template=vol, series_description="x", overwrite=True)
    assert (ct_small / "CT_small.dcm").is_file()


def test_dcmdump_reports_no_errors(random_hu: np.ndarray, make_series, ct_small: Path, tmp_path: Path) -> None:
    dcmdump = shutil.which("dcmdump")
    if dcmdump is None:
        pytest.skip("dcmtk's dcmdump is not installed")
    vol = read_dicom_series(ct_small)
    folders = [make_series(random_hu[:1]), write_dicom_series(vol.hu, tmp_path / "d", template=vol, series_description="d")]
    for folder in folders:
        for path in _files(folder):
            res = subprocess.run([dcmdump, "+E", str(path)], capture_output=True, text=True, check=False)
            assert res.returncode == 0 and "E:" not in res.stderr and "W:" not in res.stderr, res.stderr


def test_pixel_padding_value_is_kept_in_the_derived_series(tmp_path):
    """Issue 23 item 10: PixelPaddingValue was dropped from the derived series, so viewers showed the
    padding outside the field of view. It is carried over in the new stored units."""
    import numpy as np
    import pydicom

    from vagan.io.dicom import read_dicom_series, write_dicom_series

    ds = pydicom.dcmread(pydicom.data.get_testdata_file("CT_small.dcm"))
    pixels = ds.pixel_array.copy()
    pad = -2000  # stored; HU = stored * slope + intercept
    pixels[:10, :] = pad
    ds.PixelData = pixels.astype(pixels.dtype).tobytes()
    ds.PixelPaddingValue = pad
    ds["PixelPaddingValue"].VR = "SS"
    source = tmp_path / "src"
    source.mkdir()
    ds.save_as(source / "a.dcm")
    pad_hu = pad * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    volume = read_dicom_series(source)
    assert np.all(volume.hu[0, :10] == pad_hu)
    out = write_dicom_series(volume.hu, tmp_path / "out", series_description="d", template=volume)
    written = pydicom.dcmread(next(out.glob("*.dcm")))
    kept = written.PixelPaddingValue * float(written.RescaleSlope) + float(written.RescaleIntercept)
    assert kept == pad_hu and np.all(written.pixel_array[:10] == written.PixelPaddingValue)
    # once the padding pixels are gone (here: overwritten), no stale PixelPaddingValue is written
    filled = volume.hu.copy()
    filled[0, :10] = 0.0
    again = pydicom.dcmread(next(write_dicom_series(filled, tmp_path / "out2", series_description="d", template=volume).glob("*.dcm")))
    assert "PixelPaddingValue" not in again


def test_links_loops_and_fifos_in_a_series_folder_are_listed_not_silently_dropped(tmp_path):
    """Issue 23 item 10: a symlink loop, a dangling link or a FIFO beside the slices was skipped silently."""
    import os
    import shutil

    import pydicom

    from vagan.io.dicom import read_dicom_series

    folder = tmp_path / "series"
    folder.mkdir()
    shutil.copy(pydicom.data.get_testdata_file("CT_small.dcm"), folder / "a.dcm")
    (folder / "loop").symlink_to(folder / "loop")
    (folder / "dangling").symlink_to(tmp_path / "nowhere")
    os.mkfifo(folder / "pipe")
    volume = read_dicom_series(folder)  # does not block on the FIFO
    reasons = {p.name: why for p, why in volume.skipped}
    assert volume.hu.shape[0] == 1
    assert reasons == {"loop": "a symbolic link loop", "dangling": "a dangling symbolic link",
                       "pipe": "not a regular file (a FIFO, socket or device)"}
