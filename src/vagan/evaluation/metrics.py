"""Image-quality metrics with explicit data ranges (docs/design.md, "Metrics").

Two conventions are reported side by side:

* ``FIELD`` (the paper's Table II): HU mapped to [0, 1] over [-1024, 3072]
  (:data:`vagan.io.windowing.NETWORK_RANGE`, clipped) and ``data_range = 1``; computed on
  64x64 patches (4 per test image, see :class:`PatchSpec`) and on whole slices.
* ``WINDOW`` (RED-CNN code): HU clipped to the display window [-160, 240] and
  ``data_range = 400`` HU; computed on whole slices.

RMSE is reported in HU on the raw (unclipped) whole slice.

SSIM is invariant to scaling images and range together but *not* to an offset (its luminance
term uses absolute means), so each convention is defined on exactly the values named above:
[0, 1] field units, and clipped HU (not shifted to [0, 1]) in the window convention.

PSNR = 10 log10(R^2 / MSE). SSIM (Wang et al. 2004) uses a Gaussian window (sigma 1.5,
11 taps), K1 = 0.01, K2 = 0.03, population covariances, and the mean of the SSIM map over
pixels whose window lies wholly inside the image: this is
``skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5,
use_sample_covariance=False, data_range=R)``. torchmetrics' Gaussian SSIM gives the same
map but averages it over the reflect-padded border too, which differs by ~1e-3 on small
images; cropping its full map by 5 px gives our value (checked in the tests).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple

import numpy as np
import torch

from vagan.config_schema import Section, bounded
from vagan.errors import ConfigError
from vagan.io.windowing import BODY_THRESHOLD_HU, DISPLAY_RANGE, NETWORK_RANGE, HURange

log = logging.getLogger(__name__)

ArrayLike = np.ndarray | torch.Tensor

SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03
SSIM_TRUNCATE = 3.5  # Gaussian radius int(3.5 * 1.5 + 0.5) = 5 -> 11 taps
SSIM_DESCRIPTION = (f"Gaussian window sigma {SSIM_SIGMA:g} (11 taps), K1 {SSIM_K1:g}, K2 {SSIM_K2:g}, mean over "
                    "pixels whose window lies inside the image")


# --------------------------------------------------------------------------- conventions


@dataclass(frozen=True)
class Convention:
    """How HU are turned into the values a metric sees, and the matching data range.

    ``unit=True``: ``hu_range.to_unit`` (clip, scale to [0, 1]), data range 1.
    ``unit=False``: clip to ``hu_range`` and stay in HU, data range ``hu_range.width``.
    """

    name: str
    hu_range: HURange
    unit: bool

    @property
    def data_range(self) -> float:
        return 1.0 if self.unit else self.hu_range.width

    def describe(self) -> str:
        """E.g. ``HU [-1024, 3072] -> [0, 1], data range 1``."""
        lo, hi = self.hu_range.lo, self.hu_range.hi
        if self.unit:
            return f"HU [{lo:g}, {hi:g}] → [0, 1], data range 1"
        return f"HU clipped to [{lo:g}, {hi:g}], data range {self.data_range:g} HU"

    def summary(self) -> dict[str, object]:
        """The convention as plain data for summary.json."""
        return {"hu_range": [self.hu_range.lo, self.hu_range.hi], "data_range": self.data_range}

    def apply(self, hu: np.ndarray) -> np.ndarray:
        if self.unit:
            return self.hu_range.to_unit(hu)
        return np.clip(hu, self.hu_range.lo, self.hu_range.hi)


FIELD = Convention("field", NETWORK_RANGE, unit=True)
WINDOW = Convention("window", DISPLAY_RANGE, unit=False)


# --------------------------------------------------------------------------- input checks


def as_image(x: ArrayLike, what: str = "image") -> np.ndarray:
    """One 2-D float64 image from ``(H, W)``, ``(1, H, W)`` or ``(1, 1, H, W)`` (numpy or torch)."""
    arr = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    while arr.ndim > 2 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 2:
        raise ValueError(f"{what}: expected one 2-D image (H, W), got shape {tuple(np.shape(x))}")
    return _finite_float64(arr, what)


def as_batch(x: ArrayLike, what: str = "images") -> np.ndarray:
    """A stack ``(N, H, W)`` float64 from ``(H, W)``, ``(N, H, W)`` or ``(N, 1, H, W)``."""
    arr = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    if arr.ndim == 2:
        arr = arr[None]
    elif arr.ndim == 4 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 3:
        raise ValueError(f"{what}: expected (H, W), (N, H, W) or (N, 1, H, W), got shape {arr.shape}")
    return _finite_float64(arr, what)


def _finite_float64(arr: np.ndarray, what: str) -> np.ndarray:
    arr = arr.astype(np.float64, copy=False)
    if not np.isfinite(arr).all():
        raise ValueError(f"{what}: contains NaN or infinite values; check the input or the model output")
    return arr


def _pair(pred: ArrayLike, target: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    p, t = as_image(pred, "prediction"), as_image(target, "target")
    if p.shape != t.shape:
        raise ValueError(f"prediction and target shapes differ: {p.shape} vs {t.shape}")
    return p, t


def _check_range(data_range: float) -> float:
    if not (isinstance(data_range, (int, float)) and math.isfinite(data_range) and data_range > 0):
        raise ValueError(f"data_range must be a positive finite number, got {data_range!r}")
    return float(data_range)


# --------------------------------------------------------------------------- basic metrics


def psnr(pred: ArrayLike, target: ArrayLike, data_range: float) -> float:
    """PSNR in dB: ``10 log10(data_range^2 / MSE)``; ``inf`` for identical images.

    >>> round(psnr(np.full((4, 4), 0.1), np.zeros((4, 4)), data_range=1.0), 9)
    20.0
    """
    r = _check_range(data_range)
    p, t = _pair(pred, target)
    mse = float(np.mean((p - t) ** 2))
    if mse == 0.0:
        return math.inf
    return 10.0 * math.log10(r * r / mse)


def ssim(pred: ArrayLike, target: ArrayLike, data_range: float) -> float:
    """Mean SSIM (Gaussian window sigma 1.5, K1 0.01, K2 0.03); images must be >= 11x11."""
    from skimage.metrics import structural_similarity

    r = _check_range(data_range)
    p, t = _pair(pred, target)
    if min(p.shape) < 11:
        raise ValueError(f"SSIM needs images of at least 11x11 pixels, got {p.shape}")
    return float(
        structural_similarity(
            p,
            t,
            data_range=r,
            gaussian_weights=True,
            sigma=SSIM_SIGMA,
            truncate=SSIM_TRUNCATE,
            use_sample_covariance=False,
            K1=SSIM_K1,
            K2=SSIM_K2,
        )
    )


def rmse(pred: ArrayLike, target: ArrayLike) -> float:
    """Root-mean-square error in the units of the inputs (HU for HU images)."""
    p, t = _pair(pred, target)
    return float(np.sqrt(np.mean((p - t) ** 2)))


def psnr_hu(pred_hu: ArrayLike, target_hu: ArrayLike, convention: Convention = FIELD) -> float:
    """PSNR of HU images under a :class:`Convention` (``FIELD`` or ``WINDOW``)."""
    p, t = _pair(pred_hu, target_hu)
    return psnr(convention.apply(p), convention.apply(t), convention.data_range)


def ssim_hu(pred_hu: ArrayLike, target_hu: ArrayLike, convention: Convention = FIELD) -> float:
    """SSIM of HU images under a :class:`Convention` (``FIELD`` or ``WINDOW``)."""
    p, t = _pair(pred_hu, target_hu)
    return ssim(convention.apply(p), convention.apply(t), convention.data_range)


# --------------------------------------------------------------------------- patches

PatchMode = Literal["body-quadrants", "image-quadrants", "random-body"]


@dataclass(frozen=True)
class PatchSpec(Section):
    """How the paper's test patches are taken: ``per_image`` patches of ``size`` x ``size``.

    The paper cut 7,744 patches from 1,936 test slices (4 per slice) without saying where.
    Modes, all chosen from the *target* (NDCT) only, so every method is scored on the same pixels:

    * ``body-quadrants`` (default): the bounding box of the body (target HU > ``body_hu``) is
      split into 2x2 quadrants; one patch is centred on each quadrant centre (clamped to the
      image). No randomness; patches lie on anatomy, not on the air around the patient.
    * ``image-quadrants``: the same on the whole image (centres at 1/4 and 3/4 of H and W).
    * ``random-body``: ``per_image`` distinct centres drawn uniformly from body pixels where a
      whole patch fits, with ``numpy.random.default_rng([seed, image_index])``.

    Quadrant modes need ``per_image == 4``.
    """

    size: int = bounded(64, ge=11)  # the SSIM window is 11 px
    per_image: int = bounded(4, ge=1)
    mode: PatchMode = "body-quadrants"
    body_hu: float = BODY_THRESHOLD_HU
    seed: int = bounded(0, ge=0)  # numpy seeds are non-negative

    def check(self) -> None:
        if self.mode != "random-body" and self.per_image != 4:
            raise ConfigError(f"per_image: mode {self.mode!r} gives 4 patches per image, got {self.per_image}")


def _quadrant_corners(r0: int, r1: int, c0: int, c1: int, shape: tuple[int, int], size: int) -> list[tuple[int, int]]:
    """Top-left corners of patches centred on the quadrant centres of rows [r0, r1) x cols [c0, c1)."""
    h, w = r1 - r0, c1 - c0
    corners = []
    for fr in (0.25, 0.75):
        for fc in (0.25, 0.75):
            cr = r0 + round(fr * h)
            cc = c0 + round(fc * w)
            row = min(max(cr - size // 2, 0), shape[0] - size)
            col = min(max(cc - size // 2, 0), shape[1] - size)
            corners.append((row, col))
    return corners


def select_patches(target_hu: ArrayLike, spec: PatchSpec = PatchSpec(), image_index: int = 0) -> list[tuple[int, int]]:
    """Top-left ``(row, col)`` of each test patch in ``target_hu`` (deterministic, see :class:`PatchSpec`)."""
    t = as_image(target_hu, "target")
    if t.shape[0] < spec.size or t.shape[1] < spec.size:
        raise ValueError(f"image {t.shape} is smaller than the {spec.size}x{spec.size} test patch")
    if spec.mode == "image-quadrants":
        return _quadrant_corners(0, t.shape[0], 0, t.shape[1], t.shape, spec.size)
    body = t > spec.body_hu
    if spec.mode == "body-quadrants":
        rows, cols = np.nonzero(body.any(axis=1))[0], np.nonzero(body.any(axis=0))[0]
        if rows.size == 0:
            log.debug("no body pixels above %s HU; using image quadrants", spec.body_hu)
            return _quadrant_corners(0, t.shape[0], 0, t.shape[1], t.shape, spec.size)
        return _quadrant_corners(int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1, t.shape, spec.size)
    # random-body: centres where the whole patch fits inside the image
    half = spec.size // 2
    allowed = np.zeros_like(body)
    allowed[half : t.shape[0] - (spec.size - half) + 1, half : t.shape[1] - (spec.size - half) + 1] = True
    candidates = np.flatnonzero(body & allowed)
    if candidates.size < spec.per_image:
        candidates = np.flatnonzero(allowed)
    rng = np.random.default_rng([spec.seed, image_index])
    picks = rng.choice(candidates, size=spec.per_image, replace=False)
    centres = np.unravel_index(np.sort(picks), t.shape)
    return [(int(r) - half, int(c) - half) for r, c in zip(*centres, strict=True)]


def extract_patches(image: ArrayLike, corners: Sequence[tuple[int, int]], size: int) -> list[np.ndarray]:
    """Cut ``size`` x ``size`` patches at the given top-left corners."""
    img = as_image(image)
    return [img[r : r + size, c : c + size] for r, c in corners]


# --------------------------------------------------------------------------- per-image metrics

METRICS: tuple[str, ...] = (
    "psnr_patch",  # field convention, 64x64 patches (paper Table II)
    "ssim_patch",
    "psnr_slice",  # field convention, whole slice
    "ssim_slice",
    "psnr_window",  # display window [-160, 240] HU, data range 400, whole slice
    "ssim_window",
    "rmse_hu",  # raw HU, whole slice
    "rmse_body_hu",  # raw HU, the body only (reference above BODY_THRESHOLD_HU): air does not dilute it
    "bias_tissue_hu",  # mean(method - reference) over soft tissue away from edges: the CT-number shift
)
METRIC_LABELS: dict[str, str] = {
    "psnr_patch": "PSNR patch (field) [dB]",
    "ssim_patch": "SSIM patch (field)",
    "psnr_slice": "PSNR slice (field) [dB]",
    "ssim_slice": "SSIM slice (field)",
    "psnr_window": "PSNR slice (window) [dB]",
    "ssim_window": "SSIM slice (window)",
    "rmse_hu": "RMSE [HU]",
    "rmse_body_hu": "RMSE body [HU]",
    "bias_tissue_hu": "CT bias soft tissue [HU]",
}
TISSUE_EDGE_PX = 2
"""Soft-tissue pixels this close to another tissue class are left out of the bias (edges blur)."""
TISSUE_SMOOTH_PX = 1.0
"""Gaussian sigma of the reference before soft tissue is told apart (its own noise must not split it)."""


def body_rmse(pred_hu: ArrayLike, target_hu: ArrayLike) -> float:
    """RMSE in HU over the body (reference above ``BODY_THRESHOLD_HU``); the whole slice where no body."""
    p, t = _pair(pred_hu, target_hu)
    body = t > BODY_THRESHOLD_HU
    if not body.any():
        body = np.ones_like(t, dtype=bool)
    return float(np.sqrt(np.mean((p[body] - t[body]) ** 2)))


def tissue_bias(pred_hu: ArrayLike, target_hu: ArrayLike) -> float:
    """Mean of ``pred - target`` in HU over soft tissue (reference in ``SOFT_TISSUE_HU`` after a
    light smoothing, eroded by :data:`TISSUE_EDGE_PX`): noise averages out over thousands of pixels,
    a shift of the CT numbers does not. NaN where a slice has no soft tissue."""
    from scipy import ndimage

    from vagan.quality.uniform import SOFT_TISSUE_HU

    p, t = _pair(pred_hu, target_hu)
    smooth = ndimage.gaussian_filter(t, TISSUE_SMOOTH_PX)
    tissue = (smooth >= SOFT_TISSUE_HU[0]) & (smooth <= SOFT_TISSUE_HU[1])
    tissue = ndimage.binary_erosion(tissue, iterations=TISSUE_EDGE_PX)
    return float(np.mean(p[tissue] - t[tissue])) if tissue.any() else math.nan


def image_metrics(
    pred_hu: ArrayLike, target_hu: ArrayLike, patches: PatchSpec = PatchSpec(), image_index: int = 0
) -> dict[str, list[float]]:
    """All :data:`METRICS` for one slice: one value each, ``per_image`` values for patch metrics."""
    p, t = _pair(pred_hu, target_hu)
    pf, tf = FIELD.apply(p), FIELD.apply(t)
    corners = select_patches(t, patches, image_index)
    pp = extract_patches(pf, corners, patches.size)
    tp = extract_patches(tf, corners, patches.size)
    return {
        "psnr_patch": [psnr(a, b, FIELD.data_range) for a, b in zip(pp, tp, strict=True)],
        "ssim_patch": [ssim(a, b, FIELD.data_range) for a, b in zip(pp, tp, strict=True)],
        "psnr_slice": [psnr(pf, tf, FIELD.data_range)],
        "ssim_slice": [ssim(pf, tf, FIELD.data_range)],
        "psnr_window": [psnr_hu(p, t, WINDOW)],
        "ssim_window": [ssim_hu(p, t, WINDOW)],
        "rmse_hu": [rmse(p, t)],
        "rmse_body_hu": [body_rmse(p, t)],
        "bias_tissue_hu": [tissue_bias(p, t)],
    }


# --------------------------------------------------------------------------- accumulator


class MetricSummary(NamedTuple):
    """Mean, sample standard deviation (ddof=1; 0 for n=1) and count of one metric."""

    mean: float
    std: float
    n: int


def summarize(values: Sequence[float]) -> MetricSummary:
    """Mean ± std of finite and infinite values (``inf`` PSNR makes the mean ``inf``) over the images
    where the metric is defined: NaN (e.g. the soft-tissue bias of a slice without soft tissue) is left out."""
    arr = np.asarray(values, dtype=np.float64)
    arr = arr[~np.isnan(arr)]
    if arr.size == 0:
        return MetricSummary(math.nan, math.nan, 0)
    mean = float(arr.mean())
    std = float(arr.std(ddof=1)) if arr.size > 1 and np.isfinite(arr).all() else (0.0 if arr.size == 1 else math.nan)
    return MetricSummary(mean, std, int(arr.size))


class MetricAccumulator:
    """Collect per-image metrics for several methods over a test set.

    Feed every method the same test images in the same order (or pass ``image_index``):
    patch positions depend only on the target and its index, so all methods see equal pixels.
    Patch metrics have ``n = per_image x images``; slice metrics ``n = images``.
    """

    def __init__(self, methods: Sequence[str], patches: PatchSpec = PatchSpec()) -> None:
        if len(set(methods)) != len(methods) or not methods:
            raise ValueError(f"methods must be non-empty and unique, got {list(methods)}")
        self.methods: tuple[str, ...] = tuple(methods)
        self.patches = patches
        self._values: dict[str, dict[str, list[float]]] = {m: {k: [] for k in METRICS} for m in self.methods}
        self._rows: list[dict[str, object]] = []
        self._count: dict[str, int] = dict.fromkeys(self.methods, 0)

    def update(self, method: str, pred_hu: ArrayLike, target_hu: ArrayLike, image_index: int | None = None) -> None:
        """Score one slice ``(H, W)`` or a batch ``(N, H, W)`` / ``(N, 1, H, W)`` of ``method`` (HU)."""
        if method not in self._values:
            raise ValueError(f"unknown method {method!r}; this accumulator was made for {list(self.methods)}")
        preds, targets = as_batch(pred_hu, "prediction"), as_batch(target_hu, "target")
        if preds.shape != targets.shape:
            raise ValueError(f"prediction and target shapes differ: {preds.shape} vs {targets.shape}")
        for i in range(preds.shape[0]):
            index = self._count[method] if image_index is None else image_index + i
            values = image_metrics(preds[i], targets[i], self.patches, index)
            for key, vals in values.items():
                self._values[method][key].extend(vals)
            row: dict[str, object] = {"method": method, "image_index": index}
            row.update({k: float(np.mean(v)) for k, v in values.items()})
            self._rows.append(row)
            self._count[method] += 1

    def values(self, method: str, metric: str) -> np.ndarray:
        """All per-image (or per-patch) values of one metric."""
        return np.asarray(self._values[method][metric], dtype=np.float64)

    def summary(self) -> dict[str, dict[str, MetricSummary]]:
        """``{method: {metric: (mean, std, n)}}`` for every method and :data:`METRICS`."""
        return {m: {k: summarize(v) for k, v in per.items()} for m, per in self._values.items()}

    def rows(self) -> list[dict[str, object]]:
        """One row per (method, image): method, image_index and each metric (patch metrics averaged)."""
        return list(self._rows)
