"""Figures: PNGs of the expected pixel size, atomic and non-overwriting, sensible content."""

from __future__ import annotations

from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest

from vagan.errors import InputDataError, OutputExistsError
from vagan.evaluation.plots import (
    attention_figure,
    comparison_figure,
    noise_figure,
    read_curves_csv,
    roi_std,
    training_curves_figure,
)


def phantom(n: int = 48) -> np.ndarray:
    yy, xx = np.mgrid[:n, :n] / n - 0.5
    img = np.full((n, n), -1000.0)
    img[(xx / 0.42) ** 2 + (yy / 0.32) ** 2 < 1] = 40.0
    img[((xx - 0.12) / 0.08) ** 2 + (yy / 0.08) ** 2 < 1] = 200.0
    return img


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) in pixels."""
    h, w = mpimg.imread(path).shape[:2]
    return w, h


def test_comparison_figure_size_and_overwrite(tmp_path: Path, np_rng: np.random.Generator) -> None:
    ndct = phantom()
    ldct = ndct + np_rng.normal(0, 40, ndct.shape)
    outputs = {"BM3D": ndct + np_rng.normal(0, 10, ndct.shape), "VAGAN": ndct + 2.0}
    path = comparison_figure(ldct, ndct, outputs, tmp_path / "fig2.png", zoom=(10, 12, 16, 16), dpi=40)
    assert path == tmp_path / "fig2.png"
    w, h = png_size(path)
    assert (w, h) == (400, round((2 * (2.5 + 0.55) + 0.4) * 40))
    with pytest.raises(OutputExistsError):
        comparison_figure(ldct, ndct, outputs, path, dpi=40)
    comparison_figure(ldct, ndct, outputs, path, dpi=40, overwrite=True, metrics="window")
    assert not list(tmp_path.glob(".*tmp*"))  # no leftovers of the atomic write
    with pytest.raises(ValueError, match="does not fit"):
        comparison_figure(ldct, ndct, outputs, tmp_path / "bad.png", zoom=(40, 40, 16, 16))
    assert not (tmp_path / "bad.png").exists()


def test_comparison_figure_shows_the_window(tmp_path: Path) -> None:
    """Air (-1000 HU) is black and bone above 240 HU white in the display window."""
    ndct = phantom()
    path = comparison_figure(ndct, ndct, {}, tmp_path / "w.png", zoom=(0, 0, 8, 8), dpi=40, metrics="none")
    rgb = mpimg.imread(path)[..., :3]
    assert rgb.min() == pytest.approx(0.0) and rgb.max() == pytest.approx(1.0)


def test_attention_figure_rows(tmp_path: Path, np_rng: np.random.Generator) -> None:
    y = np.stack([phantom(), phantom()])
    x = y + np_rng.normal(0, 30, y.shape)
    learned = np.clip(np.abs(x - y) / 60, 0, 1)
    path = attention_figure(x, y, learned, y, tmp_path / "fig4.png", dpi=40)
    assert png_size(path) == (500, round(2 * (2.5 + 0.55) * 40))
    one = attention_figure(x[0], y[0], learned[0], y[0], tmp_path / "one.png", dpi=40, mode="abs")
    assert png_size(one)[1] == round((2.5 + 0.55) * 40)
    with pytest.raises(ValueError, match="share one shape"):
        attention_figure(x, y, learned[:1], y, tmp_path / "bad.png")


def test_training_curves_from_csv_and_dict(tmp_path: Path) -> None:
    csv_path = tmp_path / "metrics.csv"
    rows = ["stage,epoch,step,name,value"]
    rows += [f"psnr,0,{s},loss_ms,{1.0 / (s + 1):.6g}" for s in range(20)]
    rows += [f"gan,1,{s},d_loss,{1.3 + 0.01 * s:.6g}" for s in range(20)]
    csv_path.write_text("\n".join(rows) + "\n")
    series = read_curves_csv(csv_path)
    assert set(series) == {"psnr/loss_ms", "gan/d_loss"} and len(series["gan/d_loss"]) == 20
    path = training_curves_figure(csv_path, tmp_path / "curves.png", dpi=50, smoothing=0.5, log_y=True)
    assert png_size(path) == (400, 140)
    path2 = training_curves_figure({"a": [(0, 1.0), (1, 0.5)]}, tmp_path / "c2.png", dpi=50)
    assert png_size(path2) == (200, 140)
    (tmp_path / "bad.csv").write_text("step,value\n1,2\n")
    with pytest.raises(InputDataError, match="name"):
        read_curves_csv(tmp_path / "bad.csv")


def test_noise_figure_and_roi_std(tmp_path: Path, np_rng: np.random.Generator) -> None:
    ndct = phantom(64)
    ldct = ndct + np_rng.normal(0, 25, ndct.shape)
    assert roi_std(ldct - ndct, (24, 24, 16, 16)) == pytest.approx(25, rel=0.2)
    assert roi_std(ndct, (30, 20, 4, 4)) == 0.0
    path = noise_figure(ndct, ldct, tmp_path / "noise.png", roi=(24, 24, 16, 16), dpi=40)
    assert png_size(path) == (360, round((3.0 + 0.55) * 40))
    with pytest.raises(ValueError, match=".png"):
        noise_figure(ndct, ldct, tmp_path / "noise.jpg")
