"""NIfTI (.nii, .nii.gz) volumes in HU, geometry from and to the affine (RAS, NIfTI's convention).

NIfTI stores the array as ``(i, j, k)`` = (column, row, slice), i.e. ``hu.transpose(2, 1, 0)``;
:meth:`CTVolume.affine` gives the matching RAS affine.
"""

from __future__ import annotations

import gzip
import logging
from pathlib import Path

import numpy as np

from vagan.errors import MACHINE_FAULTS, InputDataError
from vagan.io.atomic import atomic_file
from vagan.io.volume import CTVolume

log = logging.getLogger(__name__)

LPS_FROM_RAS = np.diag([-1.0, -1.0, 1.0])


def is_nifti_path(path: Path) -> bool:
    name = Path(path).name.lower()
    return name.endswith(".nii") or name.endswith(".nii.gz")


def read_nifti(path: Path) -> CTVolume:
    """Read a 3-D (or 2-D) NIfTI image of HU (scl_slope/scl_inter applied) into a :class:`CTVolume`."""
    import nibabel as nib

    path = Path(path)
    if not path.is_file():
        raise InputDataError(f"{path}: NIfTI file does not exist")
    try:
        img = nib.load(str(path))
        data = np.asarray(img.get_fdata(dtype=np.float32))
    except MACHINE_FAULTS:
        raise
    except Exception as err:  # nibabel raises several types on damaged files
        raise InputDataError(f"{path}: corrupt or unreadable NIfTI ({err.__class__.__name__}: {err})") from None
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim == 2:
        data = data[..., None]
    if data.ndim != 3:
        raise InputDataError(f"{path}: NIfTI image of shape {data.shape}; expected a 3-D CT volume")
    affine = np.asarray(img.affine, dtype=np.float64)
    lps = LPS_FROM_RAS @ affine[:3, :4]
    col_step, row_step, slice_step, origin = lps[:, 0], lps[:, 1], lps[:, 2], lps[:, 3]
    col_sp, row_sp, slice_sp = (float(np.linalg.norm(v)) for v in (col_step, row_step, slice_step))
    if min(col_sp, row_sp, slice_sp) <= 0:
        raise InputDataError(f"{path}: degenerate affine (zero voxel size) {affine.tolist()}")
    hu = np.ascontiguousarray(data.transpose(2, 1, 0), dtype=np.float32)
    positions = origin[None, :] + np.arange(hu.shape[0])[:, None] * slice_step[None, :]
    volume = CTVolume(
        hu=hu,
        pixel_spacing_mm=(row_sp, col_sp),
        slice_positions_mm=positions,
        orientation=tuple((col_step / col_sp).tolist() + (row_step / row_sp).tolist()),
        slice_thickness_mm=slice_sp,
        source=path,
    )
    return volume.validate()


def write_nifti(path: Path, volume: CTVolume, *, overwrite: bool = False) -> Path:
    """Write ``volume`` as float32 HU NIfTI-1 (gzip-compressed for ``.nii.gz``), atomically."""
    import nibabel as nib

    path = Path(path)
    if not is_nifti_path(path):
        raise ValueError(f"NIfTI output {path} must end in .nii or .nii.gz")
    volume.validate(check_scale=False)
    img = nib.Nifti1Image(np.ascontiguousarray(volume.hu.transpose(2, 1, 0)), volume.affine("RAS"))
    img.header.set_xyzt_units("mm", "sec")
    img.set_qform(img.affine, code=1)
    img.set_sform(img.affine, code=1)
    payload = img.to_bytes()
    if path.name.lower().endswith(".gz"):
        payload = gzip.compress(payload, compresslevel=6)
    with atomic_file(path, overwrite=overwrite) as tmp:
        tmp.write_bytes(payload)
    log.debug("%s: wrote NIfTI %s", path, volume.hu.shape)
    return path
