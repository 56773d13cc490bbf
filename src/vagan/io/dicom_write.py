"""Write HU as a valid (derived) DICOM CT series.

Pixels are stored as int16 with RescaleIntercept -1024 and RescaleSlope 1 (HU rounded to the nearest
integer, so a round trip is exact to 0.5 HU), Explicit VR Little Endian, into a folder that appears
atomically with vagan's ownership marker.

A series derived from a template series (``vagan denoise``) keeps the template's Patient, Study and
equipment modules and BurnedInAnnotation, names itself after the original and the model
(:func:`derived_series_description`), refers to each source image (SourceImageSequence) and lists vagan
as Processing Equipment (ContributingEquipmentSequence, after any items the template already had).
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import logging
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import (
    CTImageStorage,
    ExplicitVRLittleEndian,
    generate_uid,
)

from vagan import __version__ as vagan_version
from vagan.errors import OutputError
from vagan.io.atomic import atomic_dir
from vagan.io.dicom_header import declared_sop_class
from vagan.io.volume import AXIAL, CTVolume
from vagan.io.windowing import DISPLAY_RANGE

log = logging.getLogger(__name__)

STORE_INTERCEPT = -1024.0  # HU = stored * 1 - 1024
STORE_SLOPE = 1.0
INT16 = np.iinfo(np.int16)
LO_MAX = 64
"""Characters a LO value (SeriesDescription) may hold."""
PROCESSING_EQUIPMENT = ("109102", "DCM", "Processing Equipment")
"""CID 7005: equipment that processed composite instances to create new ones (vagan in a derived series;
109103 Modifying Equipment is for instances changed in place, keeping their SOP Instance UIDs)."""
SOURCE_FOR_PROCESSING = ("121322", "DCM", "Source image for image processing operation")
"""CID 7202: why a derived image refers to its source image."""
IMPLEMENTATION_VERSION = f"VAGAN_{vagan_version}"[:16]
# Per-image tags of a template that no longer describe the written pixels.
STALE_TAGS = (
    "PixelData", "FloatPixelData", "DoubleFloatPixelData", "LargestImagePixelValue",
    "SmallestImagePixelValue", "PixelPaddingValue", "PixelPaddingRangeLimit",
    "SmallestPixelValueInSeries", "LargestPixelValueInSeries", "IconImageSequence",
    "ModalityLUTSequence", "VOILUTSequence", "PlanarConfiguration", "NumberOfFrames",
    "ExtendedOffsetTable", "ExtendedOffsetTableLengths", "DataSetTrailingPadding",
    "WindowCenterWidthExplanation", "SourceImageSequence", "DerivationCodeSequence",
)


def _encode(hu: np.ndarray) -> tuple[np.ndarray, int]:
    """HU slice -> int16 stored values (RescaleIntercept -1024, RescaleSlope 1) and the clipped count."""
    values = (hu.astype(np.float64) - STORE_INTERCEPT) / STORE_SLOPE
    np.rint(values, out=values)
    n_clipped = 0
    if values.min() < INT16.min or values.max() > INT16.max:
        n_clipped = int(((values < INT16.min) | (values > INT16.max)).sum())
        np.clip(values, INT16.min, INT16.max, out=values)
    return values.astype(np.int16), n_clipped


def _now() -> tuple[str, str]:
    now = dt.datetime.now()
    return now.strftime("%Y%m%d"), now.strftime("%H%M%S.%f")


def _file_meta(sop_class: str, sop_instance: str) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_instance
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = pydicom.uid.PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = IMPLEMENTATION_VERSION
    return meta


def _set_pixels(ds: Dataset, stored: np.ndarray) -> None:
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = stored.shape
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    ds.RescaleIntercept = f"{STORE_INTERCEPT:g}"
    ds.RescaleSlope = f"{STORE_SLOPE:g}"
    ds.RescaleType = "HU"
    ds.PixelData = np.ascontiguousarray(stored, dtype="<i2").tobytes()
    ds["PixelData"].VR = "OW"


def _ds(value: float) -> str:
    """A decimal string (VR DS, at most 16 characters)."""
    text = f"{value:.6g}"
    return text if len(text) <= 16 else f"{value:.9e}"[:16]


def _scratch_header(volume: CTVolume, k: int, common: dict[str, str]) -> Dataset:
    """A complete CT Image Storage header for slice ``k`` of a volume without DICOM headers."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = CTImageStorage
    ds.Modality = "CT"
    ds.PatientName = common["patient_name"]
    ds.PatientID = common["patient_id"]
    ds.PatientBirthDate = ""
    ds.PatientSex = "O"
    ds.StudyInstanceUID = common["study_uid"]
    ds.StudyDate, ds.StudyTime = common["date"], common["time"]
    ds.StudyID = "1"
    ds.AccessionNumber = ""
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = "vagan synthetic study"
    ds.FrameOfReferenceUID = common["frame_uid"]
    ds.PositionReferenceIndicator = ""
    ds.Laterality = ""  # General Series, Type 2C: no body part is known, so present and empty (dciodvfy)
    ds.Manufacturer = "vagan"
    ds.ManufacturerModelName = "vagan"
    ds.SoftwareVersions = vagan_version
    ds.KVP = ""
    ds.AcquisitionNumber = 1
    ds.ImageType = ["DERIVED", "SECONDARY", "AXIAL"]
    ds.BurnedInAnnotation = "NO"
    ds.PatientPosition = "HFS"
    cosines = volume.orientation if volume.orientation is not None else AXIAL
    position = volume.positions_or_default()[k]
    ds.ImageOrientationPatient = [_ds(c) for c in cosines]
    ds.ImagePositionPatient = [_ds(p) for p in position]
    ds.SliceLocation = _ds(float(position @ volume.slice_normal))
    ds.PixelSpacing = [_ds(s) for s in volume.pixel_spacing_mm]
    ds.SliceThickness = _ds(volume.slice_thickness_mm or volume.slice_spacing_mm)
    return ds


def _derived_header(template: Dataset) -> Dataset:
    """A copy of a template slice header without private and pixel-describing tags."""
    ds = copy.deepcopy(template)
    ds.remove_private_tags()
    for key in STALE_TAGS:
        if key in ds:
            delattr(ds, key)
    if not ds.get("SOPClassUID"):
        ds.SOPClassUID = CTImageStorage
    old_type = [str(v) for v in (ds.get("ImageType") or [])]
    ds.ImageType = ["DERIVED", "SECONDARY", *(old_type[2:] or ["AXIAL"])]
    reference = _reference(template)
    if reference is not None:
        ds.SourceImageSequence = DicomSequence([reference])
    return ds


_IDENTITY = (("patient_id", "PatientID"), ("patient_name", "PatientName"), ("study_uid", "StudyInstanceUID"),
             ("frame_uid", "FrameOfReferenceUID"))


def _set_identity(ds: Dataset, common: dict[str, str], chosen: dict[str, str]) -> None:
    """Set the patient, study and frame of reference values ``chosen``; a derived slice keeps its template's
    others as they are (a Type 2 patient value it lacks is added empty, a Type 1 UID it lacks is ``common``'s)."""
    for key, keyword in _IDENTITY:
        if key in chosen:
            setattr(ds, keyword, chosen[key])
        elif keyword not in ds or (keyword.endswith("UID") and not ds.get(keyword)):
            setattr(ds, keyword, "" if keyword.startswith("Patient") else common[key])


def _padding_hu(template: Dataset) -> float | None:
    """The HU a template slice marks as padding outside the scanner's field of view (its
    PixelPaddingValue through its rescale), or ``None``."""
    value = template.get("PixelPaddingValue")
    if isinstance(value, (bytes, bytearray)) and len(value) == 2:  # US or SS, as the pixels: read it signed
        value = int.from_bytes(value, "little", signed=template.get("PixelRepresentation", 0) == 1)
    if not isinstance(value, (int, float)):
        return None
    try:
        return float(value) * float(template.get("RescaleSlope", 1) or 1) + float(template.get("RescaleIntercept", 0) or 0)
    except (TypeError, ValueError):
        return None


def _keep_padding(ds: Dataset, template: Dataset, stored: np.ndarray) -> None:
    """Carry the template's padding over in the derived slice's own stored units, where those pixels
    are still padding (vagan passes padding through unchanged), so viewers keep hiding it."""
    hu = _padding_hu(template)
    if hu is None:
        return
    value = (hu - STORE_INTERCEPT) / STORE_SLOPE
    if value == round(value) and INT16.min <= value <= INT16.max and bool((stored == int(value)).any()):
        ds.PixelPaddingValue = int(value)
        ds["PixelPaddingValue"].VR = "SS"


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
    return item


def source_instance_uid(template: Dataset) -> str:
    """The SOP Instance UID of a source image: its own, else the one its file meta keeps (an anonymiser
    may blank SOPInstanceUID and leave MediaStorageSOPInstanceUID), else ``""``."""
    meta = getattr(template, "file_meta", None)
    uid = str(template.get("SOPInstanceUID") or "").strip()
    return uid or str((meta.get("MediaStorageSOPInstanceUID") if meta is not None else "") or "").strip()


def _reference(template: Dataset) -> Dataset | None:
    """A SourceImageSequence item for the template slice, or ``None`` when no UID identifies it."""
    uid = source_instance_uid(template)
    if not uid:
        return None
    item = Dataset()
    item.ReferencedSOPClassUID = declared_sop_class(template) or CTImageStorage
    item.ReferencedSOPInstanceUID = uid
    item.PurposeOfReferenceCodeSequence = DicomSequence([_code(*SOURCE_FOR_PROCESSING)])
    return item


def _clip(text: str, limit: int) -> str:
    """``text`` in at most ``limit`` characters, a cut one ending in '...' ("" where not even that fits)."""
    if len(text) <= limit:
        return text
    return text[:limit - 3].rstrip() + "..." if limit >= 4 else ""


def _lo_text(text: str) -> str:
    """``text`` as one LO value: no backslash (the value delimiter) or control characters, spaces collapsed."""
    return " ".join("".join(c if c.isprintable() and c != "\\" else " " for c in str(text)).split())


def derived_series_description(original: str | None, model_name: str) -> str:
    """SeriesDescription of a series derived by ``model_name``: ``'<original> [vagan <model>]'``.

    Within the 64 characters of a LO value the original part is shortened (ending in '...'), never
    the bracket; a model name too long for even the bracket alone is shortened inside it. Without an
    original description: ``'vagan <model> denoised'`` (or just the bracket where that does not fit).
    """
    name = _lo_text(model_name) or "model"
    tag = f"[vagan {_clip(name, LO_MAX - len('[vagan ]'))}]"
    original = _lo_text(original or "")
    if not original:
        plain = f"vagan {name} denoised"
        return plain if len(plain) <= LO_MAX else tag
    kept = _clip(original, LO_MAX - len(tag) - 1)
    return f"{kept} {tag}" if kept else tag


def _contributing_equipment(template: Dataset, when: str, description: str) -> DicomSequence:
    """The template's ContributingEquipmentSequence items, then vagan's as Processing Equipment."""
    items = [copy.deepcopy(item) for item in (template.get("ContributingEquipmentSequence") or [])]
    item = Dataset()
    item.PurposeOfReferenceCodeSequence = DicomSequence([_code(*PROCESSING_EQUIPMENT)])
    item.Manufacturer = "vagan"
    item.ManufacturerModelName = "vagan"
    item.SoftwareVersions = vagan_version
    item.ContributionDateTime = when
    item.ContributionDescription = description[:1024]
    return DicomSequence([*items, item])


def _fit_charset(ds: Dataset, *texts: str) -> None:
    """Declare UTF-8 when vagan adds non-ASCII text to a data set in the default repertoire (ASCII, so
    every value it holds reads the same in UTF-8); a data set declaring another character set keeps it."""
    declared = ds.get("SpecificCharacterSet")
    values = [str(v).strip() for v in (declared if isinstance(declared, (list, MultiValue)) else [declared or ""])]
    if all(t.isascii() for t in texts) or any(v not in ("", "ISO_IR 6") for v in values):
        return
    ds.SpecificCharacterSet = "ISO_IR 192"


def _write_slice(ds: Dataset, path: Path) -> None:
    """Write one dataset as a DICOM Part 10 file (separate so tests can make it fail)."""
    pydicom.dcmwrite(path, ds, enforce_file_format=True)


def _target_geometry(
    hu: np.ndarray, template: CTVolume | None, pixel_spacing_mm: tuple[float, float] | None,
    slice_thickness_mm: float | None,
) -> CTVolume:
    """The output volume: HU plus the template's geometry, or the explicit/default spacing."""
    if template is None:
        spacing = tuple(float(s) for s in (pixel_spacing_mm or (1.0, 1.0)))
        return CTVolume(hu=hu, pixel_spacing_mm=spacing, slice_thickness_mm=float(slice_thickness_mm or 1.0))  # type: ignore[arg-type]
    if pixel_spacing_mm is not None and not np.allclose(pixel_spacing_mm, template.pixel_spacing_mm):
        raise ValueError(f"pixel_spacing_mm {pixel_spacing_mm} contradicts the template's {template.pixel_spacing_mm}")
    return template.with_hu(hu, slice_thickness_mm=slice_thickness_mm or template.slice_thickness_mm)


def write_dicom_series(
    hu: np.ndarray,
    folder: Path,
    *,
    template: CTVolume | None = None,
    pixel_spacing_mm: tuple[float, float] | None = None,
    slice_thickness_mm: float | None = None,
    series_description: str | None = None,
    patient_id: str | None = None,
    patient_name: str | None = None,
    study_instance_uid: str | None = None,
    frame_of_reference_uid: str | None = None,
    series_number: int | None = None,
    overwrite: bool = False,
    derivation_description: str | None = None,
    model_name: str | None = None,
) -> Path:
    """Write HU ``(Z, H, W)`` (or one ``(H, W)`` slice) as a CT series ``folder/IM000001.dcm``, ...

    With a ``template`` (a volume read by :func:`read_dicom_series`), each slice copies the
    template slice's patient, study and geometry tags, gets new Series/SOP Instance UIDs, ImageType
    DERIVED\\SECONDARY, a new SeriesNumber (template's + 1000) and refers to its source image.
    Without one (or with a template lacking headers, e.g. read from NIfTI) a complete CT Image
    Storage series is built, with the template's geometry if any, else ``pixel_spacing_mm``
    (default 1 mm) and slices ``slice_thickness_mm`` (default 1 mm) apart. Patient/study values
    not given come from the template, else are synthetic. The folder appears atomically; an existing
    one is only replaced with ``overwrite=True``.

    SeriesDescription: with ``model_name`` (the user-facing name of the model that made the HU, e.g.
    a shipped model's or a run folder's name) the template's description and the model,
    ``'CT Body 3.0 [vagan g_psnr-phantom512]'`` (:func:`derived_series_description`); else
    ``series_description`` (cut to 64 characters; default ``'vagan output'``). A series derived from a
    template also names vagan (its version, the model and ``derivation_description``) in
    ContributingEquipmentSequence.
    """
    folder = Path(folder)
    hu = np.asarray(hu)
    if hu.ndim == 2:
        hu = hu[None]
    if hu.ndim != 3:
        raise ValueError(f"HU array for {folder} must be (Z, H, W) or (H, W), got shape {hu.shape}")
    volume = _target_geometry(hu.astype(np.float32, copy=False), template, pixel_spacing_mm, slice_thickness_mm)
    dataclasses.replace(volume, source=folder).validate(check_scale=False)
    inputs = (template.source,) if template is not None and template.source is not None else ()

    date, time = _now()
    headers = volume.headers
    first = headers[0] if headers else Dataset()
    series_uid = generate_uid()
    old_number = first.get("SeriesNumber")
    number = series_number if series_number is not None else (int(old_number) + 1000 if old_number not in (None, "") else 1001)
    common = {
        "patient_id": patient_id if patient_id is not None else str(first.get("PatientID", "VAGAN-SYNTH")),
        "patient_name": patient_name if patient_name is not None else str(first.get("PatientName", "VAGAN^SYNTHETIC")),
        "study_uid": study_instance_uid or str(first.get("StudyInstanceUID") or generate_uid()),
        "frame_uid": frame_of_reference_uid or str(first.get("FrameOfReferenceUID") or generate_uid()),
        "date": date,
        "time": time,
    }
    given = {key: value for key, value in (("patient_id", patient_id), ("patient_name", patient_name),
                                           ("study_uid", study_instance_uid),
                                           ("frame_uid", frame_of_reference_uid)) if value is not None}
    original = str(first.get("SeriesDescription") or "") if headers else ""
    description = derived_series_description(original, model_name) if model_name is not None \
        else _lo_text(series_description or "vagan output")[:LO_MAX]
    contribution = (f"vagan {vagan_version}" + (f", model {_lo_text(model_name)}" if model_name else "")
                    + (f": {derivation_description}" if derivation_description else ""))
    n_clipped = 0
    with atomic_dir(folder, "dicom-series", overwrite=overwrite, inputs=inputs) as tmp:
        for k in range(volume.hu.shape[0]):
            ds = _derived_header(headers[k]) if headers else _scratch_header(volume, k, common)
            _set_identity(ds, common, given if headers else common)
            ds.SOPInstanceUID = generate_uid()
            ds.SeriesInstanceUID = series_uid
            ds.SeriesNumber = number
            ds.SeriesDescription = description
            ds.InstanceNumber = k + 1
            ds.InstanceCreationDate, ds.InstanceCreationTime = date, time
            ds.ContentDate, ds.ContentTime = date, time
            if slice_thickness_mm is not None:
                ds.SliceThickness = _ds(slice_thickness_mm)
            if derivation_description:
                ds.DerivationDescription = derivation_description[:1024]
            if headers:
                ds.ContributingEquipmentSequence = _contributing_equipment(headers[k], f"{date}{time}", contribution)
            _fit_charset(ds, description, contribution, ds.get("DerivationDescription") or "")
            if ds.get("WindowCenter") in (None, "") or ds.get("WindowWidth") in (None, ""):
                ds.WindowCenter = _ds((DISPLAY_RANGE.lo + DISPLAY_RANGE.hi) / 2)
                ds.WindowWidth = _ds(DISPLAY_RANGE.width)
            stored, clipped = _encode(volume.hu[k])
            n_clipped += clipped
            _set_pixels(ds, stored)
            if headers:
                _keep_padding(ds, headers[k], stored)
            ds.file_meta = _file_meta(str(ds.SOPClassUID), ds.SOPInstanceUID)
            _write_slice(ds, tmp / f"IM{k + 1:06d}.dcm")
        written = len(list(tmp.glob("*.dcm")))
        if written != volume.hu.shape[0]:  # the series is all or nothing
            raise OutputError(f"{folder}: wrote {written} of {volume.hu.shape[0]} slices; nothing was kept")
    if n_clipped:
        lo, hi = (INT16.min * STORE_SLOPE + STORE_INTERCEPT, INT16.max * STORE_SLOPE + STORE_INTERCEPT)
        log.warning("%s: %d HU values outside [%g, %g] were clipped", folder, n_clipped, lo, hi)
    log.debug("%s: wrote %d CT slices (series %s)", folder, volume.hu.shape[0], series_uid)
    return folder


