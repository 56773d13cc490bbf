"""One DICOM CT header, checked before its pixels are read: every tag the reader uses is present
where required and parses to sane values, so damage is one :class:`~vagan.errors.InputDataError`
naming the file, never a traceback later."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import UID

from vagan.errors import InputDataError


def declared_sop_class(ds: Dataset) -> str:
    """The SOP class of the dataset, else the one its file meta declares (a truncated file keeps only that)."""
    meta = getattr(ds, "file_meta", None)
    return str(ds.get("SOPClassUID") or (meta.get("MediaStorageSOPClassUID") if meta is not None else "") or "")


def is_image_object(ds: Dataset) -> bool:
    sop_class = declared_sop_class(ds)
    name = UID(sop_class).name if sop_class else ""
    return "PixelData" in ds or "Image Storage" in name or ds.get("Modality") == "CT"


def image_position(ds: Dataset) -> list[float] | None:
    """ImagePositionPatient as three numbers (checked by :func:`_check_numbers`), or None when absent."""
    value = ds.get("ImagePositionPatient")
    return [float(v) for v in value] if value not in (None, "") else None


def image_orientation(ds: Dataset) -> np.ndarray | None:
    value = ds.get("ImageOrientationPatient")
    return np.asarray([float(v) for v in value], dtype=np.float64) if value not in (None, "") else None


def check_ct_image(path: Path, ds: Dataset) -> None:
    """The per-file checks: pixel data present, CT, one frame, grey, rescale tags present."""
    if "PixelData" not in ds:
        declared = UID(declared_sop_class(ds)).name or "an image"
        raise InputDataError(f"{path}: declares {declared} but holds no pixel data; the file is truncated or corrupt "
                             "(restore it or remove it from the series: no slice is dropped silently)")
    _check_integers(path, ds)
    modality = ds.get("Modality")
    if modality != "CT":
        raise InputDataError(
            f"{path}: Modality is {modality!r}, expected 'CT'; only CT series can be read as HU"
        )
    if int(ds.get("NumberOfFrames", 1) or 1) > 1:
        raise InputDataError(
            f"{path}: multi-frame (enhanced) CT with {ds.NumberOfFrames} frames is not supported; "
            "convert it to single-frame slices first (e.g. dcmtk's or dicom3tools' converters)"
        )
    if int(ds.get("SamplesPerPixel") or 1) != 1:
        raise InputDataError(f"{path}: {ds.SamplesPerPixel} samples per pixel; a CT slice must be greyscale")
    missing = [k for k in ("RescaleIntercept", "RescaleSlope") if ds.get(k) in (None, "")]
    if missing:
        raise InputDataError(
            f"{path}: missing {' and '.join(missing)}; CT images must carry RescaleIntercept (0028,1052) and "
            "RescaleSlope (0028,1053) to give HU"
        )
    if ds.get("PixelSpacing") in (None, ""):
        raise InputDataError(f"{path}: missing PixelSpacing, which a CT image needs")
    _check_numbers(path, ds)


MAX_SIDE = 8192
"""Largest Rows/Columns accepted (checked before any pixel array is allocated)."""
_INTEGER_TAGS: tuple[tuple[str, bool], ...] = (
    ("Rows", True), ("Columns", True), ("BitsAllocated", True), ("SamplesPerPixel", False), ("NumberOfFrames", False),
    ("BitsStored", False), ("PixelRepresentation", False), ("InstanceNumber", False),
)
"""(keyword, required): tags read as one integer."""


def _check_integers(path: Path, ds: Dataset) -> None:
    """Every integer tag the reader uses holds one integer (a required one is present)."""
    for key, required in _INTEGER_TAGS:
        raw = ds.get(key)
        if raw in (None, ""):
            if required:
                raise InputDataError(f"{path}: missing {key}, which a CT image needs")
            continue
        try:
            value = int(raw) if isinstance(raw, (int, str, bytes)) else None
        except ValueError:
            value = None
        if value is None:
            raise InputDataError(f"{path}: {key} is {str(raw)!r}; expected one integer")


_NUMERIC_TAGS: tuple[tuple[str, int, bool], ...] = (
    ("RescaleSlope", 1, True), ("RescaleIntercept", 1, True), ("PixelSpacing", 2, True),
    ("ImagePositionPatient", 3, False), ("ImageOrientationPatient", 6, False), ("SliceThickness", 1, False),
)
"""(keyword, number of values, required): tags whose values are turned into numbers."""


def _check_numbers(path: Path, ds: Dataset) -> None:
    """Every numeric tag the reader uses parses to finite numbers of the right count; sizes are sane."""
    for key, count, required in _NUMERIC_TAGS:
        raw = ds.get(key)
        if raw in (None, "") and not required:
            continue
        values = [raw] if isinstance(raw, (str, bytes)) or not hasattr(raw, "__iter__") else list(raw)
        try:
            numbers = [float(v) for v in values]
        except (TypeError, ValueError):
            numbers = []
        if len(numbers) != count or not all(np.isfinite(numbers)):
            shown = "\\".join(str(v) for v in values)
            raise InputDataError(f"{path}: {key} is {shown!r}; expected {count} finite number(s)")
    cos = image_orientation(ds)
    if cos is not None and (abs(np.linalg.norm(cos[:3]) - 1) > 1e-2 or abs(np.linalg.norm(cos[3:]) - 1) > 1e-2
                            or abs(float(np.dot(cos[:3], cos[3:]))) > 1e-2):
        raise InputDataError(f"{path}: ImageOrientationPatient {cos.tolist()} is not two orthogonal unit vectors")
    slope = float(ds.RescaleSlope)
    spacing = [float(v) for v in ds.PixelSpacing]
    if slope == 0 or min(spacing) <= 0:
        raise InputDataError(f"{path}: RescaleSlope {slope:g} and PixelSpacing {spacing} must be non-zero and "
                             "positive respectively")
    rows, cols = int(ds.Rows), int(ds.Columns)
    if not (1 <= rows <= MAX_SIDE and 1 <= cols <= MAX_SIDE):
        raise InputDataError(f"{path}: image of {rows}x{cols} pixels; vagan reads CT slices of 1 to {MAX_SIDE} pixels "
                             "a side")
