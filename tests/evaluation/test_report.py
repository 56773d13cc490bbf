"""Table II and the Markdown/HTML report."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from vagan.errors import InputDataError, OutputExistsError
from vagan.evaluation.fid import FIDResult
from vagan.evaluation.metrics import MetricAccumulator, MetricSummary
from vagan.evaluation.plots import noise_figure
from vagan.evaluation.report import (
    ReportFigure,
    ReportSection,
    ReportTable,
    report_metadata,
    write_report,
)
from vagan.evaluation.table import format_mean_std, format_summary, table_ii


def _summary() -> dict[str, dict[str, MetricSummary]]:
    target = np.full((96, 96), -1000.0)
    target[10:86, 8:90] = 40.0
    acc = MetricAccumulator(["LDCT", "VAGAN"])
    for e in (40.0, 50.0):
        acc.update("LDCT", target + e, target)
        acc.update("VAGAN", target + e / 5, target)
    return acc.summary()


def test_format_mean_std() -> None:
    assert format_mean_std(41.93174, 1.2, 2) == "41.93 ± 1.20"
    assert format_mean_std(float("inf"), float("nan"), 2) == "inf"
    # one value has no spread: the mean alone, not "± 0.00"
    assert format_summary(MetricSummary(41.93174, 0.0, 1), 2) == "41.93"
    assert format_summary(MetricSummary(41.93174, 0.5, 2), 2) == "41.93 ± 0.50"


def test_table_ii_rows_and_columns() -> None:
    fid = {
        "LDCT": FIDResult(7.0687, "random-ct-untrained(seed=0)", 2, 2, 240),
        "VAGAN": [
            FIDResult(0.5027, "random-ct-untrained(seed=0)", 2, 2, 240),
            FIDResult(1.5, "vgg19", 3000, 3000, 512),
        ],
    }
    table = table_ii(_summary(), fid=fid, timing_ms={"VAGAN": MetricSummary(80.0, 2.5, 10), "LDCT": 0.0})
    assert table.columns[0] == "Method"
    assert "FID [random-ct-untrained(seed=0)]" in table.columns and "FID [vgg19]" in table.columns
    assert table.columns[-1] == "ms / 512² slice"
    ldct, vagan = table.rows
    assert ldct[0] == "LDCT" and vagan[0] == "VAGAN"
    # PSNR patch of a uniform 40 / 50 HU error: 20 log10(4096 / e)
    expected = np.array([20 * np.log10(4096 / 40)] * 4 + [20 * np.log10(4096 / 50)] * 4)
    assert ldct[1] == f"{expected.mean():.2f} ± {expected.std(ddof=1):.2f}"
    assert ldct[5] == "45.0 ± 7.1"  # RMSE HU of 40 and 50
    assert ldct[6] == "7.069†" and ldct[7] == "–"
    assert vagan[6] == "0.503†" and vagan[7] == "1.500"
    assert vagan[-1] == "80.0 ± 2.5" and ldct[-1] == "0.0"
    assert "only the ranking" in table.caption and "fewer than 2048" in table.caption


def test_table_ii_rejects_unknown_metric() -> None:
    with pytest.raises(ValueError, match="unknown metrics"):
        table_ii(_summary(), metrics=("psnr_everything",))
    with pytest.raises(ValueError, match="cells"):
        ReportTable("t", ["a", "b"], [["1"]])


class _Checker(HTMLParser):
    """Checks that tags nest properly (void tags aside) and collects text and image sources."""

    VOID = {"meta", "img", "br", "hr", "link"}

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.text: list[str] = []
        self.images: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img":
            self.images.append(dict(attrs)["src"] or "")
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes {self.stack[-1:]}"
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_write_report_markdown_and_html(tmp_path: Path, np_rng: np.random.Generator) -> None:
    ndct = np.full((32, 32), 40.0)
    outside = noise_figure(ndct, ndct + np_rng.normal(0, 20, ndct.shape), tmp_path / "src" / "noise.png", dpi=30)
    out_dir = tmp_path / "report"
    inside = noise_figure(ndct, ndct + 1.0, out_dir / "figs" / "inside.png", dpi=30)
    table = table_ii(_summary(), fid={"VAGAN": FIDResult(0.5, "random-ct-untrained(seed=0)", 2, 2, 240)})
    sections = [ReportSection("Notes <script>", "LDCT < NDCT & more\n\nsecond paragraph")]
    figures = [ReportFigure(outside, caption="Noise <ROI>", title="Simulation"), ReportFigure(inside)]
    meta = report_metadata(device="cpu", dataset="synthetic phantom")
    paths = write_report(out_dir, "Eval <1>", sections, [table], figures, meta)

    md = paths.markdown.read_text(encoding="utf-8")
    assert md.startswith("# Eval <1>\n")
    assert "| VAGAN | " in md and " ± " in md
    row = next(line for line in md.splitlines() if line.startswith("| LDCT |"))
    assert row.count("±") == 5
    assert "![Noise <ROI>](figures/noise.png)" in md and "(figs/inside.png)" in md
    assert "| dataset | synthetic phantom |" in md

    page = paths.html.read_text(encoding="utf-8")
    assert "<script>" not in page and "Notes &lt;script&gt;" in page
    assert "LDCT &lt; NDCT &amp; more" in page and "Eval &lt;1&gt;" in page
    checker = _Checker()
    checker.feed(page)
    checker.close()
    assert checker.stack == []
    assert checker.images == ["figures/noise.png", "figs/inside.png"]
    assert (out_dir / "figures" / "noise.png").is_file()
    assert paths.figures == (out_dir / "figures" / "noise.png", out_dir / "figs" / "inside.png")
    assert "±" in "".join(checker.text)

    with pytest.raises(OutputExistsError):
        write_report(out_dir, "again", sections, [table], figures, meta)
    write_report(out_dir, "again", sections, [table], figures, meta, overwrite=True)
    assert paths.markdown.read_text(encoding="utf-8").startswith("# again")


def test_report_missing_figure_and_default_metadata(tmp_path: Path) -> None:
    with pytest.raises(InputDataError, match="does not exist"):
        write_report(tmp_path / "r", "t", figures=[ReportFigure(tmp_path / "nope.png")])
    assert not (tmp_path / "r" / "report.md").exists()
    meta = report_metadata()
    assert {"date", "vagan", "torch", "device"} <= set(meta)
