"""Anti-aliased 2-D shapes on a pixel grid in mm, painted in HU with a label map.

Every shape is a signed distance in mm (negative inside). A soft mask ramps linearly from 1 to
0 across an edge of width ``grid.edge_mm`` centred on distance 0: this anti-aliases the outline
and stands in for the blur (partial volume, system resolution) of a real CT image. Shapes are
evaluated only inside their bounding box, so small structures cost little.

Textures are band-limited Gaussian random fields drawn on a fixed 1 mm grid and resampled to the
pixel grid, so a patient's texture is the same whatever the image size or pixel spacing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple

import numpy as np

Harmonics = tuple[tuple[int, float, float], ...]  # (k, a_k, b_k): r(phi) = 1 + sum a cos(k phi) + b sin(k phi)

_FIELD_SAMPLES = 512  # texture grid: 512 x 512 samples of 1 mm, wrapped beyond +-256 mm
_FIELD_STEP_MM = 1.0


class Region(NamedTuple):
    """A rectangular window of the image: slices plus broadcastable mm coordinates."""

    sl: tuple[slice, slice]
    y: np.ndarray  # (h, 1) row centres in mm, positive = posterior
    x: np.ndarray  # (1, w) column centres in mm, positive = patient's left


@dataclass(frozen=True)
class Grid:
    """Square pixel grid centred on the isocentre; pixel centres at ``(i - (n-1)/2) * spacing``."""

    size: int
    spacing_mm: float
    edge_mm: float

    @property
    def axis_mm(self) -> np.ndarray:
        return ((np.arange(self.size, dtype=np.float32) - (self.size - 1) / 2) * self.spacing_mm).astype(np.float32)

    def full(self) -> Region:
        a = self.axis_mm
        return Region((slice(0, self.size), slice(0, self.size)), a[:, None], a[None, :])

    def region(self, cx: float, cy: float, radius: float) -> Region | None:
        """The window holding a disc of ``radius`` mm (plus the edge) around (cx, cy), or None."""
        r = radius + 2.0 * self.edge_mm
        c = (self.size - 1) / 2
        s = self.spacing_mm
        j0, j1 = max(math.floor((cx - r) / s + c), 0), min(math.ceil((cx + r) / s + c) + 1, self.size)
        i0, i1 = max(math.floor((cy - r) / s + c), 0), min(math.ceil((cy + r) / s + c) + 1, self.size)
        if j0 >= j1 or i0 >= i1:
            return None
        a = self.axis_mm
        return Region((slice(i0, i1), slice(j0, j1)), a[i0:i1, None], a[None, j0:j1])

    def soft(self, d: np.ndarray) -> np.ndarray:
        """Coverage in [0, 1] of a pixel at signed distance ``d`` mm from an outline."""
        return np.clip(0.5 - d / np.float32(self.edge_mm), 0.0, 1.0).astype(np.float32, copy=False)


def ellipse_sdf(
    reg: Region, cx: float, cy: float, ax: float, ay: float, angle_deg: float = 0.0, harmonics: Harmonics = ()
) -> np.ndarray:
    """Approximate signed distance (mm) to an ellipse, optionally with a Fourier-modulated outline.

    The outline is ``q(u, v) = r(phi)`` with ``q = sqrt((u/ax)^2 + (v/ay)^2)`` in the rotated frame;
    the distance is the first-order estimate ``(q - r) / |grad q|``.
    """
    t = math.radians(angle_deg)
    c, s = np.float32(math.cos(t)), np.float32(math.sin(t))
    dx, dy = reg.x - np.float32(cx), reg.y - np.float32(cy)
    un = (dx * c + dy * s) / np.float32(ax)
    vn = (dy * c - dx * s) / np.float32(ay)
    q = np.sqrt(un * un + vn * vn)
    grad = np.sqrt((un / np.float32(ax)) ** 2 + (vn / np.float32(ay)) ** 2) / np.maximum(q, np.float32(1e-6))
    r: np.ndarray | float = 1.0
    if harmonics:
        phi = np.arctan2(vn, un)
        r = np.ones_like(q)
        for k, a, b in harmonics:
            r += np.float32(a) * np.cos(k * phi) + np.float32(b) * np.sin(k * phi)
    return (q - r) / np.maximum(grad, np.float32(1e-9))


def capsule_sdf(reg: Region, points: tuple[tuple[float, float], ...], radius: float) -> np.ndarray:
    """Exact signed distance (mm) to a polyline thickened by ``radius`` (a tube's cross-section)."""
    best: np.ndarray | None = None
    for (x0, y0), (x1, y1) in zip(points[:-1], points[1:]):
        ex, ey = x1 - x0, y1 - y0
        den = ex * ex + ey * ey
        px, py = reg.x - np.float32(x0), reg.y - np.float32(y0)
        t = np.clip((px * ex + py * ey) / max(den, 1e-12), 0.0, 1.0)
        d2 = (px - t * ex) ** 2 + (py - t * ey) ** 2
        best = d2 if best is None else np.minimum(best, d2)
    if best is None:
        raise ValueError(f"capsule needs at least 2 points, got {len(points)}")
    return np.sqrt(best) - np.float32(radius)


def bounding_radius(ax: float, ay: float, harmonics: Harmonics = ()) -> float:
    """A radius (mm) that holds the whole shape of :func:`ellipse_sdf`."""
    return max(ax, ay) * (1.0 + sum(abs(a) + abs(b) for _, a, b in harmonics))


def capsule_region(grid: Grid, points: tuple[tuple[float, float], ...], radius: float) -> Region | None:
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    cx, cy = (min(xs) + max(xs)) / 2, (min(ys) + max(ys)) / 2
    half = max(max(xs) - min(xs), max(ys) - min(ys)) / 2
    return grid.region(cx, cy, half + radius)


class Canvas:
    """An HU image and its label map, painted back to front (later shapes cover earlier ones)."""

    def __init__(self, grid: Grid, texture: np.ndarray, background_hu: float = -1000.0) -> None:
        self.grid = grid
        self.texture = texture
        self.hu = np.full((grid.size, grid.size), background_hu, dtype=np.float32)
        self.labels = np.zeros((grid.size, grid.size), dtype=np.uint8)

    def paint(self, reg: Region, mask: np.ndarray, hu: float | np.ndarray, label: int, texture_hu: float = 0.0) -> None:
        """Blend ``hu`` (+ ``texture_hu`` times the unit texture) into the image with coverage ``mask``."""
        val = hu + np.float32(texture_hu) * self.texture[reg.sl] if texture_hu else hu
        h = self.hu[reg.sl]
        h += mask * (val - h)
        self.labels[reg.sl][mask > 0.5] = label

    def add(self, reg: Region, mask: np.ndarray, delta_hu: float, label: int | None = None) -> None:
        """Add ``delta_hu`` with weight ``mask`` (e.g. a lesion's contrast on its host organ)."""
        self.hu[reg.sl] += np.float32(delta_hu) * mask
        if label is not None:
            self.labels[reg.sl][mask > 0.5] = label


def _zigzag(k: int) -> int:
    return 2 * k if k >= 0 else -2 * k - 1


@lru_cache(maxsize=24)
def _knot_field(seed: int, stream: int, knot: int, sigma_mm: float) -> np.ndarray:
    """Unit-variance smooth random field on the 1 mm texture grid for one z knot (cached, read-only)."""
    from scipy.ndimage import gaussian_filter

    gen = np.random.default_rng([seed, stream, _zigzag(knot)])
    noise = gen.standard_normal((_FIELD_SAMPLES, _FIELD_SAMPLES), dtype=np.float32)
    field = gaussian_filter(noise, sigma_mm / _FIELD_STEP_MM, mode="wrap")
    field /= field.std()
    field.flags.writeable = False
    return field


def smooth_field(seed: int, stream: int, z_mm: float, sigma_mm: float, knot_mm: float) -> np.ndarray:
    """A unit-variance field at height ``z_mm``, continuous in z.

    Independent fields are drawn every ``knot_mm``; between knots ``k`` and ``k+1`` the field is
    ``cos(pi t/2) F_k + sin(pi t/2) F_{k+1}``, which keeps unit variance.
    """
    pos = z_mm / knot_mm
    k = math.floor(pos)
    t = pos - k
    a, b = math.cos(math.pi * t / 2), math.sin(math.pi * t / 2)
    return a * _knot_field(seed, stream, k, sigma_mm) + b * _knot_field(seed, stream, k + 1, sigma_mm)


def resample_field(field: np.ndarray, grid: Grid) -> np.ndarray:
    """Bilinear resampling of a 1 mm texture grid (wrapped) onto the pixel grid (separable)."""
    n = field.shape[0]
    pos = grid.axis_mm / _FIELD_STEP_MM + n / 2
    i0 = np.floor(pos).astype(np.int64)
    w = (pos - i0).astype(np.float32)
    lo, hi = i0 % n, (i0 + 1) % n
    rows = field[lo] * (1 - w)[:, None] + field[hi] * w[:, None]
    return rows[:, lo] * (1 - w)[None, :] + rows[:, hi] * w[None, :]
