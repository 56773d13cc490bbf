"""One entry point for every CT format: a folder is a DICOM series, else the file suffix decides."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np

from vagan.errors import InputDataError, OutputError
from vagan.io.arrays import read_npy, write_npy
from vagan.io.dicom import DICOM_SUFFIXES, read_dicom_series, write_dicom_series
from vagan.io.nifti import is_nifti_path, read_nifti, write_nifti
from vagan.io.volume import CTVolume

VolumeKind = Literal["dicom", "nifti", "npy"]
KINDS_HELP = "a DICOM series folder, a .nii/.nii.gz file or a .npy file"


def _has_dicm_preamble(path: Path) -> bool:
    with path.open("rb") as fh:
        head = fh.read(132)
    return len(head) == 132 and head[128:132] == b"DICM"


def detect_kind(path: Path) -> VolumeKind:
    """The format of ``path``: an existing folder or DICOM file -> ``"dicom"``; ``.nii``/``.nii.gz``
    -> ``"nifti"``; ``.npy`` -> ``"npy"``; a path that does not exist and has no suffix -> ``"dicom"``
    (an output folder to be)."""
    path = Path(path)
    if path.is_dir():
        return "dicom"
    if is_nifti_path(path):
        return "nifti"
    suffix = path.suffix.lower()
    if suffix == ".npy":
        return "npy"
    if path.is_file() and (suffix in DICOM_SUFFIXES or _has_dicm_preamble(path)):
        return "dicom"
    if not path.exists() and suffix == "":
        return "dicom"
    raise InputDataError(f"{path}: unknown CT data kind (suffix {suffix!r}); expected {KINDS_HELP}")


def read_volume(path: Path) -> CTVolume:
    """Read a CT volume in HU from any supported kind (see :func:`detect_kind`)."""
    path = Path(path)
    if not path.exists():
        raise InputDataError(f"{path}: does not exist; expected {KINDS_HELP}")
    kind = detect_kind(path)
    if kind == "dicom":
        return read_dicom_series(path)
    if kind == "nifti":
        return read_nifti(path)
    return read_npy(path)


def write_volume(
    path: Path,
    volume: CTVolume | np.ndarray,
    *,
    series_description: str = "vagan output",
    overwrite: bool = False,
    derivation_description: str | None = None,
    model_name: str | None = None,
) -> Path:
    """Write HU to ``path`` in the kind its name asks for (a suffix-less path is a DICOM folder).

    Geometry comes from ``volume`` when it is a :class:`CTVolume` (e.g. ``read.with_hu(denoised)``),
    else defaults (1 mm). For DICOM, a ``volume`` with DICOM headers is the template whose
    patient/study/geometry tags are kept (see :func:`write_dicom_series`); ``model_name`` (the model's
    user-facing name) then names the series ``'<original description> [vagan <model_name>]'``.
    """
    path = Path(path)
    if path.suffix.lower() in DICOM_SUFFIXES and not path.is_dir():
        raise OutputError(f"{path}: a DICOM output is a series folder; give a path without suffix")
    try:
        kind = detect_kind(path)
    except InputDataError:
        raise OutputError(f"{path}: cannot tell which format to write (suffix {path.suffix!r}); expected {KINDS_HELP}") from None
    hu = volume.hu if isinstance(volume, CTVolume) else np.asarray(volume, dtype=np.float32)
    if hu.ndim == 2:
        hu = hu[None]
    geometry = volume if isinstance(volume, CTVolume) else None
    if kind == "dicom":
        return write_dicom_series(
            hu, path, template=geometry, series_description=series_description,
            overwrite=overwrite, derivation_description=derivation_description, model_name=model_name,
        )
    out = CTVolume(hu=hu.astype(np.float32, copy=False), source=path) if geometry is None \
        else geometry.with_hu(hu, headers=None, source=path)
    if kind == "nifti":
        return write_nifti(path, out, overwrite=overwrite)
    keep_2d = not isinstance(volume, CTVolume) and np.ndim(volume) == 2
    return write_npy(path, out.hu[0] if keep_2d else out.hu, overwrite=overwrite)
