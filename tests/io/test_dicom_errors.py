"""Each kind of bad DICOM input is one InputDataError that names the file (or folder)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest

from vagan.errors import InputDataError
from vagan.io.dicom import read_dicom_series


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if not p.name.startswith("."))


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(InputDataError, match="nowhere.*does not exist"):
        read_dicom_series(tmp_path / "nowhere")


def test_folder_without_dicom(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not dicom")
    (tmp_path / "manifest.json").write_text("{}")
    with pytest.raises(InputDataError, match="no DICOM CT images"):
        read_dicom_series(tmp_path)


def test_non_dicom_files_beside_a_series_are_ignored(random_hu, make_series) -> None:
    folder = make_series(random_hu[:2])
    (folder / "manifest.json").write_text('{"a": 1}')
    assert read_dicom_series(folder).hu.shape == (2, 63, 64)


@pytest.mark.parametrize("keep", [140, 2000, 36000], ids=["after-preamble", "in-header", "in-pixel-data"])
def test_truncated_file(ct_small: Path, keep: int) -> None:
    path = ct_small / "CT_small.dcm"
    path.write_bytes(path.read_bytes()[:keep])
    with pytest.raises(InputDataError, match=r"CT_small\.dcm.*(corrupt|truncated)"):
        read_dicom_series(ct_small)


def test_garbage_with_dicom_suffix(tmp_path: Path, np_rng) -> None:
    (tmp_path / "IM0001.IMA").write_bytes(np_rng.integers(0, 256, 3000, dtype=np.uint8).tobytes())
    with pytest.raises(InputDataError, match=r"IM0001\.IMA.*corrupt"):
        read_dicom_series(tmp_path)


def test_mr_modality(random_hu, make_series, edit) -> None:
    folder = make_series(random_hu[:3])
    bad = _files(folder)[1]
    edit(bad, Modality="MR")
    with pytest.raises(InputDataError, match=rf"{bad.name}.*'MR'.*expected 'CT'"):
        read_dicom_series(folder)


@pytest.mark.parametrize("tag", ["RescaleIntercept", "RescaleSlope"])
def test_missing_rescale(random_hu, make_series, edit, tag: str) -> None:
    folder = make_series(random_hu[:2])
    bad = _files(folder)[0]
    edit(bad, **{tag: None})
    with pytest.raises(InputDataError, match=rf"{bad.name}.*missing {tag}.*CT images must carry"):
        read_dicom_series(folder)


def test_mixed_series(random_hu, make_series, tmp_path: Path) -> None:
    a, b = make_series(random_hu[:3], "a"), make_series(random_hu[:2] + 5, "b")
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for src in _files(a):
        shutil.copy(src, mixed / f"a_{src.name}")
    for src in _files(b):
        shutil.copy(src, mixed / f"b_{src.name}")
    uid_a = pydicom.dcmread(_files(a)[0]).SeriesInstanceUID
    uid_b = pydicom.dcmread(_files(b)[0]).SeriesInstanceUID
    with pytest.raises(InputDataError, match="2 series mixed") as info:
        read_dicom_series(mixed)
    message = str(info.value)
    assert f"{uid_a} (3 files, e.g. a_IM000001.dcm)" in message and f"{uid_b} (2 files, e.g. b_IM000001.dcm)" in message
    assert "split" in message
    assert "\n" not in message


def test_inconsistent_spacing(random_hu, make_series, edit) -> None:
    folder = make_series(random_hu[:3])
    bad = _files(folder)[2]
    edit(bad, PixelSpacing=[0.5, 0.5])
    with pytest.raises(InputDataError, match=rf"{bad.name}.*PixelSpacing"):
        read_dicom_series(folder)


def test_inconsistent_size(random_hu, make_series, tmp_path: Path) -> None:
    folder = make_series(random_hu[:2])
    other = make_series(random_hu[:1, :32, :32], "small")
    ds = pydicom.dcmread(_files(other)[0])
    ds.SeriesInstanceUID = pydicom.dcmread(_files(folder)[0]).SeriesInstanceUID
    ds.ImagePositionPatient = [0, 0, 100]
    ds.save_as(folder / "odd.dcm")
    with pytest.raises(InputDataError, match=r"odd\.dcm.*(Rows|Columns)"):
        read_dicom_series(folder)


def test_duplicate_positions(random_hu, make_series, edit) -> None:
    folder = make_series(random_hu[:3])
    files = _files(folder)
    pos = pydicom.dcmread(files[0]).ImagePositionPatient
    edit(files[2], ImagePositionPatient=list(pos))
    with pytest.raises(InputDataError, match=r"IM00000[13]\.dcm.*same slice position.*IM00000[13]\.dcm"):
        read_dicom_series(folder)


def test_localizer_skipped(random_hu, make_series, edit, tmp_path: Path, caplog) -> None:
    folder = make_series(random_hu[:3])
    scout_src = make_series(random_hu[:1, :32, :64], "scout")
    scout = folder / "scout.dcm"
    shutil.copy(_files(scout_src)[0], scout)
    edit(scout, ImageType=["ORIGINAL", "PRIMARY", "LOCALIZER"], SeriesInstanceUID="1.2.3.4")
    vol = read_dicom_series(folder)
    assert vol.hu.shape == (3, 63, 64)
    assert "scout.dcm" in caplog.text and "localizer" in caplog.text
    with pytest.raises(InputDataError):
        read_dicom_series(folder, skip_localizers=False)


def test_off_orientation_image_skipped(random_hu, make_series, edit, caplog) -> None:
    folder = make_series(random_hu[:3])
    files = _files(folder)
    edit(files[1], ImageOrientationPatient=[1, 0, 0, 0, 0, -1])  # a coronal image among axials
    vol = read_dicom_series(folder)
    assert vol.hu.shape == (2, 63, 64)
    assert files[1].name in caplog.text


def test_nan_volume_rejected_by_name(tmp_path: Path) -> None:
    from vagan.io.volume import CTVolume

    hu = np.zeros((2, 4, 4), dtype=np.float32)
    hu[1, 2, 3] = np.nan
    with pytest.raises(InputDataError, match=r"scan\.npy.*1 NaN.*slice 1, row 2, column 3"):
        CTVolume(hu=hu, source=tmp_path / "scan.npy").validate()


def test_693_uncr_head_ct() -> None:
    path = pydicom.data.get_testdata_file("693_UNCR.dcm")
    if path is None:
        pytest.skip("pydicom-data's 693_UNCR.dcm is not installed")
    vol = read_dicom_series(Path(path))
    raw = pydicom.dcmread(path)
    assert vol.hu.shape == (1, 512, 512)
    np.testing.assert_array_equal(vol.hu[0], raw.pixel_array * float(raw.RescaleSlope) + float(raw.RescaleIntercept))
    assert -1100 < float(np.median(vol.hu)) < 3000


def test_jpeg2000_abdomen_ct(tmp_path: Path) -> None:
    path = pydicom.data.get_testdata_file("explicit_VR-UN.dcm")
    if path is None:
        pytest.skip("pydicom-data's explicit_VR-UN.dcm is not installed")
    pytest.importorskip("openjpeg", reason="pylibjpeg-openjpeg decodes JPEG 2000")
    vol = read_dicom_series(Path(path))
    assert vol.hu.shape == (1, 512, 512)
    body = vol.hu[0, 200:300, 200:300]
    assert -200 < float(np.median(body)) < 200  # soft tissue in the middle of an abdomen
    # and it serves as a template for an uncompressed derived series
    from vagan.io.dicom import write_dicom_series

    out = write_dicom_series(vol.hu, tmp_path / "derived", template=vol, series_description="d")
    assert np.abs(read_dicom_series(out).hu - vol.hu).max() <= 0.5


def test_missing_decoder_is_named(monkeypatch, tmp_path: Path) -> None:
    path = pydicom.data.get_testdata_file("explicit_VR-UN.dcm")
    if path is None:
        pytest.skip("pydicom-data's explicit_VR-UN.dcm is not installed")

    def no_decoder(self):
        raise RuntimeError("Unable to decompress: all plugins are missing dependencies")

    monkeypatch.setattr(pydicom.dataset.Dataset, "pixel_array", property(no_decoder))
    with pytest.raises(InputDataError, match=r"explicit_VR-UN\.dcm.*JPEG 2000.*pip install python-gdcm pyjpegls"):
        read_dicom_series(Path(path))


def test_truncated_slice_is_an_error_not_a_dropped_slice(tmp_path):
    """A series file cut to its first 300 bytes still declares CT Image Storage in its file meta:
    reading the series fails naming it instead of returning one slice fewer."""
    from vagan.io.dicom import write_dicom_series

    folder = tmp_path / "series"
    write_dicom_series(np.zeros((3, 32, 32), np.float32), folder, series_description="s", patient_id="P",
                       pixel_spacing_mm=(0.7, 0.7), slice_thickness_mm=1.0)
    victim = _files(folder)[1]
    victim.write_bytes(victim.read_bytes()[:300])
    with pytest.raises(InputDataError, match=f"{victim.name}.*truncated or corrupt"):
        read_dicom_series(folder)


@pytest.mark.parametrize(("key", "value", "shown"), [
    ("RescaleSlope", "abc", "RescaleSlope is 'abc'"),
    ("ImagePositionPatient", ["a", "b", "c"], "ImagePositionPatient is"),
    ("ImagePositionPatient", ["0", "0", "nan"], "ImagePositionPatient is"),
    ("ImageOrientationPatient", ["1", "0", "0", "1", "0", "0"], "not two orthogonal unit vectors"),
    ("SamplesPerPixel", "\\", "SamplesPerPixel is"),
    ("PixelSpacing", ["0.7", "nan"], "PixelSpacing is"),
    ("Rows", 60000, "60000x"),
])
def test_values_that_do_not_parse_are_one_error(tmp_path, key, value, shown):
    """Bad numbers in a CT header are an InputDataError naming file and tag, checked before any pixel
    array is allocated (Rows = 60000 would ask for gigabytes)."""
    from vagan.io.dicom import write_dicom_series

    folder = tmp_path / "series"
    write_dicom_series(np.zeros((2, 16, 16), np.float32), folder, series_description="s", patient_id="P",
                       pixel_spacing_mm=(0.7, 0.7), slice_thickness_mm=1.0)
    victim = _files(folder)[0]
    ds = pydicom.dcmread(victim)
    if key == "Rows":
        ds.Rows = value
    else:
        ds[key].VR = "LO"  # let pydicom store text that is not a decimal string, as a broken scanner would
        ds[key].value = value
    ds.save_as(victim)
    with pytest.raises(InputDataError, match=f"{victim.name}.*{shown}"):
        read_dicom_series(folder)


def test_an_image_of_another_series_is_a_mix_not_a_localizer(random_hu, make_series, edit) -> None:
    """A slice of another series in another orientation used to be dropped as a scout; only images of
    the series itself may be taken for scouts."""
    folder = make_series(random_hu[:3])
    other = make_series(random_hu[:1], "other")
    stray = folder / "stray.dcm"
    shutil.copy(_files(other)[0], stray)
    edit(stray, ImageOrientationPatient=[1, 0, 0, 0, 0, -1])
    with pytest.raises(InputDataError, match="2 series mixed in one folder"):
        read_dicom_series(folder)


def test_skipped_files_are_listed_with_the_reason(random_hu, make_series, edit) -> None:
    folder = make_series(random_hu[:3])
    (folder / "README.txt").write_text("notes")
    files = _files(folder)
    edit(files[1], ImageOrientationPatient=[1, 0, 0, 0, 0, -1])
    vol = read_dicom_series(folder)
    reasons = {path.name: why for path, why in vol.skipped}
    assert vol.hu.shape[0] == 2
    assert reasons == {"README.txt": "not DICOM", files[1].name: reasons[files[1].name]}
    assert "orientation" in reasons[files[1].name]


def test_non_finite_geometry_is_refused(tmp_path: Path) -> None:
    from vagan.io.volume import CTVolume

    hu = np.full((2, 4, 4), -1000.0, dtype=np.float32)
    positions = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, np.nan]])
    with pytest.raises(InputDataError, match="slice positions must be finite"):
        CTVolume(hu=hu, slice_positions_mm=positions, source=tmp_path / "v").validate()
    with pytest.raises(InputDataError, match="6 finite direction cosines"):
        CTVolume(hu=hu, orientation=(1, 0, 0, 0, np.inf, 0), source=tmp_path / "v").validate()


def test_values_that_cannot_be_hu_are_refused_and_doubtful_ones_warned(tmp_path: Path, caplog) -> None:
    from vagan.io.volume import CTVolume

    hu = np.linspace(-1000, 1000, 32, dtype=np.float32).reshape(2, 4, 4)
    with pytest.raises(InputDataError, match=r"beyond any CT number scale"):
        CTVolume(hu=hu * 1e6, source=tmp_path / "scaled.npy").validate()
    CTVolume(hu=hu, source=tmp_path / "fine.npy").validate()
    assert "probably not HU" not in caplog.text
    eight_bit = np.linspace(0, 255, 32, dtype=np.float32).reshape(2, 4, 4)
    CTVolume(hu=eight_bit, source=tmp_path / "png_like.npy").validate()
    assert "png_like.npy: no value below 0 HU" in caplog.text


def test_an_element_that_cannot_be_parsed_is_one_error_naming_the_file(tmp_path):
    """pydicom parses elements lazily: a damaged VR used to surface as a NotImplementedError later."""
    from vagan.io.dicom import write_dicom_series

    folder = tmp_path / "series"
    write_dicom_series(np.zeros((2, 16, 16), np.float32), folder, series_description="s", patient_id="P",
                       pixel_spacing_mm=(0.7, 0.7), slice_thickness_mm=1.0)
    victim = _files(folder)[1]
    data = victim.read_bytes()
    tag = b"\x20\x00\x32\x00DS"  # ImagePositionPatient, explicit VR little endian
    assert data.count(tag) == 1
    victim.write_bytes(data.replace(tag, b"\x20\x00\x32\x00\x44\x00"))
    with pytest.raises(InputDataError, match=f"{victim.name}: corrupt or truncated DICOM file"):
        read_dicom_series(folder)


def test_jpeg_lossless_ct_from_a_scanner_is_read():
    """Issue 23 item 12: JPEG Lossless (Process 14, SV1) could not be read with the documented install.
    pydicom-data's bad_sequence.dcm is such a CT slice from a Siemens scanner."""
    path = pydicom.data.get_testdata_file("bad_sequence.dcm", download=False)
    if path is None:
        pytest.skip("pydicom-data's bad_sequence.dcm is not installed")
    ds = pydicom.dcmread(path)
    assert ds.file_meta.TransferSyntaxUID == pydicom.uid.JPEGLosslessSV1
    vol = read_dicom_series(Path(path))
    expected = ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    assert vol.hu.shape == (1, 512, 512) and np.array_equal(vol.hu[0], expected.astype(np.float32))
    assert float(vol.hu.min()) < -500 < 0 < float(vol.hu.max())  # air and tissue of a real scan


def test_jpeg_ls_lossless_series_reads_back_exactly(tmp_path):
    """A CT series re-encoded as JPEG-LS Lossless (CharLS) reads back to the same HU as uncompressed."""
    source = pydicom.data.get_testdata_file("CT_small.dcm")
    ds = pydicom.dcmread(source)
    ds.compress(pydicom.uid.JPEGLSLossless)
    folder = tmp_path / "jls"
    folder.mkdir()
    ds.save_as(folder / "a.dcm")
    assert pydicom.dcmread(folder / "a.dcm").file_meta.TransferSyntaxUID == pydicom.uid.JPEGLSLossless
    assert np.array_equal(read_dicom_series(folder).hu, read_dicom_series(Path(source)).hu)


@pytest.mark.parametrize(("syntax", "options", "tolerance_hu"), [
    (pydicom.uid.RLELossless, {}, 0.0),
    (pydicom.uid.DeflatedExplicitVRLittleEndian, None, 0.0),
    (pydicom.uid.JPEG2000Lossless, {}, 0.0),
    (pydicom.uid.JPEG2000, {"j2k_cr": [20]}, 20.0),  # lossy at 20:1: close (RMS), not equal
])
def test_every_syntax_a_pacs_sends_reads_back(tmp_path, syntax, options, tolerance_hu):
    """Issue 22 item 4: a CT slice re-encoded in each transfer syntax reads back to the uncompressed HU
    (lossy JPEG 2000 within its error, and not bit for bit)."""
    if "2000" in syntax.name:
        pytest.importorskip("openjpeg", reason="pylibjpeg-openjpeg encodes JPEG 2000")
    source = pydicom.data.get_testdata_file("CT_small.dcm")
    ds = pydicom.dcmread(source)
    if options is None:  # deflate: the dataset is compressed as a whole, the pixel data stays native
        ds.file_meta.TransferSyntaxUID = syntax
    else:
        ds.compress(syntax, **options)
    folder = tmp_path / "series"
    folder.mkdir()
    ds.save_as(folder / "a.dcm", enforce_file_format=True)
    assert pydicom.dcmread(folder / "a.dcm").file_meta.TransferSyntaxUID == syntax
    got, want = read_dicom_series(folder).hu, read_dicom_series(Path(source)).hu
    rms = float(np.sqrt(np.mean((got.astype(np.float64) - want) ** 2)))
    assert rms <= tolerance_hu and (rms > 0) == (tolerance_hu > 0)
