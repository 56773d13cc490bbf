"""Read a DICOM CT series folder into float32 HU (one series, all slices or an error).

DICOM is recognised by content (the ``DICM`` preamble, or a forced parse that yields a SOP class),
whatever the file names (``.dcm``, ``.IMA``, none); slices are sorted along the slice normal and
RescaleSlope/RescaleIntercept turn stored values into HU. Every problem is one
:class:`~vagan.errors.InputDataError` line naming the file; files that are not slices of the series
are listed in :attr:`CTVolume.skipped` with the reason (docs/data-safety.md).
"""

from __future__ import annotations

import errno
import logging
from collections import Counter
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    UID,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from vagan.errors import MACHINE_FAULTS, InputDataError
from vagan.io.dicom_header import (
    check_ct_image,
    declared_sop_class,
    image_orientation,
    image_position,
    is_image_object,
)
from vagan.io.volume import CTVolume

log = logging.getLogger(__name__)

DICOM_SUFFIXES = {".dcm", ".ima", ".dicom", ".dic"}  # file names that claim to be DICOM
POSITION_TOL_MM = 1e-3  # slices closer than this along the normal are duplicates
ORIENTATION_TOL = 1e-3  # direction cosines that differ by more than this are another orientation
MAX_LOCALIZERS = 3  # at most this many off-orientation images are taken for scouts and skipped


def _sniff(path: Path) -> str:
    """``"dicom"`` (DICM preamble or DICOM file name), ``"maybe"`` (starts like a raw data set) or ``"no"``."""
    with path.open("rb") as fh:
        head = fh.read(132)
    if (len(head) == 132 and head[128:132] == b"DICM") or path.suffix.lower() in DICOM_SUFFIXES:
        return "dicom"
    # A Part 10 file without preamble, or a bare data set, starts with a group 0002 or 0008 tag.
    return "maybe" if head[:2] in (b"\x02\x00", b"\x08\x00") else "no"


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0]}" if text else type(err).__name__


def looks_like_dicom(path: Path) -> bool:
    """Whether a file may be DICOM (DICM preamble, a DICOM suffix or a raw data set's first tag)."""
    return _sniff(Path(path)) != "no"


def _parse(path: Path) -> Dataset | None:
    """Parse one file; ``None`` for a file that is not DICOM at all (silently ignored)."""
    sniffed = _sniff(path)
    if sniffed == "no":
        return None
    claimed = sniffed == "dicom"
    try:
        ds = pydicom.dcmread(path, force=True)
        for part in (getattr(ds, "file_meta", None), ds):  # pydicom converts elements lazily: damage surfaces
            if part is not None:                          # here, not at the first access somewhere later
                part.walk(lambda _ds, _elem: None)
    except MACHINE_FAULTS:
        raise
    except Exception as err:  # pydicom raises many types on damaged input
        if not claimed:
            return None
        raise InputDataError(f"{path}: corrupt or truncated DICOM file ({_one_line(err)})") from None
    meta = getattr(ds, "file_meta", None)
    sop_class = ds.get("SOPClassUID") or (meta.get("MediaStorageSOPClassUID") if meta is not None else None)
    if sop_class is None and "Modality" not in ds:
        if claimed:
            raise InputDataError(f"{path}: corrupt or truncated DICOM file (no SOP Class UID and no Modality)")
        return None
    if meta is None or "TransferSyntaxUID" not in meta:  # a bare data set: record how it was parsed
        implicit, little = ds.original_encoding
        syntax = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian if little else ExplicitVRBigEndian
        ds.file_meta = meta if meta is not None else FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = syntax
    return ds


def _localizer_reason(ds: Dataset) -> str | None:
    image_type = [str(v).upper() for v in (ds.get("ImageType") or [])]
    return f"localizer (ImageType {'/'.join(image_type)})" if "LOCALIZER" in image_type else None


def _drop_off_orientation(kept: list[tuple[Path, Dataset]], skipped: list[tuple[Path, str]]
                          ) -> list[tuple[Path, Dataset]]:
    """Remove a few images of the series whose orientation differs from the rest (scouts without
    LOCALIZER) and record them in ``skipped``; images of another series stay, so that the
    single-series check names the mix."""
    groups: list[tuple[np.ndarray | None, list[tuple[Path, Dataset]]]] = []
    for item in kept:
        cos = image_orientation(item[1])
        for ref, members in groups:
            if (ref is None and cos is None) or (
                ref is not None and cos is not None and np.abs(ref - cos).max() <= ORIENTATION_TOL
            ):
                members.append(item)
                break
        else:
            groups.append((cos, [item]))
    if len(groups) <= 1:
        return kept

    def rank(group: tuple[np.ndarray | None, list]) -> tuple[int, float]:
        cos, members = group
        axial = abs(np.cross(cos[:3], cos[3:])[2]) if cos is not None else 0.0
        return len(members), axial

    groups.sort(key=rank, reverse=True)
    main, others = groups[0], groups[1:]
    n_other = sum(len(m) for _, m in others)
    if n_other > MAX_LOCALIZERS or n_other >= len(main[1]):
        desc = ", ".join(f"{len(m)} x {None if c is None else np.round(c, 3).tolist()}" for c, m in groups)
        raise InputDataError(
            f"{kept[0][0].parent}: images of several orientations in one series ({desc}); "
            "keep one orientation per folder"
        )
    series = Counter(str(ds.get("SeriesInstanceUID", "")) for _, ds in main[1]).most_common(1)[0][0]
    kept_main = list(main[1])
    for _, members in others:
        for path, ds in members:
            if str(ds.get("SeriesInstanceUID", "")) != series:
                kept_main.append((path, ds))  # another series: an error below, not a scout
                continue
            reason = "orientation differs from the series (taken for a localizer)"
            log.warning("%s: skipping image whose %s", path, reason)
            skipped.append((path, reason))
    return kept_main


def _check_single_series(folder: Path, files: list[tuple[Path, Dataset]]) -> None:
    counts = Counter(str(ds.get("SeriesInstanceUID", "<none>")) for _, ds in files)
    if len(counts) > 1:
        example = {str(ds.get("SeriesInstanceUID", "<none>")): path.name for path, ds in reversed(files)}
        desc = "; ".join(f"{uid} ({n} file{'s' if n > 1 else ''}, e.g. {example[uid]})" for uid, n in counts.most_common())
        raise InputDataError(
            f"{folder}: {len(counts)} series mixed in one folder: {desc}; "
            "split them into one folder per SeriesInstanceUID"
        )


def _check_consistent(files: list[tuple[Path, Dataset]]) -> None:
    ref_path, ref = files[0]
    ref_cos = image_orientation(ref)
    for path, ds in files[1:]:
        for key in ("Rows", "Columns"):
            if int(ds[key].value) != int(ref[key].value):
                raise InputDataError(
                    f"{path}: {key} {ds[key].value} differs from {ref[key].value} in {ref_path.name}; "
                    "all slices of a series must have the same size"
                )
        sp, ref_sp = [float(v) for v in ds.PixelSpacing], [float(v) for v in ref.PixelSpacing]
        if not np.allclose(sp, ref_sp, rtol=1e-4, atol=1e-5):
            raise InputDataError(
                f"{path}: PixelSpacing {sp} differs from {ref_sp} in {ref_path.name}; "
                "all slices of a series must have the same spacing"
            )
        cos = image_orientation(ds)
        if (cos is None) != (ref_cos is None) or (cos is not None and np.abs(cos - ref_cos).max() > ORIENTATION_TOL):
            raise InputDataError(
                f"{path}: ImageOrientationPatient {None if cos is None else cos.tolist()} differs from "
                f"{None if ref_cos is None else ref_cos.tolist()} in {ref_path.name}"
            )


def _sort_slices(files: list[tuple[Path, Dataset]]) -> list[tuple[Path, Dataset]]:
    """Sort along the slice normal (ImagePositionPatient), else by InstanceNumber, else by name."""
    if len(files) == 1:
        return files
    cos = image_orientation(files[0][1])
    has_pos = all(image_position(ds) is not None for _, ds in files)
    if cos is not None and has_pos:
        normal = np.cross(cos[:3], cos[3:])
        along = [float(np.dot(image_position(ds), normal)) for _, ds in files]
        order = np.argsort(along, kind="stable")
        for a, b in zip(order[:-1], order[1:]):
            if abs(along[b] - along[a]) < POSITION_TOL_MM:
                raise InputDataError(
                    f"{files[b][0]}: same slice position ({along[b]:.3f} mm along the normal) as {files[a][0].name}; "
                    "duplicate slices or several acquisitions in one folder: keep one of each"
                )
        return [files[i] for i in order]
    if all(ds.get("InstanceNumber") not in (None, "") for _, ds in files):
        numbers = [int(ds.InstanceNumber) for _, ds in files]
        dup = [n for n, c in Counter(numbers).items() if c > 1]
        if dup:
            first = next(p for (p, _), n in zip(files, numbers) if n == dup[0])
            raise InputDataError(f"{first}: InstanceNumber {dup[0]} occurs more than once and there are no positions to sort by")
        log.warning("%s: no ImagePositionPatient; slices sorted by InstanceNumber", files[0][0].parent)
        return [files[i] for i in np.argsort(numbers, kind="stable")]
    log.warning("%s: neither positions nor instance numbers; slices kept in file-name order", files[0][0].parent)
    return files


def _decode_hu(path: Path, ds: Dataset) -> np.ndarray:
    """Stored pixels -> float32 HU via RescaleSlope/RescaleIntercept."""
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    try:
        stored = ds.pixel_array
    except MACHINE_FAULTS:
        raise
    except Exception as err:
        try:
            compressed = UID(str(syntax)).is_compressed and UID(str(syntax)).is_transfer_syntax
        except Exception:  # a damaged transfer syntax UID
            compressed = False
        if compressed:
            raise InputDataError(
                f"{path}: cannot decode pixel data compressed as {UID(str(syntax)).name} ({_one_line(err)}); vagan's "
                "install brings GDCM and CharLS (`pip install python-gdcm pyjpegls`); for other syntaxes install a "
                "decoder, e.g. `pip install pylibjpeg pylibjpeg-openjpeg`"
            ) from None
        raise InputDataError(f"{path}: corrupt or truncated pixel data ({_one_line(err)})") from None
    expected = (int(ds.Rows), int(ds.Columns))
    if stored.shape != expected:
        raise InputDataError(f"{path}: decoded pixel array has shape {stored.shape}, expected {expected}")
    slope, intercept = float(ds.RescaleSlope), float(ds.RescaleIntercept)
    return (stored.astype(np.float64) * slope + intercept).astype(np.float32)


def _list_files(folder: Path, skipped: list[tuple[Path, str]]) -> list[Path]:
    """The files of a series folder; sub-folders are listed in ``skipped`` (a series is one folder)."""
    if not folder.exists():
        raise InputDataError(f"{folder}: DICOM folder does not exist")
    if folder.is_file():
        return [folder]
    entries = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    skipped += [(p, "a sub-folder: a series is read from one folder, not from its sub-folders")
                for p in entries if p.is_dir()]
    skipped += [(p, _not_a_file(p)) for p in entries if not p.is_dir() and not p.is_file()]
    return [p for p in entries if p.is_file()]


def _not_a_file(path: Path) -> str:
    """Why an entry that is neither a file nor a folder is not read (reading a FIFO would block)."""
    if path.is_symlink():
        try:
            path.resolve(strict=True)
        except RuntimeError:
            return "a symbolic link loop"
        except OSError as err:
            return "a symbolic link loop" if err.errno == errno.ELOOP else "a dangling symbolic link"
        return "a symbolic link to something that is not a file"
    return "not a regular file (a FIFO, socket or device)"


def summarise_skipped(skipped: list[tuple[Path, str]], examples: int = 3) -> list[str]:
    """One line per reason: how many files, and the first few names (2,000 junk files are one line)."""
    by_reason: dict[str, list[Path]] = {}
    for path, reason in skipped:
        by_reason.setdefault(reason, []).append(path)
    lines = []
    for reason, paths in by_reason.items():
        names = ", ".join(p.name for p in paths[:examples]) + (f" and {len(paths) - examples} more"
                                                               if len(paths) > examples else "")
        lines.append(f"{reason}: {len(paths)} file(s) ({names})")
    return lines


def _log_skipped(folder: Path, skipped: list[tuple[Path, str]]) -> None:
    for line in summarise_skipped(skipped):
        log.warning("%s: skipped %s", folder, line)


def _series_hint(folder: Path, depth: int = 4) -> str:
    """Where the series are when ``folder`` is a CD or export layout (a DICOMDIR, series in sub-folders)."""
    if not folder.is_dir():
        return ""
    pending, found = [(folder, 0)], []
    while pending and len(found) < 3:
        current, level = pending.pop(0)
        try:
            entries = sorted(p for p in current.iterdir() if not p.name.startswith("."))
        except OSError:
            continue
        if current != folder and any(p.is_file() and _parse(p) is not None for p in entries[:20]):
            found.append(current)
            continue
        if level < depth:
            pending += [(p, level + 1) for p in entries if p.is_dir() and not p.is_symlink()]
    dicomdir = " holds a DICOMDIR (a CD layout) and" if (folder / "DICOMDIR").is_file() else ""
    if not found:
        return f"; {folder}{dicomdir} has no DICOM files in its sub-folders either" if dicomdir else ""
    shown = ", ".join(str(p) for p in found)
    return f"; {folder}{dicomdir} has DICOM files in sub-folders: give one series folder, e.g. {shown}"


def read_dicom_series(folder: Path, skip_localizers: bool = True) -> CTVolume:
    """Read one CT series from ``folder`` (or a single DICOM file) into float32 HU ``(Z, H, W)``.

    Non-DICOM files (e.g. a ``manifest.json``) and non-image objects (DICOMDIR, reports) are
    ignored; localizers are skipped with a warning unless ``skip_localizers=False``.
    """
    folder = Path(folder)
    files: list[tuple[Path, Dataset]] = []
    skipped: list[tuple[Path, str]] = []
    for path in _list_files(folder, skipped):
        ds = _parse(path)
        if ds is None:
            skipped.append((path, "not DICOM"))
            continue
        if not is_image_object(ds):
            skipped.append((path, f"not an image ({UID(declared_sop_class(ds)).name or 'no SOP class'})"))
            continue
        reason = _localizer_reason(ds) if skip_localizers else None
        if reason is not None:
            skipped.append((path, reason))
            continue
        check_ct_image(path, ds)
        files.append((path, ds))
    _log_skipped(folder, skipped)
    if not files:
        raise InputDataError(f"{folder}: no DICOM CT images found (localizers skipped); expected a folder holding one "
                             f"CT series{_series_hint(folder)}")
    if skip_localizers:
        files = _drop_off_orientation(files, skipped)
    _check_single_series(folder, files)
    _check_consistent(files)
    files = _sort_slices(files)

    hu = np.empty((len(files), int(files[0][1].Rows), int(files[0][1].Columns)), dtype=np.float32)
    headers = []
    for k, (path, ds) in enumerate(files):
        hu[k] = _decode_hu(path, ds)
        del ds.PixelData
        headers.append(ds)
    first = files[0][1]
    cos = image_orientation(first)
    positions = None
    if all(image_position(ds) is not None for _, ds in files):
        positions = np.asarray([image_position(ds) for _, ds in files], dtype=np.float64)
    thickness = first.get("SliceThickness")
    volume = CTVolume(
        hu=hu,
        pixel_spacing_mm=(float(first.PixelSpacing[0]), float(first.PixelSpacing[1])),
        slice_positions_mm=positions,
        orientation=tuple(cos.tolist()) if cos is not None else None,
        slice_thickness_mm=float(thickness) if thickness not in (None, "") else None,
        headers=headers,
        source=folder,
        skipped=tuple(skipped),
    )
    _warn_uneven_spacing(volume)
    log.debug("%s: %d CT slices of %dx%d", folder, *hu.shape)
    return volume.validate()


def _warn_uneven_spacing(volume: CTVolume) -> None:
    if volume.slice_positions_mm is None or len(volume.slice_positions_mm) < 3:
        return
    steps = np.abs(np.diff(volume.slice_positions_mm @ volume.slice_normal))
    if steps.max() - steps.min() > 0.01 * steps.mean() + POSITION_TOL_MM:
        log.warning(
            "%s: uneven slice spacing (%.3f to %.3f mm): missing slices?", volume.source, steps.min(), steps.max()
        )


