"""Trained models + a test set -> Table II, the figures, timings and a report (paper section III.C; docs/design.md, "Metrics").

:func:`evaluate` runs every method of an :class:`EvaluationConfig` on whole test slices,
scores them against NDCT (:mod:`vagan.evaluation.metrics`, both conventions), computes one FID
per method (real = NDCT slices, fake = the method's outputs), times each method on 512x512
slices and writes, into one folder that appears atomically::

    report.md, report.html      Table II, supplementary tables, figures and a description
    metrics.csv                 one row per (method, slice)
    summary.json                everything in the tables, machine-readable ("inf" as a string)
    figures/*.png               comparison_K, attention_<method>, curves_<method>

A method is ``ldct`` (the input itself), ``ndct`` (an oracle returning the reference: a sanity
row with PSNR inf, SSIM 1, FID 0), ``bm3d`` (sigma estimated per slice), ``bm3d:SIGMA_HU``
or the path of a checkpoint / run folder (:func:`vagan.inference.model_loading.load_trained_model`).
The test slices are by default the ``test`` patients of the first model's own data split, so
the evaluation never touches that model's training patients; a report note flags any overlap.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from vagan.devices import resolve_device
from vagan.errors import ConfigError
from vagan.evaluation.eval_config import EvaluationConfig
from vagan.evaluation.fid import FIDResult
from vagan.evaluation.inputs import (
    EvaluationData,
    save_bm3d_psd,
    build_fid_net,
    calibrate_bm3d_methods,
    leakage_notes,
    load_methods,
    load_test_set,
)
from vagan.evaluation.metrics import (
    MetricSummary,
)
from vagan.evaluation.quality_run import QualityPlan, prepare_quality, run_phantom, slice_noise
from vagan.evaluation.report import (
    ReportFigure,
    ReportPaths,
    ReportSection,
    ReportTable,
    report_metadata,
    write_report,
)
from vagan.evaluation.report_figures import figure_indices, write_figures
from vagan.evaluation.report_quality import (
    quality_figures,
    quality_record,
    quality_section,
    quality_tables,
    slice_noise_figure,
    slice_noise_record,
    slice_noise_table,
)
from vagan.evaluation.report_sections import (
    describe_device,
    method_sections,
    summary_record,
    supplementary_tables,
    write_metrics_csv,
)
from vagan.evaluation.running import run_methods
from vagan.evaluation.table import table_ii
from vagan.io.atomic import check_no_overlap, check_output, staged_dir
from vagan.precision import resolve_precision

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvaluationResult:
    """What :func:`evaluate` wrote and computed (paths point into ``out_dir``)."""

    out_dir: Path
    report: ReportPaths
    metrics_csv: Path
    summary_json: Path
    figures: tuple[Path, ...]
    summary: dict[str, dict[str, MetricSummary]]
    fid: dict[str, FIDResult]
    timing_ms: dict[str, MetricSummary]
    table: ReportTable
    notes: tuple[str, ...] = ()


def _check_fits(cfg: EvaluationConfig, test: EvaluationData) -> None:
    """The test patches and the figure zoom fit every test slice."""
    side = min(min(shape) for shape in test.shapes)
    if cfg.patches.size > side:
        raise ConfigError(f"patches.size: {cfg.patches.size} is larger than the test slices ({test.shapes}); give a "
                          f"size of at most {side}")
    if cfg.zoom is not None and any(cfg.zoom[0] + cfg.zoom[2] > h or cfg.zoom[1] + cfg.zoom[3] > w
                                    for h, w in test.shapes):
        raise ConfigError(f"zoom {cfg.zoom} (row, col, height, width) does not fit the test slices {test.shapes}")


def prepare_evaluation(cfg: EvaluationConfig) -> tuple[EvaluationData, QualityPlan | None]:
    """The test set and the quality section's plan, checked before any model is loaded: the test slices
    load, the patches and the zoom fit them, and the quality phantom fits its field of view (``vagan
    study`` calls this before it trains, so a bad evaluation setting never waits for hours of training)."""
    test = load_test_set(cfg)
    _check_fits(cfg, test)
    return test, prepare_quality(cfg.quality, test) if cfg.quality.enabled else None


def evaluate(cfg: EvaluationConfig, out_dir: Path, overwrite: bool = False, progress: bool = True,
             extra_sections: Sequence[ReportSection] = (), extra_tables: Sequence[ReportTable] = (),
             extra_figures: Sequence[ReportFigure] = ()) -> EvaluationResult:
    """Run the evaluation of ``cfg`` and write its report folder ``out_dir`` atomically.

    ``extra_*`` are added to the report after the evaluation's own (e.g. the demo's simulation check).

    Raises :class:`~vagan.errors.OutputExistsError` for an existing ``out_dir`` without
    ``overwrite`` (before any work), :class:`~vagan.errors.CheckpointError` for a model folder
    that is not a checkpoint, :class:`~vagan.errors.InputDataError` for an empty test subset and
    :class:`~vagan.errors.ConfigError` for a bad config. On any failure nothing is left at
    ``out_dir`` (an existing folder is kept as it was).
    """
    out_dir = Path(out_dir)
    device = resolve_device(cfg.device)
    inputs = [m.path for m in cfg.methods if m.path is not None]
    inputs += [Path(p) for p in (cfg.data_root, cfg.fid_weights) if p]
    check_output(out_dir, overwrite, inputs, kind="evaluation")
    precision = resolve_precision(cfg.precision, device)
    test, plan = prepare_evaluation(cfg)  # before any model is loaded
    check_no_overlap(out_dir, [test.root])
    methods = load_methods(cfg, device, precision)
    models = [m.model for m in methods if m.model is not None]
    fid_net = build_fid_net(cfg)
    notes = [*leakage_notes(test, models), *calibrate_bm3d_methods(methods, test, cfg.calibration_slices)]
    keep = figure_indices(len(test.pairs), cfg.figure_slices)
    collected = run_methods(cfg, methods, test, device, fid_net, keep, progress, plan.slices if plan else None)
    notes = [*notes, *collected.notes]
    quality = run_phantom(cfg.quality, plan.phantom, methods, device, progress) if plan and plan.phantom else None
    noise = slice_noise(plan.slices, test, collected.noise_rois) if plan and plan.slices and plan.slices.count else None
    if plan and plan.slices and not plan.slices.count:
        notes.append("No uniform soft-tissue region was found on the test slices for the noise measurement; "
                     "give quality.rois (top-left row, col of each ROI).")
    summary = collected.acc.summary()
    table = table_ii(summary, fid=collected.fid, timing_ms=collected.timing, methods=[m.name for m in methods])
    if cfg.timing_size != 512:  # table_ii labels the timing column for the paper's 512x512 slices
        columns = [c.replace("512²", f"{cfg.timing_size}²") for c in table.columns]
        table = dataclasses.replace(table, columns=columns)
    metadata = report_metadata(describe_device(device), f"{test.root} [{test.subset}]: {len(test.pairs)} slices",
                               {"torch threads": str(torch.get_num_threads())})
    with staged_dir(out_dir, overwrite, "evaluation") as folder:  # checked above, before any work
        metrics_csv = write_metrics_csv(folder / "metrics.csv", collected, test)
        record = summary_record(cfg, methods, test, collected, device, precision, notes)
        if quality is not None:
            record["quality"] = quality_record(quality)
        if noise is not None:
            record["test_slice_noise"] = slice_noise_record(plan.slices, noise)
        (folder / "summary.json").write_text(json.dumps(record, indent=2, allow_nan=False) + "\n", encoding="utf-8")
        save_bm3d_psd(folder, methods)
        figures = write_figures(folder / "figures", methods, test, collected.outputs, collected.attention, keep,
                                cfg.zoom)
        fid_name = next((r.feature_net for r in collected.fid.values()), None)
        sections = method_sections(cfg, methods, test, collected, fid_name, device, precision, notes)
        tables = [table, *supplementary_tables(collected, methods)]
        if noise is not None:
            tables.append(slice_noise_table(plan.slices, noise))
            figures = [*figures, slice_noise_figure(noise, folder / "figures")]
        if quality is not None:
            sections.append(quality_section(quality))
            tables += quality_tables(quality)
            figures = [*figures, *quality_figures(quality, folder / "figures")]
        paths = write_report(folder, cfg.title, [*sections, *extra_sections], [*tables, *extra_tables],
                             [*figures, *extra_figures], metadata)

        def rel(path: Path) -> Path:  # where a file will be once the folder is renamed
            return out_dir / Path(path).relative_to(folder)

        report = ReportPaths(rel(paths.markdown), rel(paths.html), tuple(rel(p) for p in paths.figures))
        metrics_csv = rel(metrics_csv)
    log.info("evaluation written to %s", out_dir)
    return EvaluationResult(out_dir, report, metrics_csv, out_dir / "summary.json", report.figures, summary,
                            collected.fid, collected.timing, table, tuple(notes))
