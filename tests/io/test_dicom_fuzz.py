"""Property: whatever damage a series folder suffers, the reader returns every CT slice or raises the
project's own error; never another exception and never fewer slices without saying which and why."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
import pydicom
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vagan.errors import VaganError
from vagan.io.dicom import read_dicom_series, write_dicom_series

N_SLICES = 4
TAGS = ("RescaleSlope", "RescaleIntercept", "PixelSpacing", "ImagePositionPatient", "ImageOrientationPatient",
        "Rows", "Columns", "SOPClassUID", "Modality", "PixelData", "SeriesInstanceUID", "InstanceNumber",
        "BitsAllocated", "BitsStored", "PixelRepresentation", "SamplesPerPixel", "PhotometricInterpretation",
        "SliceThickness", "NumberOfFrames", "ImageType")
TEXT = st.text(alphabet=st.sampled_from(list("0123456789.-+eE\\ abcnaNif")), max_size=12)


@pytest.fixture(scope="module")
def series_template(tmp_path_factory) -> tuple[Path, Path]:
    """A clean 4-slice series and one slice of another series, written once."""
    base = tmp_path_factory.mktemp("fuzz")
    hu = np.linspace(-1000, 1000, N_SLICES * 16 * 16, dtype=np.float32).reshape(N_SLICES, 16, 16)
    series = write_dicom_series(hu, base / "series", series_description="fuzz", patient_id="P",
                                pixel_spacing_mm=(0.7, 0.7), slice_thickness_mm=1.0)
    other = write_dicom_series(hu[:1] + 5, base / "other", series_description="other", patient_id="P",
                               pixel_spacing_mm=(0.7, 0.7), slice_thickness_mm=1.0)
    return series, other


def _slices(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if not p.name.startswith("."))


def _set(path: Path, key: str, value) -> None:
    ds = pydicom.dcmread(path, force=True)
    if value is None:
        if key in ds:
            delattr(ds, key)
    elif key in ds and key != "PixelData":
        ds[key].VR = "LO"  # text that is not of the tag's VR, as a broken exporter writes it
        ds[key].value = value
    else:
        setattr(ds, key, value)
    ds.save_as(path)


damage = st.one_of(
    st.tuples(st.just("delete"), st.integers(0, N_SLICES - 1), st.sampled_from(TAGS)),
    st.tuples(st.just("garble"), st.integers(0, N_SLICES - 1), st.sampled_from(TAGS), TEXT),
    st.tuples(st.just("truncate"), st.integers(0, N_SLICES - 1), st.integers(0, 2000)),
    st.tuples(st.just("scribble"), st.integers(0, N_SLICES - 1), st.integers(132, 1500), st.binary(min_size=1,
                                                                                                       max_size=16)),
    st.tuples(st.just("swap_positions"), st.integers(0, N_SLICES - 1), st.integers(0, N_SLICES - 1)),
    st.tuples(st.just("copy_position"), st.integers(0, N_SLICES - 1), st.integers(0, N_SLICES - 1)),
    st.tuples(st.just("stray"), st.booleans()),
    st.tuples(st.just("junk_file"), st.binary(max_size=64)),
)


def _apply(folder: Path, other: Path, op: tuple) -> None:
    files = _slices(folder)
    kind = op[0]
    if kind == "delete" or kind == "garble":
        path = files[op[1] % len(files)]
        if path.suffix == ".dcm" and path.stat().st_size > 132:
            try:
                _set(path, op[2], None if kind == "delete" else op[3])
            except Exception:  # pydicom refuses to write some values; that damage is not possible then
                pass
    elif kind == "truncate":
        path = files[op[1] % len(files)]
        path.write_bytes(path.read_bytes()[:op[2]])
    elif kind == "scribble":
        path = files[op[1] % len(files)]
        data = bytearray(path.read_bytes())
        data[op[2]:op[2] + len(op[3])] = op[3]
        path.write_bytes(bytes(data))
    elif kind in ("swap_positions", "copy_position"):
        a, b = (files[i % len(files)] for i in op[1:3])
        try:  # on an already damaged file this damage may not be possible
            da, db = pydicom.dcmread(a), pydicom.dcmread(b)
            pa, pb = da.ImagePositionPatient, db.ImagePositionPatient
            da.ImagePositionPatient = pb
            if kind == "swap_positions":
                db.ImagePositionPatient = pa
                db.save_as(b)
            da.save_as(a)
        except Exception:
            return
    elif kind == "stray":
        target = folder / ("stray.dcm" if op[1] else "stray")
        shutil.copy(_slices(other)[0], target)
    elif kind == "junk_file":
        (folder / "junk.bin").write_bytes(op[1])


@settings(max_examples=int(__import__("os").environ.get("FUZZ_N", 120)), deadline=None, derandomize=not __import__("os").environ.get("FUZZ_N"),
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(ops=st.lists(damage, min_size=1, max_size=3))
def test_a_damaged_series_is_read_whole_or_refused_with_our_error(series_template, ops) -> None:
    series, other = series_template
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "series"
        shutil.copytree(series, folder)
        for op in ops:
            _apply(folder, other, op)
        files = _slices(folder)
        try:
            volume = read_dicom_series(folder)
        except VaganError as err:
            assert str(err) and "\n" not in str(err)
            return
        skipped = {path.name for path, _ in volume.skipped}
        # every file is a slice of the volume or listed as skipped with its reason
        assert volume.hu.shape[0] + len(skipped) == len(files), (ops, volume.skipped)
        for path, reason in volume.skipped:
            assert reason
            if path.suffix == ".dcm":  # a file that claims to be DICOM is never skipped as junk
                assert reason != "not DICOM", (ops, path)
        assert np.isfinite(volume.hu).all()
