"""A report on training runs: per run its preset and stages, the loss and validation curves, and
the validation PSNR/SSIM at the end of each stage (``vagan report``)."""

from __future__ import annotations

import csv
from pathlib import Path

from vagan.errors import InputDataError
from vagan.evaluation.metrics import SSIM_DESCRIPTION
from vagan.evaluation.plots import training_curves_figure
from vagan.evaluation.report import (
    ReportFigure,
    ReportPaths,
    ReportSection,
    ReportTable,
    report_metadata,
    write_report,
)
from vagan.io.atomic import atomic_dir
from vagan.training.run_folder import (
    CONFIG_FILE,
    METRICS_CSV,
    is_run_folder,
    load_run_config,
)
from vagan.training.validation import VALIDATION_KEYS


def _last_values(csv_path: Path) -> dict[str, dict[str, tuple[int, float]]]:
    """``{stage: {name: (step, value)}}`` of the last logged value of every name."""
    last: dict[str, dict[str, tuple[int, float]]] = {}
    with csv_path.open(newline="") as handle:
        for row in csv.DictReader(handle):
            last.setdefault(row["stage"], {})[row["name"]] = (int(row["step"]), float(row["value"]))
    return last


def _describe(run: Path) -> str:
    cfg = load_run_config(run)
    stages = ", ".join(f"{s.name} (lr {s.lr:g}, batch {s.batch_size}, "
                       + (f"{s.max_steps} steps" if s.max_steps else f"{s.epochs} epochs")
                       + (f" or {s.max_minutes:g} min, whichever came first)" if s.max_minutes else ")")
                       for s in cfg.stages)
    m = cfg.model
    text = (f"Preset `{cfg.preset}`: generator {m.generator} ({m.generator_features} features), discriminator "
            f"{m.discriminator}; stages: {stages}. Data: {cfg.data.root}.")
    return text


def _labels(runs: list[Path]) -> list[str]:
    """A distinct name per run: the folder name, with as many parent folders as it takes to tell them apart."""
    resolved = [run.resolve() for run in runs]
    twice = sorted({str(r) for r in resolved if resolved.count(r) > 1})
    if twice:
        raise InputDataError(f"run {twice[0]} is given twice; give each run once")
    for depth in range(1, max(len(r.parts) for r in resolved) + 1):
        labels = ["-".join(r.parts[-depth:]) for r in resolved]
        if len(set(labels)) == len(labels):
            return labels
    return [f"{r.name}-{i + 1}" for i, r in enumerate(resolved)]  # pragma: no cover - distinct paths differ above


def write_training_report(runs: list[Path], out_dir: Path, overwrite: bool = False) -> ReportPaths:
    """Curves and end-of-stage validation metrics of ``runs`` (run folders of ``vagan train``)."""
    for run in runs:
        if not is_run_folder(run):
            raise InputDataError(f"{run} is not a vagan run folder ({CONFIG_FILE} and {METRICS_CSV} expected)")
    labels = _labels([Path(r) for r in runs])
    rows, sections, figures = [], [], []
    with atomic_dir(Path(out_dir), "training-report", overwrite=overwrite, inputs=tuple(Path(r) for r in runs)) as tmp:
        for run, label in zip(map(Path, runs), labels):
            text = _describe(run)
            sections.append(ReportSection(f"Run {label}", text))
            log_csv = run / METRICS_CSV
            for stage, values in _last_values(log_csv).items():
                if "val_psnr" in values:
                    step = values["val_psnr"][0]
                    rows.append([label, stage, str(step)] + [f"{values[k][1]:.4g}" if k in values else "–" for k in VALIDATION_KEYS])
            figure = training_curves_figure(log_csv, tmp / "figures" / f"curves_{label}.png", smoothing=0.6)
            figures.append(ReportFigure(figure, f"Logged values of {label} against the training step "
                                                "(faint: raw, solid: smoothed)", title=f"Training curves: {label}"))
        table = ReportTable("Validation at the end of each stage (whole slices in the run's network units, data "
                            f"range 1; SSIM: {SSIM_DESCRIPTION})",
                            ["run", "stage", "step", "PSNR [dB]", "SSIM", "PSNR of the LDCT [dB]"], rows)
        paths = write_report(tmp, "vagan training report", sections, [table], figures, report_metadata(), overwrite=True)
    return ReportPaths(Path(out_dir) / paths.markdown.name, Path(out_dir) / paths.html.name,
                       tuple(Path(out_dir) / "figures" / p.name for p in paths.figures))
