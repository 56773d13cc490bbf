"""The figures of an evaluation run (Fig. 2-4 and training curves), placed in a report folder.

Thin glue over :mod:`vagan.evaluation.plots`: it chooses which test slices to show, where
to zoom, names the PNG files and writes the captions. Images are HU arrays ``(H, W)``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from vagan.errors import ConfigError
from vagan.evaluation.plots import (
    Box,
    attention_figure,
    comparison_figure,
    read_curves_csv,
    training_curves_figure,
)
from vagan.evaluation.report import ReportFigure
from vagan.io.windowing import BODY_THRESHOLD_HU, DISPLAY_WINDOW_TEXT
from vagan.training.run_folder import METRICS_CSV

if TYPE_CHECKING:
    from vagan.evaluation.inputs import EvaluationData, Method

log = logging.getLogger(__name__)

ZOOM_FRACTION = 0.25  # auto zoom box: a quarter of the image size in each direction


def slug(name: str) -> str:
    """A file-name-safe form of a method name: ``'vagan/gan'`` -> ``'vagan-gan'``."""
    text = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.")
    return text or "method"


def figure_indices(n: int, count: int) -> list[int]:
    """``count`` distinct slice indices spread evenly over ``n`` slices (interior points first)."""
    if n <= 0 or count <= 0:
        return []
    count = min(count, n)
    picks = [min(n - 1, round((i + 1) * n / (count + 1))) for i in range(count)]
    out: list[int] = []
    for p in picks:
        while p in out:
            p = (p + 1) % n
        out.append(p)
    return out


def auto_zoom(ndct_hu: np.ndarray, fraction: float = ZOOM_FRACTION, body_hu: float = BODY_THRESHOLD_HU) -> Box:
    """A box of ``fraction`` of the image size centred on the body's bounding box (clamped inside).

    Falls back to the image centre when no pixel is above ``body_hu``.
    """
    img = np.asarray(ndct_hu)
    rows, cols = img.shape
    h, w = max(1, int(rows * fraction)), max(1, int(cols * fraction))
    body = img > body_hu
    if body.any():
        r_idx, c_idx = np.nonzero(body.any(axis=1))[0], np.nonzero(body.any(axis=0))[0]
        cr, cc = (r_idx[0] + r_idx[-1] + 1) // 2, (c_idx[0] + c_idx[-1] + 1) // 2
    else:
        cr, cc = rows // 2, cols // 2
    r0 = int(min(max(cr - h // 2, 0), rows - h))
    c0 = int(min(max(cc - w // 2, 0), cols - w))
    return r0, c0, h, w


def write_comparison_figures(
    fig_dir: Path,
    cases: Sequence[tuple[str, np.ndarray, np.ndarray, Mapping[str, np.ndarray]]],
    zoom: Box | None = None,
) -> list[ReportFigure]:
    """Fig. 2/3 for each case ``(label, ldct_hu, ndct_hu, {method: output_hu})``."""
    figures = []
    for k, (label, ldct, ndct, outputs) in enumerate(cases, start=1):
        box = zoom if zoom is not None else auto_zoom(ndct)
        path = comparison_figure(ldct, ndct, outputs, fig_dir / f"comparison_{k}.png", zoom=box,
                                 title=f"Test slice {label}")
        r, c, h, w = box
        figures.append(ReportFigure(
            path, title=f"Fig. 2/3-style comparison {k}: {label}",
            caption=(f"{label}: LDCT, NDCT and every method in the display window {DISPLAY_WINDOW_TEXT}; the red box "
                     f"(rows {r}-{r + h - 1}, cols {c}-{c + w - 1}) is zoomed below. Titles: whole-slice "
                     "PSNR [dB] / SSIM against NDCT, field convention.")))
    return figures


def write_attention_figure(
    fig_dir: Path,
    method: str,
    labels: Sequence[str],
    ldct: np.ndarray,
    ndct: np.ndarray,
    learned: np.ndarray,
    output: np.ndarray,
    mode: str,
) -> ReportFigure:
    """Fig. 4 for one attentive model: one row per case, ``(N, H, W)`` arrays."""
    path = attention_figure(ldct, ndct, learned, output, fig_dir / f"attention_{slug(method)}.png", mode=mode)
    return ReportFigure(
        path, title=f"Fig. 4-style attention: {method}",
        caption=(f"{method} on {', '.join(labels)}: LDCT x, residual y - x, target M of eq. 5 ({mode} mode, the "
                 "model's training mode), the learned attention M_T and the output."))


def write_curves_figure(fig_dir: Path, method: str, csv_path: Path) -> ReportFigure | None:
    """Training curves of a run folder's ``logs/metrics.csv`` (``None`` if the log is empty)."""
    series = read_curves_csv(csv_path)
    series = {k: v for k, v in series.items() if v}
    if not series:
        log.warning("training log %s is empty; no curves for %s", csv_path, method)
        return None
    longest = max(len(v) for v in series.values())
    path = training_curves_figure(series, fig_dir / f"curves_{slug(method)}.png",
                                  smoothing=0.6 if longest > 50 else 0.0)
    return ReportFigure(path, title=f"Training curves: {method}",
                        caption=f"Every value logged in {csv_path} (stage/name), against the training step.")


def write_figures(
    fig_dir: Path,
    methods: Sequence[Method],
    test: EvaluationData,
    outputs: Mapping[str, Mapping[int, np.ndarray]],
    attention: Mapping[str, Mapping[int, np.ndarray]],
    keep: Sequence[int],
    zoom: Box | None = None,
) -> list[ReportFigure]:
    """All figures of an evaluation: Fig. 2/3 per kept slice, Fig. 4 per attentive model, curves per run.

    ``methods`` are :class:`vagan.evaluation.inputs.Method`, ``test`` an ``EvaluationData``; ``outputs``
    and ``attention`` hold each method's HU output / M_T for the kept slice indices.
    """
    if zoom is not None:
        r, c, h, w = zoom
        for rows, cols in test.shapes:
            if r + h > rows or c + w > cols:
                raise ConfigError(f"zoom {zoom} (row, col, height, width) does not fit the {rows}x{cols} test slices")
    shown = [m for m in methods if m.spec.kind not in ("ldct", "ndct")]  # LDCT and NDCT have their own panels
    pairs = test.pairs
    cases = [(test.label(i), pairs[i].ldct, pairs[i].ndct, {m.name: outputs[m.name][i] for m in shown}) for i in keep]
    figures = write_comparison_figures(fig_dir, cases, zoom)
    if keep and len({pairs[i].ndct.shape for i in keep}) == 1:  # Fig. 4 stacks its rows
        for m in methods:
            if m.has_attention:
                figures.append(write_attention_figure(
                    fig_dir, m.name, [test.label(i) for i in keep],
                    np.stack([pairs[i].ldct for i in keep]), np.stack([pairs[i].ndct for i in keep]),
                    np.stack([attention[m.name][i] for i in keep]), np.stack([outputs[m.name][i] for i in keep]),
                    m.model.config.data.attention_mode))
    for m in methods:
        if m.run_dir is not None:
            fig = write_curves_figure(fig_dir, m.name, m.run_dir / METRICS_CSV)
            if fig is not None:
                figures.append(fig)
    return figures
