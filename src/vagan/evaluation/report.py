"""Markdown and HTML reports: metadata, tables, figures (PNG next to the report), free text.

The HTML is one self-contained file (inline CSS, no scripts, no external assets) except the
PNG figures, linked by relative paths. All text is HTML-escaped; section text is plain text
in HTML (blank lines separate paragraphs) and written verbatim into the Markdown.
"""

from __future__ import annotations

import datetime as _dt
import html
import logging
import platform
import shutil
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from vagan.errors import InputDataError, OutputExistsError
from vagan.io.atomic import atomic_file

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReportSection:
    """A titled block of free text (Markdown in the .md; plain paragraphs in the .html)."""

    title: str
    text: str


@dataclass(frozen=True)
class ReportTable:
    """A table of preformatted cells; ``rows`` must have ``len(columns)`` cells each."""

    title: str
    columns: Sequence[str]
    rows: Sequence[Sequence[str]]
    caption: str = ""

    def __post_init__(self) -> None:
        for i, row in enumerate(self.rows):
            if len(row) != len(self.columns):
                raise ValueError(
                    f"table {self.title!r} row {i} has {len(row)} cells, "
                    f"expected {len(self.columns)} ({list(self.columns)})"
                )


@dataclass(frozen=True)
class ReportFigure:
    """A PNG to show; files outside the report folder are copied into ``<out_dir>/figures/``."""

    path: Path
    caption: str = ""
    title: str = ""


@dataclass(frozen=True)
class ReportPaths:
    """The files :func:`write_report` wrote."""

    markdown: Path
    html: Path
    figures: tuple[Path, ...] = field(default_factory=tuple)


def report_metadata(
    device: str | None = None, dataset: str = "", extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Date (UTC), versions (vagan, torch, numpy, Python), platform, device and dataset description."""
    import numpy
    import torch

    import vagan

    if device is None:
        if torch.cuda.is_available():
            device = torch.cuda.get_device_name(0)
        else:
            device = f"cpu ({platform.processor() or platform.machine()})"
    meta = {
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "vagan": vagan.__version__,
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "device": device,
    }
    if dataset:
        meta["dataset"] = dataset
    meta.update(extra or {})
    return meta


# --------------------------------------------------------------------------- figures


def _place_figure(fig: ReportFigure, out_dir: Path) -> str:
    """Relative POSIX path of the figure inside ``out_dir`` (copying it in when it lies outside)."""
    src = Path(fig.path)
    if not src.is_absolute() and not src.exists() and (out_dir / src).exists():
        src = out_dir / src
    if not src.is_file():
        raise InputDataError(f"report figure {fig.path} does not exist; write the figure before the report")
    src = src.resolve()
    root = out_dir.resolve()
    if root not in src.parents:
        dest = root / "figures" / src.name
        with atomic_file(dest, overwrite=True) as tmp:
            shutil.copyfile(src, tmp)
        src = dest
    return src.relative_to(root).as_posix()


# --------------------------------------------------------------------------- Markdown


def _md_cell(text: str) -> str:
    return str(text).replace("\\", "\\\\").replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def render_markdown(
    title: str,
    sections: Sequence[ReportSection],
    tables: Sequence[ReportTable],
    figures: Sequence[tuple[ReportFigure, str]],
    metadata: Mapping[str, str],
) -> str:
    """The Markdown report; ``figures`` pairs each figure with its relative path."""
    out = [f"# {title}", ""]
    if metadata:
        out += ["| | |", "|---|---|"]
        out += [f"| {_md_cell(k)} | {_md_cell(v)} |" for k, v in metadata.items()]
        out.append("")
    for table in tables:
        out += [f"## {table.title}", ""]
        out.append("| " + " | ".join(_md_cell(c) for c in table.columns) + " |")
        out.append("|" + "|".join("---" for _ in table.columns) + "|")
        out += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in table.rows]
        out.append("")
        if table.caption:
            out += [table.caption, ""]
    for fig, rel in figures:
        if fig.title:
            out += [f"## {fig.title}", ""]
        alt = _md_cell(fig.caption or fig.title or Path(rel).stem).replace("[", "(").replace("]", ")")
        out += [f"![{alt}]({quote(rel)})", ""]
        if fig.caption:
            out += [f"*{fig.caption}*", ""]
    for section in sections:
        out += [f"## {section.title}", "", section.text.strip(), ""]
    return "\n".join(out).rstrip() + "\n"


# --------------------------------------------------------------------------- HTML

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 1200px;
       padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.92em; }
th, td { border: 1px solid #bbb; padding: 0.3em 0.6em; text-align: right; }
th { background: #eee; } td:first-child, th:first-child { text-align: left; }
table.meta td { text-align: left; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption, caption { color: #555; font-size: 0.9em; caption-side: bottom; text-align: left; padding-top: 0.3em; }
"""


def _esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def _paragraphs(text: str) -> str:
    blocks = [b.strip() for b in text.strip().split("\n\n") if b.strip()]
    return "\n".join(f"<p>{'<br>'.join(_esc(line) for line in b.splitlines())}</p>" for b in blocks)


def render_html(
    title: str,
    sections: Sequence[ReportSection],
    tables: Sequence[ReportTable],
    figures: Sequence[tuple[ReportFigure, str]],
    metadata: Mapping[str, str],
) -> str:
    """The HTML report (self-contained but for the PNG files)."""
    out = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        f"<title>{_esc(title)}</title>",
        f"<style>{_CSS}</style>",
        "</head>",
        "<body>",
        f"<h1>{_esc(title)}</h1>",
    ]
    if metadata:
        out.append('<table class="meta">')
        out += [f"<tr><th>{_esc(k)}</th><td>{_esc(v)}</td></tr>" for k, v in metadata.items()]
        out.append("</table>")
    for table in tables:
        out.append(f"<h2>{_esc(table.title)}</h2>")
        out.append("<table>")
        if table.caption:
            out.append(f"<caption>{_esc(table.caption)}</caption>")
        out.append("<thead><tr>" + "".join(f"<th>{_esc(c)}</th>" for c in table.columns) + "</tr></thead>")
        out.append("<tbody>")
        out += ["<tr>" + "".join(f"<td>{_esc(c)}</td>" for c in row) + "</tr>" for row in table.rows]
        out.append("</tbody></table>")
    for fig, rel in figures:
        if fig.title:
            out.append(f"<h2>{_esc(fig.title)}</h2>")
        alt = fig.caption or fig.title or Path(rel).stem
        out.append(f'<figure><img src="{_esc(quote(rel))}" alt="{_esc(alt)}">')
        if fig.caption:
            out.append(f"<figcaption>{_esc(fig.caption)}</figcaption>")
        out.append("</figure>")
    for section in sections:
        out.append(f"<h2>{_esc(section.title)}</h2>")
        out.append(_paragraphs(section.text))
    out += ["</body>", "</html>"]
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- writing


def write_report(
    out_dir: Path,
    title: str,
    sections: Sequence[ReportSection] = (),
    tables: Sequence[ReportTable] = (),
    figures: Sequence[ReportFigure] = (),
    metadata: Mapping[str, str] | None = None,
    *,
    stem: str = "report",
    overwrite: bool = False,
) -> ReportPaths:
    """Write ``<out_dir>/<stem>.md`` and ``<stem>.html`` atomically; figures are linked relatively.

    ``metadata`` defaults to :func:`report_metadata`. Existing report files are replaced only
    with ``overwrite=True``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    md_path, html_path = out_dir / f"{stem}.md", out_dir / f"{stem}.html"
    for path in (md_path, html_path):
        if path.exists() and not overwrite:
            raise OutputExistsError(f"output {path} exists; pass --overwrite to replace it")
    meta = dict(report_metadata() if metadata is None else metadata)
    placed = [(fig, _place_figure(fig, out_dir)) for fig in figures]
    with atomic_file(md_path, overwrite=overwrite) as tmp:
        tmp.write_text(render_markdown(title, sections, tables, placed, meta), encoding="utf-8")
    with atomic_file(html_path, overwrite=overwrite) as tmp:
        tmp.write_text(render_html(title, sections, tables, placed, meta), encoding="utf-8")
    log.debug("wrote %s and %s", md_path, html_path)
    return ReportPaths(md_path, html_path, tuple(out_dir / rel for _, rel in placed))
