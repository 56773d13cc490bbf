"""A procedural, seeded 2-D/3-D abdomen phantom in HU: the embedded default data.

Image axes follow the radiological convention: columns run to the patient's left (x, mm), rows
run posterior (y, mm, anterior at the top), both centred on the isocentre; ``z`` (mm) runs
cranial. Anatomy is sized in mm, so changing the image size or pixel spacing keeps the body
physically sized (about 320-340 mm wide and 230-250 mm deep).

A :class:`PhantomPatient` holds one "patient's" random anatomy (body habitus, organ placement,
tissue HU, lesions, texture seed). :func:`make_phantom_slice` renders it at any ``z`` and
:func:`make_phantom_volume` stacks contiguous slices. ``z = 0`` lies near the renal hila (L1-L2).
The anatomy is meant for ``-130 <= z <= 90`` mm (lower lumbar spine to lung bases); beyond it, it
is merely plausible.

The anatomy lives in :mod:`vagan.physics.phantom_anatomy`, the painting of a slice in
:mod:`vagan.physics.phantom_render`, the geometry primitives in :mod:`vagan.physics.phantom_shapes`.
"""

from __future__ import annotations

import math
from typing import Literal, overload

import numpy as np

from vagan.physics.phantom_anatomy import Lesion, PhantomPatient
from vagan.physics.phantom_render import TISSUES, _render
from vagan.physics.phantom_shapes import Grid

__all__ = [
    "FIELD_OF_VIEW_MM",
    "MIN_SIZE",
    "TISSUES",
    "Lesion",
    "PhantomPatient",
    "make_phantom_slice",
    "make_phantom_volume",
    "slice_positions",
]

FIELD_OF_VIEW_MM = 358.4  # 512 px x 0.7 mm: the default reconstruction field
MIN_SIZE = 64


def _check_size(size: int) -> int:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < MIN_SIZE:
        raise ValueError(f"phantom size must be an integer >= {MIN_SIZE} pixels, got {size!r}; try 256 or 512")
    return int(size)


def _check_grid(size: int, pixel_spacing_mm: float) -> Grid:
    size = _check_size(size)
    try:
        spacing = float(pixel_spacing_mm)
    except (TypeError, ValueError):
        spacing = math.nan
    if not (math.isfinite(spacing) and spacing > 0):
        raise ValueError(
            f"pixel_spacing_mm must be a finite number > 0, got {pixel_spacing_mm!r}; "
            f"e.g. {FIELD_OF_VIEW_MM / size:.2f} mm fits the default {FIELD_OF_VIEW_MM} mm field at {size} px"
        )
    return Grid(size, spacing, edge_mm=math.hypot(spacing, 0.6))


@overload
def make_phantom_slice(size: int, pixel_spacing_mm: float, rng: np.random.Generator | None, z_mm: float = ...,
                       patient: PhantomPatient | None = ..., *, return_labels: Literal[False] = ...) -> np.ndarray: ...
@overload
def make_phantom_slice(size: int, pixel_spacing_mm: float, rng: np.random.Generator | None, z_mm: float = ...,
                       patient: PhantomPatient | None = ..., *,
                       return_labels: Literal[True]) -> tuple[np.ndarray, np.ndarray]: ...


def make_phantom_slice(
    size: int,
    pixel_spacing_mm: float,
    rng: np.random.Generator | None,
    z_mm: float = 0.0,
    patient: PhantomPatient | None = None,
    *,
    return_labels: bool = False,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """One axial abdomen slice in HU, ``(size, size)`` float32.

    Args:
        size: pixels per side (>= 64).
        pixel_spacing_mm: pixel size in mm (0.7 mm at 512 px covers the default 358.4 mm field).
        rng: draws the patient when ``patient`` is None; unused otherwise (may then be None).
        z_mm: height of the slice (cranial positive; 0 is near the renal hila).
        patient: the anatomy to render; by default a new one drawn from ``rng``.
        return_labels: also return a ``uint8`` label map with the values of :data:`TISSUES`.

    >>> hu = make_phantom_slice(64, 5.6, np.random.default_rng(0))
    >>> hu.shape, hu.dtype.name, bool(hu.min() >= -1000)
    ((64, 64), 'float32', True)
    """
    grid = _check_grid(size, pixel_spacing_mm)
    if not math.isfinite(z_mm):
        raise ValueError(f"z_mm must be a finite height in mm, got {z_mm!r}")
    if patient is None:
        if rng is None:
            raise ValueError("make_phantom_slice needs an rng (numpy Generator) or a patient")
        patient = PhantomPatient.random(rng)
    canvas = _render(patient, grid, float(z_mm))
    return (canvas.hu, canvas.labels) if return_labels else canvas.hu


def slice_positions(n_slices: int, slice_spacing_mm: float = 1.0, z_center_mm: float = 0.0) -> np.ndarray:
    """Heights (mm) of the slices of :func:`make_phantom_volume`: contiguous, centred, increasing."""
    if isinstance(n_slices, bool) or not isinstance(n_slices, (int, np.integer)) or n_slices < 1:
        raise ValueError(f"n_slices must be an integer >= 1, got {n_slices!r}")
    if not (math.isfinite(slice_spacing_mm) and slice_spacing_mm > 0):
        raise ValueError(f"slice_spacing_mm must be a finite number > 0, got {slice_spacing_mm!r}")
    return z_center_mm + (np.arange(n_slices) - (n_slices - 1) / 2) * slice_spacing_mm


def make_phantom_volume(
    n_slices: int,
    size: int = 512,
    pixel_spacing_mm: float | None = None,
    slice_spacing_mm: float = 1.0,
    seed: int = 0,
    *,
    z_center_mm: float = 0.0,
    patient: PhantomPatient | None = None,
) -> np.ndarray:
    """``n_slices`` contiguous slices of one patient, ``(Z, H, W)`` float32 HU, z increasing.

    ``pixel_spacing_mm=None`` fits the default 358.4 mm field (0.7 mm at 512 px). Slices lie at
    :func:`slice_positions`; the patient is ``PhantomPatient.random(default_rng(seed))`` unless given.
    """
    size = _check_size(size)
    grid = _check_grid(size, FIELD_OF_VIEW_MM / size if pixel_spacing_mm is None else pixel_spacing_mm)
    zs = slice_positions(n_slices, slice_spacing_mm, z_center_mm)
    if patient is None:
        patient = PhantomPatient.random(np.random.default_rng(seed))
    out = np.empty((len(zs), grid.size, grid.size), dtype=np.float32)
    for k, z in enumerate(zs):
        out[k] = _render(patient, grid, float(z)).hu
    return out
