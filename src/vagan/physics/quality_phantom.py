"""A task-based image-quality phantom with known inserts (docs/quality.md).

A uniform soft-tissue body (40 HU, the abdomen's size, so that the noise matches the training
data's) on a grid of 23 mm cells. Each cell holds one insert:

* **rods** of known contrast for the task transfer function (TTF), 7 mm in radius;
* **tissue inserts** (fat, muscle, liver, contrast-enhanced blood, cortical bone) for CT-number accuracy;
  blood and bone sit in outer cells, at least 2.5 cells from any rod, with no lesion in the cells
  next to them;
* **low-contrast lesions** (discs of each size x contrast), as many copies of each as the body
  holds, for model observers.

The signal-absent image is the same phantom without the lesions, so every lesion cell gives a
signal-present and a signal-absent region of interest at one known position. Neighbouring inserts
lie at least 9 mm from a rod's edge, beyond the 7 mm of background its TTF reads.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

BACKGROUND_HU = 40.0
BODY_SEMI_AXES_MM = (165.0, 120.0)  # about the phantom abdomen's 330 x 240 mm
CELL_MM = 23.0
ROI_MM = 22.0
ROD_RADIUS_MM = 7.0
TISSUE_RADIUS_MM = 7.0
TISSUE_HU = {"fat": -95.0, "muscle": 50.0, "liver": 60.0, "blood": 180.0, "bone": 1100.0}
"""Tissue inserts in HU (blood contrast-enhanced, bone cortical), as in the anatomical phantom."""
DENSE = ("blood", "bone")  # inserts placed at the body's edge, away from the rods and lesions
DENSE_GAP_CELLS = 2.5  # least distance of a dense insert from a rod, in cells


@dataclass(frozen=True)
class Insert:
    """A disc at (``row``, ``col``) pixels of ``radius_mm`` and absolute value ``hu``."""

    kind: str  # "rod", "tissue" or "lesion"
    name: str  # e.g. "rod +100 HU", "liver", "5 mm / 10 HU"
    row: float
    col: float
    radius_mm: float
    hu: float


@dataclass(frozen=True)
class LesionType:
    diameter_mm: float
    contrast_hu: float

    @property
    def name(self) -> str:
        return f"{self.diameter_mm:g} mm / {self.contrast_hu:g} HU"


@dataclass(frozen=True)
class QualityPhantom:
    """The layout of the phantom on a ``size`` x ``size`` grid of ``pixel_mm`` pixels."""

    size: int
    pixel_mm: float
    semi_axes_mm: tuple[float, float]
    inserts: tuple[Insert, ...]
    lesion_types: tuple[LesionType, ...]

    @property
    def roi_px(self) -> int:
        """Side of the square ROIs centred on lesion cells (even, about 22 mm)."""
        return 2 * max(4, int(round(ROI_MM / self.pixel_mm / 2)))

    def of_kind(self, kind: str) -> tuple[Insert, ...]:
        return tuple(i for i in self.inserts if i.kind == kind)

    def lesions_of(self, lesion: LesionType) -> tuple[Insert, ...]:
        return tuple(i for i in self.of_kind("lesion") if i.name == lesion.name)

    def render(self, signal: bool) -> np.ndarray:
        """The noise-free image in HU, float32; ``signal=False`` leaves the lesions out."""
        n, px = self.size, self.pixel_mm
        c = (n - 1) / 2
        y, x = np.mgrid[0:n, 0:n].astype(np.float64)
        a, b = self.semi_axes_mm
        # body: -1000 outside, background inside, with a one-pixel anti-aliased edge
        rho = np.hypot((x - c) * px / a, (y - c) * px / b)
        body = np.clip((1.0 - rho) * min(a, b) / px + 0.5, 0.0, 1.0)
        image = -1000.0 + (BACKGROUND_HU + 1000.0) * body
        for insert in self.inserts:
            if insert.kind == "lesion" and not signal:
                continue
            r_px = insert.radius_mm / px
            reach = int(math.ceil(r_px + 2))
            r0, c0 = int(round(insert.row)), int(round(insert.col))
            sl = (slice(r0 - reach, r0 + reach + 1), slice(c0 - reach, c0 + reach + 1))
            d = np.hypot(y[sl] - insert.row, x[sl] - insert.col)
            cover = np.clip(r_px - d + 0.5, 0.0, 1.0)
            image[sl] += cover * (insert.hu - image[sl])
        return image.astype(np.float32)


def _cells(size: int, pixel_mm: float, semi_axes_mm: tuple[float, float]) -> list[tuple[float, float]]:
    """Centres (row, col) of the cells whose whole ROI lies 2 mm or more inside the body, nearest the centre first."""
    c = (size - 1) / 2
    a, b = semi_axes_mm
    reach = ROI_MM / math.sqrt(2) + 2.0  # the ROI's corners
    ring = np.linspace(0, 2 * math.pi, 32, endpoint=False)
    k_max = int(max(a, b) // CELL_MM) + 1
    out = []
    for i in range(-k_max, k_max + 1):
        for j in range(-k_max, k_max + 1):
            ym, xm = i * CELL_MM, j * CELL_MM
            px, py = xm + reach * np.cos(ring), ym + reach * np.sin(ring)
            if np.all(px**2 / a**2 + py**2 / b**2 <= 1):
                out.append((ym, xm))
    out.sort(key=lambda p: (math.hypot(*p), math.atan2(*p)))
    # centres on half-pixels: the centre of an even-sided ROI, so that lesions sit where the channels do
    return [(math.floor(c + ym / pixel_mm) + 0.5, math.floor(c + xm / pixel_mm) + 0.5) for ym, xm in out]


def make_quality_phantom(size: int, pixel_mm: float, lesion_diameters_mm: Sequence[float],
                         lesion_contrasts_hu: Sequence[float], rod_contrasts_hu: Sequence[float]) -> QualityPhantom:
    """Lay out rods, tissue inserts and as many copies of each lesion type as fit.

    The body keeps the abdomen's size unless the field of view (``size * pixel_mm``) is smaller,
    when it shrinks to 90% of the field. Raises ``ValueError`` naming the sizes when the lesions
    or rods do not fit.
    """
    fov = size * pixel_mm
    scale = min(1.0, 0.45 * fov / BODY_SEMI_AXES_MM[0])
    axes = (BODY_SEMI_AXES_MM[0] * scale, BODY_SEMI_AXES_MM[1] * scale)
    types = tuple(LesionType(float(d), float(c)) for d in lesion_diameters_mm for c in lesion_contrasts_hu)
    if not types:
        raise ValueError("the quality phantom needs at least one lesion size and one contrast")
    for t in types:
        if not 0 < t.diameter_mm <= ROI_MM / 2:
            raise ValueError(f"lesion diameter must lie in (0, {ROI_MM / 2:g}] mm, got {t.diameter_mm:g}")
        if t.diameter_mm / pixel_mm < 2:
            raise ValueError(f"a {t.diameter_mm:g} mm lesion spans under 2 pixels of {pixel_mm:g} mm; "
                             "use lesions of at least 2 pixels")
    if ROD_RADIUS_MM / pixel_mm < 3:
        raise ValueError(f"pixels of {pixel_mm:g} mm are too coarse for the {ROD_RADIUS_MM:g} mm TTF rods "
                         f"(at least 3 pixels in radius needed)")
    cells = _cells(size, pixel_mm, axes)
    near = [("rod", f"rod {c:+g} HU", ROD_RADIUS_MM, BACKGROUND_HU + float(c)) for c in rod_contrasts_hu]
    near += [("tissue", name, TISSUE_RADIUS_MM, hu) for name, hu in TISSUE_HU.items() if name not in DENSE]
    dense = [("tissue", name, TISSUE_RADIUS_MM, TISSUE_HU[name]) for name in DENSE]
    inserts = [Insert(kind, name, row, col, radius, hu) for (kind, name, radius, hu), (row, col) in zip(near, cells)]
    rest = cells[len(near):]
    # dense inserts in the outermost free cells, far from the rods, with a ring of empty cells around them
    # so that their blur or streaks reach neither a rod's edge profile nor a lesion's or noise ROI
    gap = CELL_MM * DENSE_GAP_CELLS / pixel_mm
    for kind, name, radius, hu in dense:
        far = [c for c in rest if all(math.hypot(c[0] - i.row, c[1] - i.col) > gap for i in inserts if i.kind == "rod")]
        if not far:
            rest = []
            break
        row, col = far[-1]
        inserts.append(Insert(kind, name, row, col, radius, hu))
        rest = [c for c in rest if math.hypot(c[0] - row, c[1] - col) > CELL_MM * 1.5 / pixel_mm]
    copies = len(rest) // len(types)
    if copies < 1 or len(inserts) < len(near) + len(dense):
        raise ValueError(f"the {2 * axes[0]:.0f} x {2 * axes[1]:.0f} mm body holds {len(cells)} cells of {CELL_MM:g} mm: "
                         f"too few for {len(near) + len(dense)} rods and tissue inserts and {len(types)} lesion types")
    for k, (row, col) in enumerate(rest[:copies * len(types)]):
        t = types[k % len(types)]
        inserts.append(Insert("lesion", t.name, row, col, t.diameter_mm / 2, BACKGROUND_HU + t.contrast_hu))
    return QualityPhantom(size, float(pixel_mm), axes, tuple(inserts), types)


def roi_stack(images: np.ndarray, inserts: Sequence[Insert], roi_px: int) -> np.ndarray:
    """ROIs ``(K * len(inserts), roi_px, roi_px)`` centred on each insert of each image ``(K, H, W)``."""
    half = roi_px // 2
    rois = []
    for image in np.asarray(images):
        for ins in inserts:
            r, c = int(ins.row + 0.5) - half, int(ins.col + 0.5) - half  # centres lie on half-pixels
            rois.append(image[r: r + roi_px, c: c + roi_px])
    return np.stack(rois).astype(np.float64)
