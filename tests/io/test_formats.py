"""NIfTI and NumPy round trips, geometry through the affine, and dispatch by kind."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vagan.errors import InputDataError, OutputExistsError, VaganError
from vagan.io.arrays import read_npy, write_npy
from vagan.io.dicom import read_dicom_series
from vagan.io.nifti import read_nifti, write_nifti
from vagan.io.readers import detect_kind, read_volume, write_volume
from vagan.io.volume import CTVolume


def _volume(hu: np.ndarray) -> CTVolume:
    positions = np.array([[-20.0, -30.0, 5.0 + 2.5 * k] for k in range(hu.shape[0])])
    return CTVolume(hu=hu, pixel_spacing_mm=(0.7, 0.8), slice_positions_mm=positions,
                    orientation=(1.0, 0.0, 0.0, 0.0, 1.0, 0.0), slice_thickness_mm=2.5)


def test_affine_maps_voxels_to_dicom_positions(random_hu) -> None:
    vol = _volume(random_hu)
    lps = vol.affine("LPS")
    # voxel (column 3, row 2, slice 4): P_4 + 3 * 0.8 * x + 2 * 0.7 * y
    expected = vol.slice_positions_mm[4] + np.array([3 * 0.8, 2 * 0.7, 0.0])
    np.testing.assert_allclose(lps @ [3, 2, 4, 1], [*expected, 1.0])
    ras = vol.affine("RAS")
    np.testing.assert_allclose(ras @ [3, 2, 4, 1], [-expected[0], -expected[1], expected[2], 1.0])


@pytest.mark.parametrize("name", ["vol.nii", "vol.nii.gz"])
def test_nifti_round_trip(random_hu, tmp_path: Path, name: str) -> None:
    vol = _volume(random_hu)
    path = write_nifti(tmp_path / name, vol)
    back = read_nifti(path)
    np.testing.assert_array_equal(back.hu, random_hu)  # float32 stored exactly
    assert back.pixel_spacing_mm == pytest.approx(vol.pixel_spacing_mm)
    np.testing.assert_allclose(back.slice_positions_mm, vol.slice_positions_mm, atol=1e-4)
    np.testing.assert_allclose(back.orientation, vol.orientation, atol=1e-6)
    assert back.slice_spacing_mm == pytest.approx(2.5)
    with pytest.raises(OutputExistsError):
        write_nifti(path, vol)


def test_nifti_is_readable_by_nibabel_with_ras_affine(random_hu, tmp_path: Path) -> None:
    import nibabel as nib

    path = write_nifti(tmp_path / "v.nii.gz", _volume(random_hu))
    img = nib.load(str(path))
    assert img.shape == (64, 63, 5)  # (columns, rows, slices)
    assert nib.aff2axcodes(img.affine) == ("L", "P", "S")
    assert img.get_fdata()[3, 2, 4] == pytest.approx(float(random_hu[4, 2, 3]))


def test_dicom_to_nifti_to_dicom_keeps_geometry(random_hu, make_series, tmp_path: Path) -> None:
    dicom = read_dicom_series(make_series(random_hu, pixel_spacing_mm=(0.6, 0.9), slice_thickness_mm=1.5))
    nifti = read_volume(write_volume(tmp_path / "v.nii.gz", dicom))
    np.testing.assert_allclose(nifti.slice_positions_mm, dicom.slice_positions_mm, atol=1e-4)
    out = read_volume(write_volume(tmp_path / "again", nifti, series_description="from nifti"))
    np.testing.assert_allclose(out.slice_positions_mm, dicom.slice_positions_mm, atol=1e-3)
    assert out.pixel_spacing_mm == pytest.approx((0.6, 0.9))
    assert np.abs(out.hu - random_hu).max() <= 0.5


@pytest.mark.parametrize("shape", [(5, 63, 64), (63, 64)])
def test_npy_round_trip(np_rng, tmp_path: Path, shape) -> None:
    hu = np_rng.uniform(-1024, 3000, shape).astype(np.float32)
    path = write_npy(tmp_path / "v.npy", hu)
    assert np.load(path).shape == shape
    vol = read_npy(path, pixel_spacing_mm=(0.5, 0.5))
    assert vol.hu.shape == (5, 63, 64) if len(shape) == 3 else (1, 63, 64)
    np.testing.assert_array_equal(vol.hu.reshape(shape), hu)
    assert vol.pixel_spacing_mm == (0.5, 0.5) and vol.slice_spacing_mm == 1.0


def test_npy_nan_and_bad_files(tmp_path: Path) -> None:
    bad = np.zeros((3, 8, 8), dtype=np.float32)
    bad[0, 1, 1] = np.inf
    np.save(tmp_path / "inf.npy", bad)
    with pytest.raises(InputDataError, match=r"inf\.npy.*infinite"):
        read_npy(tmp_path / "inf.npy")
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(InputDataError, match=r"obj\.npy"):
        read_npy(tmp_path / "obj.npy")
    np.save(tmp_path / "four.npy", np.zeros((1, 2, 3, 4), dtype=np.float32))
    with pytest.raises(InputDataError, match=r"four\.npy.*shape \(1, 2, 3, 4\)"):
        read_npy(tmp_path / "four.npy")
    (tmp_path / "cut.npy").write_bytes((tmp_path / "four.npy").read_bytes()[:100])
    with pytest.raises(InputDataError, match=r"cut\.npy.*corrupt"):
        read_npy(tmp_path / "cut.npy")
    with pytest.raises(InputDataError, match=r"nan\.npy.*NaN"):
        write_npy(tmp_path / "nan.npy", np.full((2, 2), np.nan, dtype=np.float32))
    assert not (tmp_path / "nan.npy").exists()


def test_detect_kind(tmp_path: Path, ct_small: Path) -> None:
    (tmp_path / "a.npy").write_bytes(b"")
    assert detect_kind(ct_small) == "dicom"
    assert detect_kind(ct_small / "CT_small.dcm") == "dicom"
    assert detect_kind(tmp_path / "x.nii.gz") == "nifti"
    assert detect_kind(tmp_path / "X.NII") == "nifti"
    assert detect_kind(tmp_path / "a.npy") == "npy"
    assert detect_kind(tmp_path / "new_series") == "dicom"
    (tmp_path / "img.png").write_bytes(b"\x89PNG")
    with pytest.raises(InputDataError, match=r"img\.png.*unknown.*DICOM series folder"):
        detect_kind(tmp_path / "img.png")


def test_read_write_volume_dispatch(random_hu, tmp_path: Path, ct_small: Path) -> None:
    assert read_volume(ct_small).hu.shape == (1, 128, 128)
    for name in ("v.npy", "v.nii", "series"):
        path = write_volume(tmp_path / name, random_hu)
        assert np.abs(read_volume(path).hu - random_hu).max() <= 0.5, name
    with pytest.raises(VaganError, match=r"out\.png"):
        write_volume(tmp_path / "out.png", random_hu)
    with pytest.raises(VaganError, match="series folder"):
        write_volume(tmp_path / "out.dcm", random_hu)
    with pytest.raises(InputDataError, match="does not exist"):
        read_volume(tmp_path / "missing.nii")


def test_write_volume_of_a_derived_volume_keeps_dicom_tags(ct_small: Path, tmp_path: Path) -> None:
    src = read_volume(ct_small)
    path = write_volume(tmp_path / "den", src.with_hu(src.hu - 10.0), series_description="denoised by m")
    out = read_volume(path)
    assert np.abs(out.hu - (src.hu - 10.0)).max() <= 0.5
    assert out.headers[0].PatientID == src.headers[0].PatientID
    assert out.headers[0].SeriesDescription == "denoised by m"


def test_with_hu_keeps_geometry_and_headers_and_refuses_another_shape(ct_small: Path) -> None:
    volume = read_dicom_series(ct_small)
    denoised = volume.with_hu(volume.hu + 1.0)
    assert np.array_equal(denoised.hu, volume.hu + 1.0) and denoised.hu.dtype == np.float32
    assert denoised.pixel_spacing_mm == volume.pixel_spacing_mm and denoised.headers is volume.headers
    assert np.array_equal(denoised.slice_positions_mm, volume.slice_positions_mm) and denoised.skipped == ()
    with pytest.raises(ValueError, match="cannot replace"):
        volume.with_hu(volume.hu[:, :-1])


def test_a_machine_fault_while_reading_is_not_called_corrupt_data(tmp_path: Path, ct_small: Path, monkeypatch) -> None:
    import vagan.io.arrays as arrays
    import vagan.io.dicom_read as dicom_read

    np.save(tmp_path / "a.npy", np.zeros((2, 4, 4), np.float32))

    def out_of_memory(*args, **kwargs):
        raise MemoryError("no room")

    def not_allowed(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(args[0]))

    monkeypatch.setattr(arrays.np, "load", out_of_memory)
    with pytest.raises(MemoryError):  # the machine's fault: never "corrupt or unreadable .npy"
        read_npy(tmp_path / "a.npy")
    monkeypatch.setattr(dicom_read.pydicom, "dcmread", not_allowed)
    with pytest.raises(PermissionError):  # the CLI reports OS errors as such (exit code 1)
        read_dicom_series(ct_small)


def test_an_npy_header_that_claims_more_than_the_file_holds_is_refused_before_allocating(tmp_path: Path) -> None:
    """A 32 KB file whose header claims (100000, 4096, 4096) float32 (6.7 TB): one input error, no
    MemoryError, and through the CLI one `error:` line with exit code 2."""
    from typer.testing import CliRunner

    from vagan.cli import app

    header = np.lib.format.header_data_from_array_1_0(np.zeros((1, 2, 2), np.float32))
    header["shape"] = (100000, 4096, 4096)
    bomb = tmp_path / "bomb.npy"
    with bomb.open("wb") as handle:
        np.lib.format.write_array_header_1_0(handle, header)
        handle.write(b"\0" * 32768)
    with pytest.raises(InputDataError, match=r"bomb\.npy.*claims an array of shape \(100000, 4096, 4096\)"):
        read_npy(bomb)
    result = CliRunner().invoke(app, ["denoise", "--model", "bm3d:20", str(bomb), str(tmp_path / "out.npy")])
    lines = [ln for ln in result.output.splitlines() if ln.startswith("error:")]
    assert result.exit_code == 2 and len(lines) == 1 and "claims an array" in lines[0]
    assert not (tmp_path / "out.npy").exists()
