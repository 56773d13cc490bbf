"""A CT volume in HU with its geometry: the one in-memory form every reader returns.

Geometry follows DICOM: ``hu[k, r, c]`` is slice ``k``, row ``r``, column ``c``; the centre of that
voxel lies, in patient coordinates (LPS: x to the patient's Left, y to Posterior, z to Superior), at

    P_k + c * col_spacing * X + r * row_spacing * Y

with ``P_k = slice_positions_mm[k]`` (ImagePositionPatient), ``X, Y = orientation[:3], orientation[3:]``
(ImageOrientationPatient: along a row, along a column) and
``pixel_spacing_mm = (row_spacing, col_spacing)`` (DICOM PixelSpacing order).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from vagan.errors import InputDataError

if TYPE_CHECKING:
    import pydicom

log = logging.getLogger(__name__)

AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)  # ImageOrientationPatient of a plain axial slice
DEFAULT_SPACING_MM = 1.0  # used where a format carries no geometry (documented per reader)


@dataclass
class CTVolume:
    """HU values ``(Z, H, W)`` float32 plus what is needed to put them back on disk faithfully.

    ``headers`` (DICOM input only) are the per-slice datasets without pixel data, in slice order,
    used as templates when writing a derived series.
    """

    HU_LIMITS = (-100_000.0, 100_000.0)
    """No CT data reaches beyond these: extended scales end near +30,000 HU (metal) and padding
    outside the field of view near -34,000 HU (int16 -32768 with intercept -1024). Values outside
    are not HU (HU scaled by a factor, a wrong RescaleSlope)."""

    hu: np.ndarray
    pixel_spacing_mm: tuple[float, float] = (DEFAULT_SPACING_MM, DEFAULT_SPACING_MM)
    slice_positions_mm: np.ndarray | None = None
    orientation: tuple[float, ...] | None = None
    slice_thickness_mm: float | None = None
    headers: list[pydicom.Dataset] | None = None
    source: Path | None = None
    skipped: tuple[tuple[Path, str], ...] = ()  # files of the input that are not slices of it, with the reason

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.hu.shape)  # type: ignore[return-value]

    @property
    def slice_normal(self) -> np.ndarray:
        """Unit normal of the slices (row direction x column direction), LPS."""
        cosines = np.asarray(self.orientation if self.orientation is not None else AXIAL, dtype=np.float64)
        normal = np.cross(cosines[:3], cosines[3:])
        return normal / np.linalg.norm(normal)

    @property
    def slice_spacing_mm(self) -> float:
        """Distance between slice centres along the normal.

        The median step of ``slice_positions_mm`` when there are two or more slices with positions,
        else ``slice_thickness_mm``, else 1.0 mm.
        """
        if self.slice_positions_mm is not None and len(self.slice_positions_mm) >= 2:
            along = np.asarray(self.slice_positions_mm, dtype=np.float64) @ self.slice_normal
            steps = np.abs(np.diff(along))
            return float(np.median(steps))
        if self.slice_thickness_mm:
            return float(self.slice_thickness_mm)
        return DEFAULT_SPACING_MM

    def with_hu(self, hu: np.ndarray, **changes: object) -> CTVolume:
        """The same geometry and headers holding other HU of the same shape (e.g. a denoised copy)."""
        hu = np.asarray(hu, dtype=np.float32)
        if hu.shape != self.hu.shape:
            raise ValueError(f"HU of shape {hu.shape} cannot replace those of {self.source or 'a volume'} "
                             f"({self.hu.shape})")
        return dataclasses.replace(self, hu=hu, skipped=(), **changes)  # type: ignore[arg-type]

    def positions_or_default(self) -> np.ndarray:
        """``slice_positions_mm``, or positions of a stack centred in x/y starting at z = 0."""
        if self.slice_positions_mm is not None:
            return np.asarray(self.slice_positions_mm, dtype=np.float64)
        z, h, w = self.hu.shape
        cosines = np.asarray(self.orientation if self.orientation is not None else AXIAL, dtype=np.float64)
        row_sp, col_sp = self.pixel_spacing_mm
        first = -(w - 1) / 2 * col_sp * cosines[:3] - (h - 1) / 2 * row_sp * cosines[3:]
        return first + np.arange(z)[:, None] * self.slice_spacing_mm * self.slice_normal[None, :]

    def affine(self, frame: Literal["RAS", "LPS"] = "RAS") -> np.ndarray:
        """4x4 map from voxel indices ``(c, r, k)`` = (column, row, slice) to patient mm.

        ``frame="LPS"`` is DICOM's patient frame; ``"RAS"`` (default) is NIfTI's, i.e. LPS with x and
        y negated. The index order is that of ``hu.transpose(2, 1, 0)``, the array NIfTI stores.
        """
        if frame not in ("RAS", "LPS"):
            raise ValueError(f"frame must be 'RAS' or 'LPS', got {frame!r}")
        cosines = np.asarray(self.orientation if self.orientation is not None else AXIAL, dtype=np.float64)
        row_sp, col_sp = self.pixel_spacing_mm
        positions = self.positions_or_default()
        if len(positions) >= 2:
            step = (positions[-1] - positions[0]) / (len(positions) - 1)
        else:
            step = self.slice_spacing_mm * self.slice_normal
        out = np.eye(4)
        out[:3, 0] = cosines[:3] * col_sp
        out[:3, 1] = cosines[3:] * row_sp
        out[:3, 2] = step
        out[:3, 3] = positions[0]
        if frame == "RAS":
            out[:2, :] *= -1.0
        return out

    def validate(self, check_scale: bool = True) -> CTVolume:
        """Check shape, dtype, finiteness and geometry; raise :class:`InputDataError` naming the source.

        ``check_scale`` (for data read in, not written out) also checks that the values can be HU.
        """
        where = str(self.source) if self.source is not None else "in-memory volume"
        if not isinstance(self.hu, np.ndarray) or self.hu.ndim != 3:
            shape = getattr(self.hu, "shape", type(self.hu).__name__)
            raise InputDataError(f"{where}: expected a (Z, H, W) HU array, got shape {shape}")
        if self.hu.dtype != np.float32:
            raise InputDataError(f"{where}: expected float32 HU, got {self.hu.dtype}; convert with .astype(np.float32)")
        if min(self.hu.shape) == 0:
            raise InputDataError(f"{where}: empty volume of shape {self.hu.shape}")
        finite = np.isfinite(self.hu)
        if not finite.all():
            bad = np.argwhere(~finite)[0]
            n_nan = int(np.isnan(self.hu).sum())
            n_inf = int((~finite).sum()) - n_nan
            raise InputDataError(
                f"{where}: {n_nan} NaN and {n_inf} infinite HU values (first at slice {bad[0]}, row {bad[1]}, "
                f"column {bad[2]}); CT data must be finite, fix or mask the input"
            )
        if len(self.pixel_spacing_mm) != 2 or not all(np.isfinite(s) and s > 0 for s in self.pixel_spacing_mm):
            raise InputDataError(f"{where}: pixel spacing must be two positive numbers, got {self.pixel_spacing_mm}")
        if self.slice_positions_mm is not None and np.shape(self.slice_positions_mm) != (self.hu.shape[0], 3):
            raise InputDataError(
                f"{where}: slice positions of shape {np.shape(self.slice_positions_mm)} do not match "
                f"{self.hu.shape[0]} slices (expected ({self.hu.shape[0]}, 3))"
            )
        if self.slice_positions_mm is not None and not np.isfinite(self.slice_positions_mm).all():
            raise InputDataError(f"{where}: slice positions must be finite, got {np.asarray(self.slice_positions_mm).tolist()}")
        if self.orientation is not None and (len(self.orientation) != 6 or not np.isfinite(self.orientation).all()):
            raise InputDataError(f"{where}: orientation needs 6 finite direction cosines, got {self.orientation}")
        if check_scale:
            self._check_hu_scale(where)
        if self.headers is not None and len(self.headers) != self.hu.shape[0]:
            raise InputDataError(f"{where}: {len(self.headers)} headers for {self.hu.shape[0]} slices")
        return self

    def _check_hu_scale(self, where: str) -> None:
        """Values that cannot be HU are an error; values that are probably not HU get a warning."""
        lo, hi = float(self.hu.min()), float(self.hu.max())
        if lo < self.HU_LIMITS[0] or hi > self.HU_LIMITS[1]:
            raise InputDataError(f"{where}: values span [{lo:.6g}, {hi:.6g}], beyond any CT number scale "
                                 f"({self.HU_LIMITS[0]:g} to {self.HU_LIMITS[1]:g} HU); give HU (stored value x "
                                 "RescaleSlope + RescaleIntercept), not raw or scaled data")
        if lo >= 0.0:
            log.warning("%s: no value below 0 HU (range [%.6g, %.6g]): CT of a body always holds air and fat, so this "
                        "is probably not HU (8-bit images, display-windowed data or stored values without the "
                        "rescale); results will be wrong", where, lo, hi)
