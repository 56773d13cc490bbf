"""Figures of the paper (Fig. 2-4), training curves and a noise-simulation panel, as PNG.

Every function takes NumPy arrays in HU (masks in [0, 1]) and an output path, writes the PNG
atomically (refusing to overwrite unless ``overwrite=True``) and returns the path. Figures are
built with :class:`matplotlib.figure.Figure` and the Agg renderer: no pyplot, no display, no
global state. Layouts are placed by hand, so the PNG is exactly ``figsize x dpi`` pixels.

Boxes (zoom regions, ROIs) are ``(row, col, height, width)`` in pixels.
"""

from __future__ import annotations

import csv
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from vagan.errors import InputDataError
from vagan.evaluation.metrics import (
    FIELD,
    WINDOW,
    as_batch,
    as_image,
    psnr_hu,
    rmse,
    ssim_hu,
)
from vagan.io.atomic import atomic_file
from vagan.io.windowing import DISPLAY_RANGE, NETWORK_RANGE, HURange

log = logging.getLogger(__name__)

Box = tuple[int, int, int, int]
ZOOM_COLOR = "#ff3030"
TITLE_INCHES = 0.55  # room above each row of panels for a two-line title


# --------------------------------------------------------------------------- helpers


def _save(fig: Figure, path: Path, overwrite: bool) -> Path:
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"figure path must end in .png, got {path}")
    with atomic_file(path, overwrite=overwrite) as tmp:
        fig.savefig(tmp, format="png", dpi=fig.dpi)
    log.debug("wrote %s", path)
    return path


def _check_box(box: Box, shape: tuple[int, int], what: str) -> Box:
    r, c, h, w = (int(v) for v in box)
    if h < 1 or w < 1 or r < 0 or c < 0 or r + h > shape[0] or c + w > shape[1]:
        raise ValueError(f"{what} {box} (row, col, height, width) does not fit in an image of shape {shape}")
    return r, c, h, w


def centre_box(shape: tuple[int, int], fraction: float = 0.25) -> Box:
    """A box of ``fraction`` of the image size in each direction, centred."""
    h, w = max(1, int(shape[0] * fraction)), max(1, int(shape[1] * fraction))
    return (shape[0] - h) // 2, (shape[1] - w) // 2, h, w


def _grid_axes(fig: Figure, rows: int, cols: int, panel: float, header: float, top: float = 0.0) -> list[list[Axes]]:
    """Square image axes on a ``rows x cols`` grid below ``top`` inches, each with ``header`` inches above."""
    width, height = fig.get_size_inches()
    axes = []
    for i in range(rows):
        row = []
        for j in range(cols):
            left = j * panel / width
            bottom = 1.0 - (top + (i + 1) * (panel + header)) / height
            pad_x, pad_y = 0.02 * panel / width, 0.02 * panel / height
            row.append(fig.add_axes((left + pad_x, bottom + pad_y, 0.96 * panel / width, 0.96 * panel / height)))
        axes.append(row)
    return axes


def _show(ax: Axes, image: np.ndarray, vmin: float, vmax: float, cmap: str = "gray", zoomed: bool = False) -> None:
    """Draw an image; zoomed crops show pixels (nearest), full slices are antialiased when shrunk."""
    ax.imshow(image, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest" if zoomed else "antialiased")
    ax.set_xticks([])
    ax.set_yticks([])


def _rectangle(ax: Axes, box: Box, color: str = ZOOM_COLOR) -> None:
    r, c, h, w = box
    ax.add_patch(Rectangle((c - 0.5, r - 0.5), w, h, fill=False, edgecolor=color, linewidth=1.5))


def _frame(ax: Axes, color: str = ZOOM_COLOR) -> None:
    for spine in ax.spines.values():
        spine.set_edgecolor(color)
        spine.set_linewidth(2.0)


def _same_shape(images: Mapping[str, np.ndarray]) -> tuple[int, int]:
    shapes = {name: img.shape for name, img in images.items()}
    if len(set(shapes.values())) != 1:
        raise ValueError(f"images must all have one shape, got {shapes}")
    return next(iter(shapes.values()))


# --------------------------------------------------------------------------- Fig. 2/3


def comparison_figure(
    ldct_hu: np.ndarray,
    ndct_hu: np.ndarray,
    outputs: Mapping[str, np.ndarray],
    path: Path,
    *,
    zoom: Box | None = None,
    window: HURange = DISPLAY_RANGE,
    metrics: Literal["field", "window", "none"] = "field",
    title: str | None = None,
    panel_inches: float = 2.5,
    dpi: int = 150,
    overwrite: bool = False,
) -> Path:
    """Fig. 2/3: LDCT, NDCT and each method in the display window, with a zoomed region below.

    Each panel but NDCT is titled with its whole-slice PSNR/SSIM against NDCT under the
    ``metrics`` convention (``field``: HU [-1024, 3072] -> [0, 1], range 1; ``window``: HU
    clipped to [-160, 240], range 400). ``zoom`` defaults to the central quarter box.
    The PNG is ``(2 + len(outputs)) * panel_inches * dpi`` wide.
    """
    images = {"LDCT": as_image(ldct_hu, "LDCT"), "NDCT": as_image(ndct_hu, "NDCT")}
    for name, img in outputs.items():
        if name in images:
            raise ValueError(f"method name {name!r} clashes with the LDCT/NDCT panels; rename it")
        images[name] = as_image(img, name)
    shape = _same_shape(images)
    box = _check_box(zoom, shape, "zoom box") if zoom is not None else centre_box(shape)
    convention = {"field": FIELD, "window": WINDOW}.get(metrics)
    if convention is None and metrics != "none":
        raise ValueError(f"metrics must be 'field', 'window' or 'none', got {metrics!r}")

    cols, suptitle = len(images), 0.4
    fig = Figure(figsize=(cols * panel_inches, 2 * (panel_inches + TITLE_INCHES) + suptitle), dpi=dpi)
    axes = _grid_axes(fig, 2, cols, panel_inches, TITLE_INCHES, top=suptitle)
    ndct = images["NDCT"]
    r, c, h, w = box
    for j, (name, img) in enumerate(images.items()):
        _show(axes[0][j], img, window.lo, window.hi)
        _rectangle(axes[0][j], box)
        _show(axes[1][j], img[r : r + h, c : c + w], window.lo, window.hi, zoomed=True)
        _frame(axes[1][j])
        label = name
        if name == "NDCT":
            label += "\n(reference)"
        elif convention is not None:
            label += f"\n{psnr_hu(img, ndct, convention):.2f} dB / {ssim_hu(img, ndct, convention):.4f}"
        axes[0][j].set_title(label, fontsize=9)
    axes[1][0].set_title(f"zoom: rows {r}-{r + h - 1}, cols {c}-{c + w - 1}", fontsize=8, loc="left")
    head = title or "Comparison"
    unit = f"; PSNR [dB] / SSIM vs NDCT ({metrics} convention, whole slice)" if convention else ""
    fig.suptitle(f"{head}: window [{window.lo:g}, {window.hi:g}] HU{unit}", fontsize=9,
                 y=1.0 - 0.12 / fig.get_size_inches()[1], va="top")
    return _save(fig, path, overwrite)


# --------------------------------------------------------------------------- Fig. 4


def attention_figure(
    ldct_hu: np.ndarray,
    ndct_hu: np.ndarray,
    learned_mask: np.ndarray,
    output_hu: np.ndarray,
    path: Path,
    *,
    target_mask: np.ndarray | None = None,
    mode: Literal["signed", "abs"] = "signed",
    window: HURange = DISPLAY_RANGE,
    residual_limit_hu: float | None = None,
    panel_inches: float = 2.5,
    dpi: int = 150,
    overwrite: bool = False,
) -> Path:
    """Fig. 4: per case (row) LDCT x, residual y - x, target M (eq. 5), learned M_T, output.

    Inputs are ``(H, W)`` for one case or ``(N, H, W)`` for N rows. The target M is computed
    from the normalised images with :func:`vagan.data.attention_target.attention_target`
    (``mode``) unless given. The residual is shown in a blue-red map over
    ``+-residual_limit_hu`` (default: the 99th percentile of ``|y - x|``).
    """
    x = as_batch(ldct_hu, "LDCT")
    y = as_batch(ndct_hu, "NDCT")
    m_t = as_batch(learned_mask, "learned mask")
    out = as_batch(output_hu, "output")
    if target_mask is None:
        from vagan.data.attention_target import attention_target

        x_unit, y_unit = torch.from_numpy(NETWORK_RANGE.to_unit(x)), torch.from_numpy(NETWORK_RANGE.to_unit(y))
        target = attention_target(x_unit, y_unit, mode).numpy()
    else:
        target = as_batch(target_mask, "target mask")
    arrays = {"LDCT": x, "NDCT": y, "learned mask": m_t, "output": out, "target mask": target}
    shapes = {k: v.shape for k, v in arrays.items()}
    if len(set(shapes.values())) != 1:
        raise ValueError(f"attention figure inputs must share one shape, got {shapes}")
    residual = y - x
    limit = float(residual_limit_hu) if residual_limit_hu is not None else float(np.percentile(np.abs(residual), 99))
    limit = max(limit, 1e-6)

    rows = x.shape[0]
    fig = Figure(figsize=(5 * panel_inches, rows * (panel_inches + TITLE_INCHES)), dpi=dpi)
    axes = _grid_axes(fig, rows, 5, panel_inches, TITLE_INCHES)
    titles = (
        "LDCT x",
        f"residual y - x\n[-{limit:.0f}, {limit:.0f}] HU",
        f"target M (eq. 5, {mode})",
        "learned $M_T$ [0, 1]",
        "output $\\hat{y}$",
    )
    for i in range(rows):
        _show(axes[i][0], x[i], window.lo, window.hi)
        _show(axes[i][1], residual[i], -limit, limit, cmap="coolwarm")
        _show(axes[i][2], target[i], 0.0, 1.0)
        _show(axes[i][3], m_t[i], 0.0, 1.0)
        _show(axes[i][4], out[i], window.lo, window.hi)
        if i == 0:
            for ax, text in zip(axes[i], titles, strict=True):
                ax.set_title(text, fontsize=9)
    return _save(fig, path, overwrite)


# --------------------------------------------------------------------------- training curves

Series = Mapping[str, Sequence[tuple[float, float]]]


def read_curves_csv(path: Path) -> dict[str, list[tuple[float, float]]]:
    """Read ``step,name,value`` rows (an optional ``stage`` column prefixes names as ``stage/name``)."""
    path = Path(path)
    series: dict[str, list[tuple[float, float]]] = {}
    try:
        with path.open(newline="") as handle:
            reader = csv.DictReader(handle)
            missing = {"step", "name", "value"} - set(reader.fieldnames or ())
            if missing:
                raise InputDataError(
                    f"{path}: training-curve CSV lacks columns {sorted(missing)}; expected a header "
                    "with step,name,value (and optionally stage)"
                )
            for line, row in enumerate(reader, start=2):
                key = f"{row['stage']}/{row['name']}" if row.get("stage") else row["name"]
                try:
                    series.setdefault(key, []).append((float(row["step"]), float(row["value"])))
                except (TypeError, ValueError) as exc:
                    raise InputDataError(f"{path} line {line}: step/value must be numbers, got {row}") from exc
    except FileNotFoundError as exc:
        raise InputDataError(f"training-curve CSV {path} does not exist") from exc
    return series


def _ema(values: np.ndarray, alpha: float) -> np.ndarray:
    out = np.empty_like(values)
    acc = values[0]
    for i, v in enumerate(values):
        acc = alpha * acc + (1.0 - alpha) * v if i else v
        out[i] = acc
    return out


def training_curves_figure(
    source: Path | Series,
    path: Path,
    *,
    names: Sequence[str] | None = None,
    smoothing: float = 0.0,
    log_y: bool = False,
    ncols: int = 3,
    panel_inches: tuple[float, float] = (4.0, 2.8),
    dpi: int = 100,
    overwrite: bool = False,
) -> Path:
    """One subplot per series from a CSV (:func:`read_curves_csv`) or ``{name: [(step, value), ...]}``.

    ``smoothing`` in [0, 1) draws an exponential moving average over the raw (faint) curve.
    """
    series = read_curves_csv(source) if isinstance(source, (str, Path)) else {k: list(v) for k, v in source.items()}
    if names is not None:
        unknown = [n for n in names if n not in series]
        if unknown:
            raise ValueError(f"unknown series {unknown}; available: {sorted(series)}")
        series = {n: series[n] for n in names}
    series = {k: v for k, v in series.items() if v}
    if not series:
        raise ValueError("no training-curve values to plot")
    if not 0.0 <= smoothing < 1.0:
        raise ValueError(f"smoothing must be in [0, 1), got {smoothing}")
    cols = max(1, min(ncols, len(series)))
    rows = math.ceil(len(series) / cols)
    fig = Figure(figsize=(cols * panel_inches[0], rows * panel_inches[1]), dpi=dpi)
    grid = fig.add_gridspec(rows, cols, left=0.07, right=0.98, bottom=0.5 / fig.get_size_inches()[1],
                            top=1.0 - 0.35 / fig.get_size_inches()[1], hspace=0.6, wspace=0.3)
    for k, (name, points) in enumerate(series.items()):
        ax = fig.add_subplot(grid[k // cols, k % cols])
        pts = np.asarray(sorted(points), dtype=np.float64)
        steps, values = pts[:, 0], pts[:, 1]
        if smoothing > 0:
            ax.plot(steps, values, color="C0", alpha=0.3, linewidth=0.8)
            ax.plot(steps, _ema(values, smoothing), color="C0", linewidth=1.5)
        else:
            ax.plot(steps, values, color="C0", linewidth=1.2)
        if log_y and np.all(values > 0):
            ax.set_yscale("log")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    return _save(fig, path, overwrite)


# --------------------------------------------------------------------------- noise panel


def roi_std(image: np.ndarray, roi: Box) -> float:
    """Standard deviation (ddof=1) of ``image`` inside ``roi`` = (row, col, height, width)."""
    img = as_image(image)
    r, c, h, w = _check_box(roi, img.shape, "ROI")
    patch = img[r : r + h, c : c + w]
    return float(patch.std(ddof=1)) if patch.size > 1 else 0.0


def noise_figure(
    ndct_hu: np.ndarray,
    ldct_hu: np.ndarray,
    path: Path,
    *,
    roi: Box | None = None,
    window: HURange = DISPLAY_RANGE,
    diff_limit_hu: float | None = None,
    label: str = "LDCT",
    panel_inches: float = 3.0,
    dpi: int = 100,
    overwrite: bool = False,
) -> Path:
    """NDCT | LDCT | LDCT - NDCT, with the ROI drawn and the noise std inside it in each title.

    ``roi`` should lie in a uniform region (default: a central box of 1/8 of the image size).
    The difference is shown over ``+-diff_limit_hu`` (default 3x its ROI std).
    """
    ndct, ldct = as_image(ndct_hu, "NDCT"), as_image(ldct_hu, label)
    if ndct.shape != ldct.shape:
        raise ValueError(f"NDCT and {label} shapes differ: {ndct.shape} vs {ldct.shape}")
    box = _check_box(roi, ndct.shape, "ROI") if roi is not None else centre_box(ndct.shape, 0.125)
    diff = ldct - ndct
    std_diff = roi_std(diff, box)
    limit = float(diff_limit_hu) if diff_limit_hu is not None else max(3.0 * std_diff, 1.0)
    fig = Figure(figsize=(3 * panel_inches, panel_inches + TITLE_INCHES), dpi=dpi)
    axes = _grid_axes(fig, 1, 3, panel_inches, TITLE_INCHES)[0]
    _show(axes[0], ndct, window.lo, window.hi)
    _show(axes[1], ldct, window.lo, window.hi)
    _show(axes[2], diff, -limit, limit)
    titles = (
        f"NDCT\nROI std {roi_std(ndct, box):.1f} HU",
        f"{label}\nROI std {roi_std(ldct, box):.1f} HU",
        f"{label} - NDCT [-{limit:.0f}, {limit:.0f}] HU\nROI std {std_diff:.1f} HU, RMSE {rmse(ldct, ndct):.1f} HU",
    )
    for ax, text in zip(axes, titles, strict=True):
        _rectangle(ax, box, color="#ffd000")
        ax.set_title(text, fontsize=9)
    return _save(fig, path, overwrite)
