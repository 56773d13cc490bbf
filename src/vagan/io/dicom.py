"""DICOM CT series, the public entry points: :func:`read_dicom_series` (in :mod:`vagan.io.dicom_read`)
and :func:`write_dicom_series` (in :mod:`vagan.io.dicom_write`)."""

from __future__ import annotations

from vagan.io.dicom_header import MAX_SIDE
from vagan.io.dicom_read import DICOM_SUFFIXES, looks_like_dicom, read_dicom_series
from vagan.io.dicom_write import write_dicom_series

__all__ = ["DICOM_SUFFIXES", "MAX_SIDE", "looks_like_dicom", "read_dicom_series", "write_dicom_series"]
