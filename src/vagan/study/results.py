"""A study's results from its evaluation: per-slice values grouped by preset (seeds averaged per
slice), Table II with per-patient intervals, paired differences, the paper's orderings, curves."""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vagan.errors import InputDataError
from vagan.evaluation.metrics import METRIC_LABELS
from vagan.evaluation.report import ReportTable
from vagan.study.config import Statistics
from vagan.study.stats import (
    Interval,
    PairedDifference,
    group_means,
    lowest,
    paired_difference,
    patient_interval,
    seeded_difference,
)

TABLE_METRICS = ("psnr_patch", "ssim_patch", "psnr_window", "ssim_window", "rmse_hu")
DECIMALS = {"psnr_patch": 2, "ssim_patch": 4, "psnr_window": 2, "ssim_window": 4, "rmse_hu": 1}
PAIRED_METRIC = "psnr_patch"  # the paper's Table II convention
GANS = ("g_gan", "ga_gan", "vagan", "wgan_vgg")
REFERENCES_PAIRED = ("g_psnr", "g_gan", "BM3D-PSD", "BM3D")
"""The groups every preset is compared with slice by slice (``g_gan`` only with the other GANs)."""
ATTENTION_PAIRS = (("ga_psnr", "g_psnr"), ("ga_gan", "g_gan"), ("vagan", "g_gan"))
"""With and without the attention: the paper's question, at every budget where both were trained."""


@dataclass(frozen=True)
class PerSlice:
    """One group's values on the test slices (seeds averaged slice by slice), in test-slice order."""

    values: dict[str, np.ndarray]  # metric -> (n_slices,)
    patients: tuple[str, ...]  # the patient of each slice
    runs: tuple[str, ...]  # the evaluated methods averaged into this group


def read_per_slice(metrics_csvs: Sequence[Path], groups: Mapping[str, Sequence[str]]) -> dict[str, PerSlice]:
    """``groups`` (a label -> the method names of its runs) from evaluations' ``metrics.csv`` files (of one
    test set: the study evaluates each run on its own)."""
    rows: dict[str, dict[int, dict[str, str]]] = {}
    for metrics_csv in metrics_csvs:
        with Path(metrics_csv).open(newline="") as handle:
            for row in csv.DictReader(handle):
                rows.setdefault(row["method"], {})[int(row["image_index"])] = row
    out = {}
    reference: tuple[str, list[tuple[int, str]]] | None = None
    for label, methods in groups.items():
        missing = [m for m in methods if m not in rows]
        if missing:
            raise InputDataError(f"{', '.join(map(str, metrics_csvs))}: no rows for {missing}; evaluate the study "
                                 "again")
        for m in methods:  # each run is evaluated on its own: paired statistics need the same slices everywhere
            slices = [(i, rows[m][i]["patient"]) for i in sorted(rows[m])]
            if reference is None:
                reference = (m, slices)
            elif slices != reference[1]:
                raise InputDataError(f"{m} was evaluated on other test slices than {reference[0]}; evaluate the "
                                     "study again (--overwrite)")
        index = sorted(rows[methods[0]])
        patients = tuple(rows[methods[0]][i]["patient"] for i in index)
        values = {k: np.mean([[float(rows[m][i][k]) for i in index] for m in methods], axis=0) for k in TABLE_METRICS}
        out[label] = PerSlice(values, patients, tuple(methods))
    return out


def combine(per_run: Mapping[str, PerSlice], groups: Mapping[str, Sequence[str]]) -> dict[str, PerSlice]:
    """``groups`` (a label -> its runs) from runs read by :func:`read_per_slice` one by one: each slice's value
    the mean over the group's runs (seeds)."""
    return {label: PerSlice({k: np.mean([per_run[r].values[k] for r in runs], axis=0) for k in TABLE_METRICS},
                            per_run[runs[0]].patients, tuple(runs)) for label, runs in groups.items()}


def fid_by_group(summary_jsons: Sequence[Path], groups: Mapping[str, Sequence[str]]) -> dict[str, float]:
    """Mean FID over a group's runs, from evaluations' ``summary.json`` files (groups without FID are left out)."""
    methods: dict[str, Any] = {}
    for summary_json in summary_jsons:
        methods.update(json.loads(Path(summary_json).read_text(encoding="utf-8"))["methods"])
    nets = sorted({m["fid"].get("feature_net") for m in methods.values() if isinstance(m.get("fid"), dict)}, key=str)
    if len(nets) > 1:  # the study re-evaluates on another net or weights (runner._evaluate): this is a bug
        raise InputDataError(f"the study's evaluations hold FIDs of several feature nets {nets}: they do not compare")
    out = {}
    for label, names in groups.items():
        values = [methods[n]["fid"]["value"] for n in names if isinstance(methods.get(n, {}).get("fid"), dict)]
        if len(values) == len(names):
            out[label] = float(np.mean(values))
    return out


def intervals(per_slice: Mapping[str, PerSlice], stats: Statistics) -> dict[str, dict[str, Interval]]:
    """Per group and metric: mean of per-patient means with its bootstrap interval over patients."""
    return {label: {k: patient_interval(g.values[k], g.patients, stats.resamples, stats.confidence, stats.seed)
                    for k in TABLE_METRICS} for label, g in per_slice.items()}


def paired(per_slice: Mapping[str, PerSlice], reference: str, stats: Statistics,
           only: Sequence[str] | None = None) -> dict[str, PairedDifference]:
    """``group - reference`` in :data:`PAIRED_METRIC` over the test slices, for every other group (or
    those of ``only``)."""
    if reference not in per_slice:
        return {}
    ref = per_slice[reference].values[PAIRED_METRIC]
    return {label: paired_difference(g.values[PAIRED_METRIC], ref, stats.resamples, stats.confidence, stats.seed)
            for label, g in per_slice.items() if label != reference and (only is None or label in only)}


def paired_with_references(per_slice: Mapping[str, PerSlice], presets: Sequence[str],
                           stats: Statistics) -> dict[str, dict[str, PairedDifference]]:
    """Every preset against each of :data:`REFERENCES_PAIRED` that is present: ``g_psnr`` (what the attention
    and the GAN add), ``g_gan`` (the GANs only), BM3D-PSD and BM3D (what learning adds to the classical one)."""
    out = {}
    for ref in REFERENCES_PAIRED:
        only = [p for p in presets if p in GANS] if ref == "g_gan" else list(presets)
        diffs = paired(per_slice, ref, stats, only)
        if diffs:
            out[ref] = diffs
    return out


@dataclass(frozen=True)
class AttentionEffect:
    """``with_attention - without`` at one budget, with intervals over test patients and both presets' seeds."""

    budget: int | None
    with_attention: str
    without: str
    differences: dict[str, Interval]  # metric -> interval (PSNR in dB, RMSE in HU)
    seed_means: dict[str, tuple[list[float], list[float]]]  # metric -> per-seed means of each preset


def attention_effects(per_run: Mapping[str, PerSlice], groups_by_budget: Mapping[int | None, Mapping[str, Sequence[str]]],
                      stats: Statistics) -> list[AttentionEffect]:
    """Every pair of :data:`ATTENTION_PAIRS` trained at a budget: the difference in patch PSNR and body
    RMSE, its interval resampling patients and seeds (:func:`~vagan.study.stats.seeded_difference`),
    and each seed's mean of per-patient means, so the seed spread is in view."""
    out = []
    for budget, groups in groups_by_budget.items():
        for a, b in ATTENTION_PAIRS:
            if a not in groups or b not in groups:
                continue
            patients = per_run[groups[a][0]].patients
            differences, seed_means = {}, {}
            for metric in (PAIRED_METRIC, "rmse_hu"):
                runs_a = np.stack([per_run[r].values[metric] for r in groups[a]])
                runs_b = np.stack([per_run[r].values[metric] for r in groups[b]])
                differences[metric] = seeded_difference(runs_a, runs_b, patients, stats.resamples, stats.confidence,
                                                        stats.seed)
                seed_means[metric] = ([patient_mean(v, patients) for v in runs_a],
                                      [patient_mean(v, patients) for v in runs_b])
            out.append(AttentionEffect(budget, a, b, differences, seed_means))
    return out


def patient_mean(values: np.ndarray, patients: Sequence[str]) -> float:
    return float(np.mean(list(group_means(values, patients).values())))


def attention_table(effects: Sequence[AttentionEffect], confidence: float) -> ReportTable:
    def seeds(e: AttentionEffect) -> str:
        counts = [len(v) for v in e.seed_means[PAIRED_METRIC]]
        return "/".join(map(str, counts)) + (" †" if min(counts) == 1 else "")

    rows = [["–" if e.budget is None else str(e.budget), f"{e.with_attention} − {e.without}", seeds(e),
             e.differences[PAIRED_METRIC].format(3), e.differences["rmse_hu"].format(2),
             _per_seed(e, PAIRED_METRIC), _per_seed(e, "rmse_hu")] for e in effects]
    return ReportTable(
        f"What the attention buys, per budget ({confidence:.0%} intervals over test patients and seeds)",
        ["Budget [patches]", "Comparison", "seeds", "Δ PSNR [dB]", "Δ body RMSE [HU]",
         "PSNR per seed (with; without)", "RMSE per seed (with; without)"], rows,
        "Δ: the mean over test patients of the with-attention preset's seed mean minus the other's. The interval "
        "resamples the test patients (both presets saw the same) and each preset's seeds; with two seeds it is "
        "coarse. †: a preset trained with one seed, whose seed spread is unknown: the interval holds only the "
        "patients' (and the other preset's seeds') spread and is too narrow. A positive Δ PSNR and a negative "
        "Δ RMSE favour the attention.")


def _per_seed(effect: AttentionEffect, metric: str) -> str:
    return "; ".join(", ".join(f"{v:.{DECIMALS[metric]}f}" for v in values) for values in effect.seed_means[metric])


def budget_points(per_run: Mapping[str, PerSlice], groups_by_budget: Mapping[int | None, Mapping[str, Sequence[str]]],
                  metrics: Sequence[str] = (PAIRED_METRIC, "rmse_hu")) -> dict[str, dict[int, dict[str, list[float]]]]:
    """Preset -> budget -> metric -> each seed's mean of per-patient means (budgets of an axis only)."""
    out: dict[str, dict[int, dict[str, list[float]]]] = {}
    for budget, groups in groups_by_budget.items():
        if budget is None:
            continue
        for label, runs in groups.items():
            out.setdefault(label, {})[budget] = {
                m: [patient_mean(per_run[r].values[m], per_run[r].patients) for r in runs] for m in metrics}
    return out


def budget_figure(points: Mapping[str, Mapping[int, Mapping[str, Sequence[float]]]],
                  references: Mapping[str, Mapping[str, float]], path: Path) -> Path | None:
    """Patch PSNR and body RMSE against the training budget: a line through each preset's seed means, a dot
    per seed, the references as dashed lines (``None``: fewer than two budgets, nothing to draw)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from vagan.io.atomic import atomic_file

    if len({b for per in points.values() for b in per}) < 2:
        return None
    fig = Figure(figsize=(10, 3.6), dpi=100)
    FigureCanvasAgg(fig)
    for i, metric in enumerate((PAIRED_METRIC, "rmse_hu")):
        ax = fig.add_subplot(1, 2, i + 1)
        for k, (preset, per) in enumerate(points.items()):
            color = f"C{k % 10}"
            budgets = sorted(per)
            ax.plot(budgets, [np.mean(per[b][metric]) for b in budgets], marker="o", lw=1.2, color=color, label=preset)
            for b in budgets:
                ax.scatter([b] * len(per[b][metric]), per[b][metric], s=12, color=color, alpha=0.5)
        for j, (name, values) in enumerate(references.items()):
            ax.axhline(values[metric], ls="--", lw=0.8, color=("0.2", "0.45", "0.65", "0.8")[j % 4], label=name)
        ax.set_xscale("log")
        ax.set_xlabel("training patches (budget)", fontsize=8)
        ax.set_ylabel(METRIC_LABELS.get(metric, metric), fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    with atomic_file(path, overwrite=True) as tmp:
        fig.savefig(tmp, format="png")
    return path


@dataclass(frozen=True)
class Ordering:
    claim: str
    verdict: str
    evidence: str


def orderings(per_slice: Mapping[str, PerSlice], fid: Mapping[str, float], presets: Sequence[str],
              stats: Statistics) -> list[Ordering]:
    """The paper's orderings that this study can test, each held / reversed / not resolved / not testable."""
    out = []
    if "ga_psnr" in per_slice and "g_psnr" in per_slice:
        d = paired(per_slice, "g_psnr", stats)["ga_psnr"]
        out.append(Ordering("GA_PSNR > G_PSNR in PSNR (attention helps the PSNR-oriented generator)", d.verdict,
                            f"ga_psnr - g_psnr = {d.difference.format(3)} dB, Wilcoxon p = {d.p_value:.2g}"))
    gans = {g: fid[g] for g in GANS if g in presets and g in fid}
    if "vagan" in gans and len(gans) > 1:
        ranked = ", ".join(f"{g} {v:.4g}" for g, v in sorted(gans.items(), key=lambda kv: kv[1]))
        out.append(Ordering("VAGAN has the best FID among the GANs", lowest(gans, "vagan"), f"FID: {ranked}"))
    if "LDCT" in per_slice:
        against = paired(per_slice, "LDCT", stats)
        learned = [p for p in presets if p in against]
        held = [p for p in learned if against[p].verdict == "held"]
        verdict = "held" if len(held) == len(learned) else ("reversed" if any(
            against[p].verdict == "reversed" for p in learned) else "not resolved")
        lows = ", ".join(f"{p} {against[p].difference.low:+.2f}" for p in learned)
        out.append(Ordering("Every learned method beats LDCT in PSNR", verdict,
                            f"{len(held)}/{len(learned)} with the interval above 0 (lower bounds, dB: {lows})"))
    return out


def table_ii(ints: Mapping[str, Mapping[str, Interval]], fid: Mapping[str, float], runs: Mapping[str, int],
             confidence: float) -> ReportTable:
    """Table II with intervals: one row per group (references and presets)."""
    columns = ["Method", "runs", *[METRIC_LABELS.get(k, k) for k in TABLE_METRICS], "FID"]
    rows = [[label, str(runs.get(label, 1)), *[ints[label][k].format(DECIMALS[k]) for k in TABLE_METRICS],
             f"{fid[label]:.4g}" if label in fid else "–"] for label in ints]
    n = next(iter(next(iter(ints.values())).values())).n if ints else 0
    return ReportTable(
        f"Table II with {confidence:.0%} intervals", columns, rows,
        f"Mean of per-patient means over {n} test patient(s) [bootstrap interval over patients]; a preset's value "
        "per slice is the mean over its seeds. FID: mean over seeds (one value per run, no interval).")


def paired_table(diffs: Mapping[str, PairedDifference], reference: str, confidence: float) -> ReportTable:
    rows = [[label, d.difference.format(3), f"{d.p_value:.2g}", f"{d.wins}/{d.losses}", d.verdict]
            for label, d in diffs.items()]
    return ReportTable(
        f"Paired differences against {reference}: {METRIC_LABELS.get(PAIRED_METRIC, PAIRED_METRIC)}",
        ["Method", f"difference [dB] [{confidence:.0%} interval]", "Wilcoxon p", "better/worse slices",
         "interval"], rows,
        "Over the same test slices. Slices of one patient are correlated, so the slice-level interval and p-value "
        "are optimistic; the per-patient intervals of Table II are the conservative view.")


def curves_figure(curves: Mapping[str, Mapping[int, list[tuple[float, float]]]], path: Path) -> Path | None:
    """Validation PSNR against patches seen: one panel per preset, one line per seed (``None``: nothing logged)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from vagan.io.atomic import atomic_file

    presets = [p for p in curves if any(curves[p].values())]
    if not presets:
        return None
    cols = min(3, len(presets))
    rows = -(-len(presets) // cols)
    fig = Figure(figsize=(4.2 * cols, 2.9 * rows), dpi=100)
    FigureCanvasAgg(fig)
    for i, preset in enumerate(presets):
        ax = fig.add_subplot(rows, cols, i + 1)
        for seed, points in sorted(curves[preset].items()):
            if points:
                x, y = zip(*points)
                ax.plot(x, y, marker=".", lw=1, label=f"seed {seed}")
        ax.set_title(preset, fontsize=9)
        ax.set_xlabel("training patches seen", fontsize=8)
        ax.set_ylabel("val PSNR [dB]", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_file(path, overwrite=True) as tmp:
        fig.savefig(tmp, format="png")
    return path
