"""The evaluation report's text: sections, supplementary tables, summary.json and metrics.csv."""

from __future__ import annotations

import csv
import dataclasses
import logging
import math
import platform
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vagan.evaluation.eval_config import EvaluationConfig
from vagan.evaluation.fid import MIN_UNBIASED_SAMPLES
from vagan.evaluation.inputs import EvaluationData, Method
from vagan.evaluation.metrics import (
    FIELD,
    METRIC_LABELS,
    METRICS,
    SSIM_DESCRIPTION,
    TISSUE_EDGE_PX,
    TISSUE_SMOOTH_PX,
    WINDOW,
    summarize,
)
from vagan.evaluation.report import (
    ReportSection,
    ReportTable,
)
from vagan.evaluation.running import Collected
from vagan.evaluation.table import format_summary, table_ii
from vagan.io.windowing import BODY_THRESHOLD_HU, DISPLAY_WINDOW_TEXT
from vagan.quality.uniform import SOFT_TISSUE_HU
from vagan.precision import Precision

log = logging.getLogger(__name__)


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return f"cpu ({platform.processor() or platform.machine()})"


def _bm3d_text(collected: Collected, methods: Sequence[Method]) -> str:
    lines = []
    for m in methods:
        if m.spec.kind != "bm3d":
            continue
        sig = collected.bm3d_sigmas.get(m.name, [])
        if m.calibration is not None:
            lines.append(f"- {m.name}: {m.calibration.describe()}.")
        elif m.spec.sigma_hu is not None:
            lines.append(f"- {m.name}: fixed sigma {m.spec.sigma_hu:g} HU.")
        elif sig:
            s = summarize(sig)
            lines.append(f"- {m.name}: sigma estimated per slice (wavelet MAD, skimage.restoration.estimate_sigma); "
                         f"mean {s.mean:.1f} HU (std {s.std:.1f}, min {min(sig):.1f}, max {max(sig):.1f}) over "
                         f"{s.n} slices. BM3D assumes white Gaussian noise; CT noise is neither.")
    return "\n".join(lines)


def method_sections(cfg: EvaluationConfig, methods: Sequence[Method], test: EvaluationData, collected: Collected,
              fid_name: str | None, device: torch.device, precision: Precision,
              notes: Sequence[str]) -> list[ReportSection]:
    shapes = ", ".join(f"{h}x{w}" for h, w in test.shapes)
    split = "all patients of the folder" if test.split is None else f"{test.split.to_dict()} (seed {test.split_seed})"
    data = (f"Dataset {test.root} (thickness {test.thickness}), subset {test.subset!r}: {len(test.patients)} "
            f"patient(s) ({', '.join(test.patients)}), {len(test.pairs)} slice pairs of {shapes} pixels"
            + (f" (capped at max_slices={cfg.max_slices})" if cfg.max_slices else "") + f".\n\nSplit: {split}; "
            f"taken from {test.split_source}.")
    p = cfg.patches
    conventions = (
        f"Field convention (the paper's Table II): {FIELD.describe()} (clipped); "
        f"on {p.per_image} patches of {p.size}x{p.size} per slice ({p.mode}, chosen from NDCT only, so every method "
        "is scored on the same pixels) and on whole slices.\n\n"
        f"Window convention (RED-CNN code): {WINDOW.describe()} (the display window), whole slices. RMSE in HU on raw "
        f"whole slices. SSIM: {SSIM_DESCRIPTION}.\n\n"
        "Every method sees whole slices (networks are fully convolutional) and is compared with NDCT. "
        "'NDCT (oracle)' returns the reference itself: a sanity row (PSNR inf, SSIM 1, FID 0).")
    if fid_name is None:
        fid = f"FID was not computed: {collected.fid_skipped or 'fid_net: none'}."
    else:
        n = next(r.n_real for r in collected.fid.values())
        unit = ("whole slices" if not cfg.fid_tile else
                f"the {cfg.fid_tile}x{cfg.fid_tile} tiles inside the body (NDCT mean above {BODY_THRESHOLD_HU:g} HU; the same "
                "tiles for every method)")
        fid = (f"FID per method between the NDCT (real) and the method's outputs (fake), {unit} mapped "
               f"through the display window {DISPLAY_WINDOW_TEXT} to [0, 1], features from {fid_name}. "
               f"n = {n} {'tiles' if cfg.fid_tile else 'slices'} per set"
               + (": far fewer than the 2048 needed for an unbiased estimate, so values are biased upwards and "
                  "only the ranking of methods on the same test set means anything." if n < MIN_UNBIASED_SAMPLES else "."))
        if fid_name.startswith("random-ct"):
            fid += (" random-ct is an untrained network with fixed-seed random weights (no pretrained weights are "
                    "available offline): its FIDs cannot be compared with published ones.")
        elif fid_name.startswith("ct-quality"):
            fid += (" ct-quality is trained on real normal-dose CT to estimate the dose and blur of a patch "
                    "(docs/fid.md): its features see residual noise and lost sharpness; its FIDs compare only "
                    "with FIDs from the same weights (the name carries their checksum).")
    timing = ("Not measured (timing_slices = 0)." if not cfg.timing_slices else
              f"Milliseconds per {cfg.timing_size}x{cfg.timing_size} slice, mean ± std over {cfg.timing_slices} "
              "test LDCT slices centre-padded with air / cropped to that size, one slice per call, after one "
              "warm-up call; includes host-device copies. Paper: about 80 ms on a Titan V GPU.")
    run_s = ", ".join(f"{name} {s:.1f} s" for name, s in collected.seconds.items())
    env = (f"Device: {describe_device(device)}; torch {torch.__version__}, {torch.get_num_threads()} intra-op "
           f"threads; batch size {cfg.batch_size}; networks channels-last, precision {precision.describe()}"
           f"{', torch.compile' if _compiled(methods) else ''}."
           f"\n\nWall time over the test set: {run_s}.")
    described = []
    for m in methods:
        if m.model is not None:
            c = m.model.config
            n = m.model.steps
            steps = f" ({n} step{'' if n == 1 else 's'})" if n is not None else ""
            described.append(f"- {m.name}: preset {c.preset}, stage {m.model.stage}{steps}, generator {c.model.generator} "
                             f"({c.model.generator_features} features), checkpoint {m.model.checkpoint}; "
                             f"HU range [{c.data.hu_min:g}, {c.data.hu_max:g}], attention target mode "
                             f"{c.data.attention_mode}; inference in {m.precision.describe() if m.precision else 'fp32'}"
                             f"{' on onnxruntime' if getattr(m.denoiser, 'engine', 'torch') == 'onnxruntime' else ''}.")
        else:
            described.append(f"- {m.name}: {m.spec.spec}.")
    sections = [
        ReportSection("Test data", data),
        ReportSection("Methods", "\n".join(described) + ("\n\n" + _bm3d_text(collected, methods)
                                                          if any(m.spec.kind == "bm3d" for m in methods) else "")),
        ReportSection("Metric conventions", conventions),
        ReportSection("FID", fid),
        ReportSection("Inference time", timing),
        ReportSection("Environment", env),
    ]
    if notes:
        sections.insert(0, ReportSection("Notes", "\n".join(f"- {n}" for n in notes)))
    return sections


def supplementary_tables(collected: Collected, methods: Sequence[Method] = ()) -> list[ReportTable]:
    summary = collected.acc.summary()
    tables = [table_ii(summary, metrics=("psnr_slice", "ssim_slice"),
                       title="Whole-slice metrics in the field convention"),
              _body_table(collected, methods)]
    paired = _paired_table(collected, methods)
    if paired is not None:
        tables.append(paired)
    if collected.attention_mse:
        rows = [[name, *(format_summary(s, 4) for s in per.values())]
                for name, per in collected.attention_mse.items()]
        modes = list(next(iter(collected.attention_mse.values())))
        tables.append(ReportTable(
            "Attention: MSE(M_T, M) per slice", ["Method", *(f"target M, {mode} mode" for mode in modes)], rows,
            caption="The last term of eq. 6 on whole test slices, for both definitions of the target M of eq. 5 "
                    "(signed: y - x > mean; abs: |y - x| > mean). Lower is closer."))
    return tables


def _body_table(collected: Collected, methods: Sequence[Method]) -> ReportTable:
    """RMSE in the body, its change against LDCT, and the CT-number bias in soft tissue."""
    acc = collected.acc
    ldct = next((m.name for m in methods if m.spec.kind == "ldct"), "LDCT" if "LDCT" in acc.methods else None)
    base = float(np.mean(acc.values(ldct, "rmse_body_hu"))) if ldct else math.nan
    rows = []
    for name in acc.methods:
        body = acc.values(name, "rmse_body_hu")
        bias = acc.values(name, "bias_tissue_hu")
        change = f"{100 * (np.mean(body) / base - 1):+.0f}%" if ldct and base > 0 else "n/a"
        rows.append([name, format_summary(summarize(body), 1), change,
                     format_summary(summarize(bias), 2) if np.isfinite(bias).any() else "n/a"])
    return ReportTable(
        "Body RMSE and CT-number bias", ["Method", METRIC_LABELS["rmse_body_hu"], "vs LDCT",
                                          METRIC_LABELS["bias_tissue_hu"]], rows,
        caption=f"RMSE over the body (reference above {BODY_THRESHOLD_HU:g} HU), so that air does not dilute it; "
                f"'vs LDCT': the change of its mean. CT bias: the mean of (method - NDCT) over soft tissue (NDCT in "
                f"[{SOFT_TISSUE_HU[0]:g}, {SOFT_TISSUE_HU[1]:g}] HU after a {TISSUE_SMOOTH_PX:g}-pixel Gaussian, "
                f"{TISSUE_EDGE_PX} pixels from any edge), per slice; noise averages out there, a CT-number shift "
                "does not. mean ± sample std over test slices.")


def _reference_baseline(methods: Sequence[Method]) -> Method | None:
    """The strongest classical baseline present: BM3D with the noise spectrum, else scalar-sigma BM3D."""
    bm3d = [m for m in methods if m.spec.kind == "bm3d"]
    return next((m for m in bm3d if m.spec.psd), bm3d[0] if bm3d else None)


def _paired_table(collected: Collected, methods: Sequence[Method]) -> ReportTable | None:
    """Each network's body RMSE minus the strongest baseline's, paired over the same test slices."""
    from vagan.study.stats import paired_difference

    reference = _reference_baseline(methods)
    others = [m for m in methods if m.spec.kind in ("model", "bm3d") and m is not reference]
    if reference is None or not others or len(collected.acc.values(reference.name, "rmse_body_hu")) < 2:
        return None
    ref = collected.acc.values(reference.name, "rmse_body_hu")
    rows = []
    for m in others:
        d = paired_difference(collected.acc.values(m.name, "rmse_body_hu"), ref)
        verdict = {"held": "worse", "reversed": "better", "not resolved": "not resolved"}[d.verdict]
        rows.append([m.name, d.difference.format(2), f"{d.p_value:.3g}", f"{d.losses}/{d.wins}", verdict])
    return ReportTable(
        f"Body RMSE against {reference.name}", ["Method", f"RMSE body - {reference.name} [HU], 95% interval",
                                                "Wilcoxon p", "slices better/worse", "verdict"], rows,
        caption=f"Paired over the same test slices: the mean difference of body RMSE to {reference.name} (the "
                "strongest classical baseline here) with a percentile bootstrap interval over slices (2,000 "
                "resamples) and a two-sided Wilcoxon signed-rank test. 'better': the interval lies below 0. "
                "Slices of one patient are not independent: with few patients, read the interval as one "
                "patient's.")


def _jsonable(value: Any) -> Any:
    """JSON-safe copy: non-finite floats become the strings 'inf', '-inf', 'nan'; paths become strings."""
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        if hasattr(value, "_asdict"):
            return _jsonable(value._asdict())
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.generic):
        return _jsonable(value.item())
    return value


def _compiled(methods: Sequence[Method]) -> bool:
    """Whether the networks really ran compiled (``--compile`` falls back to eager where it fails)."""
    from vagan.inference.denoise import NetworkDenoiser

    return any(isinstance(m.denoiser, NetworkDenoiser) and m.denoiser.compile for m in methods)


def summary_record(cfg: EvaluationConfig, methods: Sequence[Method], test: EvaluationData, collected: Collected,
                  device: torch.device, precision: Precision, notes: Sequence[str]) -> dict[str, Any]:
    summary = collected.acc.summary()
    per_method = {}
    for m in methods:
        entry: dict[str, Any] = {
            "spec": m.spec.spec, "kind": m.spec.kind,
            "metrics": {k: s._asdict() for k, s in summary[m.name].items()},
            "fid": dataclasses.asdict(collected.fid[m.name]) if m.name in collected.fid else None,
            "timing_ms": collected.timing[m.name]._asdict() if m.name in collected.timing else None,
            "seconds_test_set": collected.seconds.get(m.name),
        }
        if m.model is not None:
            entry.update(checkpoint=m.model.checkpoint, preset=m.model.config.preset, stage=m.model.stage,
                         has_attention=m.has_attention, precision=m.precision.name if m.precision else None,
                         engine=getattr(m.denoiser, "engine", None))
        if m.name in collected.attention_mse:
            entry["attention_mse"] = {k: s._asdict() for k, s in collected.attention_mse[m.name].items()}
        if m.calibration is not None:
            entry["bm3d_calibration"] = m.calibration.to_dict()
        if m.name in collected.bm3d_sigmas:
            entry["bm3d_sigma_hu"] = summarize(collected.bm3d_sigmas[m.name])._asdict()
        per_method[m.name] = entry
    return _jsonable({
        "title": cfg.title,
        "data": {"root": test.root, "subset": test.subset, "patients": list(test.patients),
                 "slices": len(test.pairs), "shapes": [list(s) for s in test.shapes], "thickness": test.thickness,
                 "split": test.split.to_dict() if test.split else None, "split_seed": test.split_seed, "split_source": test.split_source},
        "conventions": {"field": {**FIELD.summary(), "patches": dataclasses.asdict(cfg.patches)},
                        "window": WINDOW.summary(),
                        "rmse": "HU, raw whole slices", "metrics": list(METRICS)},
        "fid_net": next((r.feature_net for r in collected.fid.values()), None),
        "device": describe_device(device), "torch_threads": torch.get_num_threads(),
        "precision": {"name": precision.name, "reason": precision.reason, "compile": _compiled(methods)},
        "methods": per_method, "notes": list(notes), "config": cfg.to_dict(),
    })


def write_metrics_csv(path: Path, collected: Collected, test: EvaluationData) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["method", "image_index", "patient", "slice", *METRICS])
        writer.writeheader()
        for row in collected.acc.rows():
            pair = test.pairs[int(row["image_index"])]
            cells = {k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()}
            writer.writerow({**cells, "patient": pair.patient, "slice": pair.index})
    return path


