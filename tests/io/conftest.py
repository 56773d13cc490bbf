"""Fixtures for the CT I/O tests: small synthetic series written by vagan's own writer."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
import pytest

from vagan.io.dicom import write_dicom_series


@pytest.fixture
def ct_small(tmp_path: Path) -> Path:
    """pydicom's CT_small.dcm (a real GE slice, intercept -1024) as a one-slice series folder."""
    folder = tmp_path / "ct_small"
    folder.mkdir()
    shutil.copy(pydicom.data.get_testdata_file("CT_small.dcm"), folder / "CT_small.dcm")
    return folder


@pytest.fixture
def random_hu(np_rng: np.random.Generator) -> np.ndarray:
    """5 slices of 64x64 (odd height on purpose: 63 rows) of random HU in [-1024, 3000]."""
    return np_rng.uniform(-1024.0, 3000.0, size=(5, 63, 64)).astype(np.float32)


@pytest.fixture
def make_series(tmp_path: Path) -> Callable[..., Path]:
    """Write an HU array as a DICOM series under ``tmp_path/name`` with vagan's writer."""

    def make(hu: np.ndarray, name: str = "series", **kwargs) -> Path:
        kwargs.setdefault("series_description", "test series")
        return write_dicom_series(hu, tmp_path / name, **kwargs)

    return make


def edit_file(path: Path, **tags) -> None:
    """Set (or, with value None, delete) tags of one DICOM file in place."""
    ds = pydicom.dcmread(path)
    for key, value in tags.items():
        if value is None:
            if key in ds:
                delattr(ds, key)
        else:
            setattr(ds, key, value)
    ds.save_as(path)


@pytest.fixture
def edit() -> Callable[..., None]:
    return edit_file
