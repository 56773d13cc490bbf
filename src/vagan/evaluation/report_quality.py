"""The task-based section of an evaluation report: tables, figures, dose statements and the
``quality`` record of summary.json (docs/quality.md)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from vagan.evaluation.quality_run import (
    FULL_DOSE,
    REFERENCE,
    QualityOutcome,
    SliceNoisePlan,
)
from vagan.evaluation.report import ReportFigure, ReportSection, ReportTable
from vagan.io.atomic import atomic_file
from vagan.quality.assessment import MethodQuality
from vagan.quality.nps import NoisePowerSpectrum, RadialNPS
from vagan.quality.ttf import TaskTransferFunction


def _num(value: float, decimals: int) -> str:
    return f"{value:.{decimals}f}" if math.isfinite(value) else "n/a"


def _ttf_cell(ttf: TaskTransferFunction | None, nyquist: float) -> str:
    if ttf is None:
        return "no edge left"
    return " / ".join(f"> {nyquist:.2f}" if math.isnan(f) else f"{f:.3f}" for f in (ttf.f50, ttf.f10))


def quality_tables(outcome: QualityOutcome) -> list[ReportTable]:
    """Noise and resolution, CT-number bias, and CHO / NPWE detectability."""
    results = outcome.results
    phantom = outcome.setup.phantom
    nyquist = 0.5 / phantom.pixel_mm
    rods = [r.name for r in phantom.of_kind("rod")]
    noise = ReportTable(
        "Noise and resolution on the quality phantom",
        ["method", "noise std [HU]", "NPS f_av [1/mm]", "f_av / full dose", "NPS f_peak [1/mm]",
         *[f"TTF f50 / f10, {r} [1/mm]" for r in rods]],
        [[name, _num(q.noise_std_hu, 1), _num(q.nps.mean_frequency, 3),
          _num(q.nps.mean_frequency / results[FULL_DOSE].nps.mean_frequency, 2), _num(q.nps.peak_frequency, 3),
          *[_ttf_cell(q.ttf[r], nyquist) for r in rods]]
         for name, q in results.items()],
        caption=(f"Noise: ensemble noise of {outcome.config.realisations} signal-absent scans in "
                 f"{len(phantom.of_kind('lesion'))} uniform {phantom.roi_px}² ROIs; f_av is the NPS-weighted mean "
                 "frequency (a lower f_av means blotchier noise; f_av / full dose below 1 is a shift of the noise "
                 "texture to low frequencies, the mark of over-smoothing). TTF from the rods' circular edges on the mean "
                 f"of all scans; '> {nyquist:.2f}' means the TTF stays above that level up to the Nyquist frequency."),
    )
    tissues = [t.name for t in phantom.of_kind("tissue")]
    bias = ReportTable(
        "CT-number bias [HU] (95% interval over scans)",
        ["method", *[f"{t} ({next(i.hu for i in phantom.of_kind('tissue') if i.name == t):g} HU)" for t in tissues]],
        [[name, *[q.ct_bias_hu[t].format(1) for t in tissues]] for name, q in results.items()],
        caption="Mean HU inside 60% of each insert's radius minus its true value.",
    )
    lesions = [t.name for t in phantom.lesion_types]
    tables = [noise, bias]
    caption = (f"Trained on the first half of the scans, tested on the second; the interval resamples the test "
               f"scores. {len(phantom.lesions_of(phantom.lesion_types[0]))} copies of each lesion per scan.")
    for observer, label, stat in (("cho", "CHO (Laguerre-Gauss channels)", "d_prime"), ("cho", "CHO", "auc"),
                                  ("npwe", "NPW with eye filter", "d_prime")):
        what = "d'" if stat == "d_prime" else "AUC"
        tables.append(ReportTable(
            f"Low-contrast detectability: {what} of the {label} (95% interval)",
            ["lesion", *results],
            [[lesion, *[getattr(q.detectability[lesion][observer], stat).format(2) for q in results.values()]]
             for lesion in lesions],
            caption=caption,
        ))
    tables.append(dose_table(outcome))
    if outcome.on_full_dose:
        tables.append(full_dose_table(outcome))
    return tables


SOFT_TISSUE_HU = 300.0  # tissue inserts below this |HU| count as soft tissue
HARM_TTF_RATIO = 0.9  # a method should keep at least this fraction of a full-dose scan's TTF f50 ...
HARM_SHIFT_HU = 2.0  # ... and move no soft-tissue CT number by more than this (docs/model-card.md)


def _f50(ttf: TaskTransferFunction | None, nyquist: float) -> float:
    """TTF f50 with 'above Nyquist' read as Nyquist and an erased edge as 0."""
    if ttf is None:
        return 0.0
    return nyquist if math.isnan(ttf.f50) else ttf.f50


def full_dose_table(outcome: QualityOutcome) -> ReportTable:
    """Do no harm: each method on full-dose scans, against the scans themselves."""
    phantom = outcome.setup.phantom
    nyquist = 0.5 / phantom.pixel_mm
    reference = outcome.results[FULL_DOSE]
    rods = [r.name for r in phantom.of_kind("rod")]
    soft = [t.name for t in phantom.of_kind("tissue") if abs(t.hu) < SOFT_TISSUE_HU]
    rows = []
    for name, effect in outcome.on_full_dose.items():
        ratios = [_f50(effect.quality.ttf[r], nyquist) / _f50(reference.ttf[r], nyquist) for r in rods]
        worst = max(soft, key=lambda t: abs(effect.shift_hu[t].estimate))
        meets = min(ratios) >= HARM_TTF_RATIO and abs(effect.shift_hu[worst].estimate) <= HARM_SHIFT_HU
        rows.append([name, _num(effect.quality.noise_std_hu, 1),
                     _num(100 * (1 - effect.quality.noise_std_hu / reference.noise_std_hu), 0),
                     *[_num(r, 2) for r in ratios], f"{worst} {effect.shift_hu[worst].format(1)}",
                     "yes" if meets else "no"])
    return ReportTable(
        "Do no harm: every method on the full-dose scans",
        ["method", f"noise std [HU] (input {reference.noise_std_hu:.1f})", "noise removed [%]",
         *[f"TTF f50 / input's, {r}" for r in rods], "largest soft-tissue shift [HU]",
         f"TTF kept >= {HARM_TTF_RATIO:.0%} and shift <= {HARM_SHIFT_HU:g} HU"],
        rows,
        caption=(f"The same {outcome.config.realisations} + {outcome.config.realisations} full-dose scans as the NDCT "
                 "row, each denoised: a method should remove at most the scan's own noise, keep its resolution and "
                 "leave its CT numbers. TTF f50 above Nyquist counts as Nyquist; the shift is the mean of output - "
                 "input inside each soft-tissue insert (paired per scan, 95% interval)."))


def _seen_at_full_dose(full: MethodQuality) -> list[str]:
    """Lesions the CHO sees on the full-dose scans: a finite d' whose interval lies above 0 (a d' near 0
    is noise, and dividing by it gives junk ratios)."""
    return [lesion for lesion, obs in full.detectability.items()
            if math.isfinite(obs["cho"].d_prime.estimate) and obs["cho"].d_prime.low > 0]


def _reaching_full_dose(q: MethodQuality, full: MethodQuality) -> list[str]:
    """Lesions seen at full dose whose CHO d' (point estimate) is at least the full-dose scans'."""
    return [lesion for lesion in _seen_at_full_dose(full)
            if q.detectability[lesion]["cho"].d_prime.estimate >= full.detectability[lesion]["cho"].d_prime.estimate]


def _median_ratio(q: MethodQuality, full: MethodQuality) -> float:
    """Median over the lesions seen at full dose of the method's CHO d' over full dose's (NaN: none)."""
    ratios = [q.detectability[lesion]["cho"].d_prime.estimate / full.detectability[lesion]["cho"].d_prime.estimate
              for lesion in _seen_at_full_dose(full)]
    return float(np.median(ratios)) if ratios else math.nan


def _dose_comparisons(outcome: QualityOutcome) -> list[tuple[str, float, list[str]]]:
    """Per method (the full-dose row left out): its median d' ratio and the lesions reaching full dose's d'."""
    full = outcome.results[FULL_DOSE]
    return [(name, _median_ratio(q, full), _reaching_full_dose(q, full))
            for name, q in outcome.results.items() if name != FULL_DOSE]


def equivalent_dose(ratio: float) -> float:
    """The dose fraction at which an unprocessed scan has ``ratio`` times full dose's d' (NaN for NaN).

    Quantum noise variance scales as 1/dose and a linear observer's d'² as 1/variance, so d' ∝ √dose
    and the dose is ``ratio²`` (the LDCT row checks this law on the data's own scans)."""
    if math.isnan(ratio):
        return math.nan
    return ratio**2 if ratio > 0 else 0.0


def _ratio_cell(ratio: float) -> str:
    return "n/a" if math.isnan(ratio) else f"{ratio:.2f}"  # +inf: a method whose d' is infinite


def _dose_cell(ratio: float) -> str:
    dose = equivalent_dose(ratio)
    return "n/a" if math.isnan(dose) else "> 100%" if dose == math.inf else f"{100 * dose:.0f}%"


def dose_table(outcome: QualityOutcome) -> ReportTable:
    """Each method's CHO d' as a fraction of full dose's (median over lesions), the dose at which an
    unprocessed scan sees as well, and the lesions where the method reaches full dose's d'."""
    rows = [[name, _ratio_cell(ratio), _dose_cell(ratio), ", ".join(reached) or "none"]
            for name, ratio, reached in _dose_comparisons(outcome)]
    return ReportTable(
        f"Dose equivalence: CHO d' at {100 * outcome.setup.dose:g}% dose against full dose",
        ["method", "median d' / full-dose d'", "unprocessed scan with that d' [% of full dose]",
         "lesions reaching full-dose d'"], rows,
        caption=(f"Point estimates over the lesions the CHO sees at full dose (d' interval above 0); the d' table "
                 f"gives their intervals. d' ∝ √dose for an unprocessed scan (quantum noise), so the dose that sees as "
                 f"well is the squared ratio; the LDCT row, a scan at {100 * outcome.setup.dose:g}% dose, checks that "
                 "law on these scans. Compare a method with the LDCT row: below it, the method lost detectability; "
                 "above it, this observer detects better on the method's output than on its input (a channelized "
                 "observer can; the information in the scan cannot grow)."))


def dose_statements(outcome: QualityOutcome) -> list[str]:
    """Per method: the dose an unprocessed scan needs for the method's median CHO d', and the lesions
    for which the method reaches full dose's d' (point estimates)."""
    dose = outcome.setup.dose
    lines, any_reached = [], False
    for name, ratio, reached in _dose_comparisons(outcome):
        if not math.isnan(ratio):
            lines.append(f"{name} at {100 * dose:g}% dose: median CHO d' {_ratio_cell(ratio)} of full dose's, what an "
                         f"unprocessed scan reaches at {_dose_cell(ratio)} dose.")
        if reached:
            any_reached = True
            lines.append(f"{name} at {100 * dose:g}% dose reaches the CHO d' of full dose for: {', '.join(reached)}.")
    if not any_reached:
        lines.append(f"No method at {100 * dose:g}% dose reaches the CHO d' of full dose for any lesion.")
    return lines


def quality_section(outcome: QualityOutcome) -> ReportSection:
    setup = outcome.setup
    text = (f"The quality phantom (docs/quality.md): {setup.realisations_note}, {outcome.config.realisations} "
            "signal-present and as many signal-absent scans with fresh noise, every method run on the low-dose "
            "scans, the full-dose scans as the reference row.\n\n" + "\n".join(f"- {s}" for s in dose_statements(outcome)))
    return ReportSection("Task-based image quality", text)


def quality_figures(outcome: QualityOutcome, folder: Path) -> list[ReportFigure]:
    """NPS curves, TTF curves per rod and d' against lesion size per contrast."""
    folder.mkdir(parents=True, exist_ok=True)
    results = outcome.results
    phantom = outcome.setup.phantom
    figures = []

    fig = Figure(figsize=(5.5, 3.6), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for name, q in results.items():
        ax.plot(q.nps.frequencies, q.nps.values, lw=1.2, label=name)
    ax.set_xlabel("spatial frequency [1/mm]")
    ax.set_ylabel("NPS [HU² mm²]")
    ax.legend(fontsize=7)
    fig.tight_layout()
    figures.append(ReportFigure(_save(fig, folder / "quality_nps.png"), "Radial noise power spectra.", "NPS"))

    rods = phantom.of_kind("rod")
    fig = Figure(figsize=(4.0 * len(rods), 3.4), dpi=100)
    FigureCanvasAgg(fig)
    for k, rod in enumerate(rods):
        ax = fig.add_subplot(1, len(rods), k + 1)
        for name, q in results.items():
            ttf = q.ttf[rod.name]
            if ttf is not None:
                ax.plot(ttf.frequencies, ttf.values, lw=1.2, label=name)
        ax.set_title(rod.name, fontsize=9)
        ax.set_xlabel("spatial frequency [1/mm]", fontsize=8)
        ax.set_ylim(0, 1.1)
        ax.tick_params(labelsize=7)
    fig.axes[0].set_ylabel("TTF")
    fig.axes[-1].legend(fontsize=7)
    fig.tight_layout()
    figures.append(ReportFigure(_save(fig, folder / "quality_ttf.png"), "Task transfer functions per rod contrast.",
                                "TTF"))

    contrasts = sorted({t.contrast_hu for t in phantom.lesion_types})
    fig = Figure(figsize=(3.6 * len(contrasts), 3.4), dpi=100)
    FigureCanvasAgg(fig)
    for k, contrast in enumerate(contrasts):
        ax = fig.add_subplot(1, len(contrasts), k + 1)
        types = [t for t in phantom.lesion_types if t.contrast_hu == contrast]
        for name, q in results.items():
            d = [q.detectability[t.name]["cho"].d_prime for t in types]
            ax.errorbar([t.diameter_mm for t in types], [i.estimate for i in d],
                        yerr=[[i.estimate - i.low for i in d], [i.high - i.estimate for i in d]],
                        marker="o", ms=3, lw=1, capsize=2, label=name)
        ax.set_title(f"{contrast:g} HU", fontsize=9)
        ax.set_xlabel("lesion diameter [mm]", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.axes[0].set_ylabel("CHO d'")
    fig.axes[-1].legend(fontsize=7)
    fig.tight_layout()
    figures.append(ReportFigure(_save(fig, folder / "quality_detectability.png"),
                                "CHO d' against lesion diameter, one panel per contrast (95% intervals).",
                                "Detectability"))
    return figures


def slice_noise_table(plan: SliceNoisePlan, noise: dict[str, NoisePowerSpectrum]) -> ReportTable:
    """Noise of each method in uniform ROIs of the test slices, against the NDCT's."""
    reference = noise[REFERENCE].radial().mean_frequency if REFERENCE in noise else math.nan
    rows = []
    for name, nps in noise.items():
        radial = nps.radial()
        rows.append([name, _num(nps.noise_std, 1), _num(radial.mean_frequency, 3),
                     _num(radial.mean_frequency / reference, 2), _num(radial.peak_frequency, 3), str(nps.n_rois)])
    return ReportTable(
        "Noise on the test slices (uniform ROIs)",
        ["method", "noise std [HU]", "NPS f_av [1/mm]", "f_av / NDCT", "NPS f_peak [1/mm]", "ROIs"], rows,
        caption=(f"{plan.note}. Each ROI's second-order trend is removed (TG-233), so slow anatomy and shading "
                 "drop out; what is left of the NDCT is its full-dose noise plus fine texture. f_av / NDCT below 1: "
                 "the method's noise is coarser (blotchier) than the full-dose scan's."),
    )


def slice_noise_figure(noise: dict[str, NoisePowerSpectrum], folder: Path) -> ReportFigure:
    folder.mkdir(parents=True, exist_ok=True)
    fig = Figure(figsize=(5.5, 3.6), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for name, nps in noise.items():
        radial = nps.radial()
        ax.plot(radial.frequencies, radial.values, lw=1.2, label=name)
    ax.set_xlabel("spatial frequency [1/mm]")
    ax.set_ylabel("NPS [HU² mm²]")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return ReportFigure(_save(fig, folder / "test_slice_nps.png"), "Radial NPS in uniform ROIs of the test slices.",
                        "NPS on the test slices")


def _radial_record(radial: RadialNPS) -> dict[str, Any]:
    return {"mean_frequency": _finite(radial.mean_frequency), "peak_frequency": _finite(radial.peak_frequency),
            "frequencies": radial.frequencies.tolist(), "values": [_finite(float(v)) for v in radial.values]}


def slice_noise_record(plan: SliceNoisePlan, noise: dict[str, NoisePowerSpectrum]) -> dict[str, Any]:
    """The ``test_slice_noise`` entry of summary.json."""
    return {"roi_px": plan.side, "pixel_mm": plan.pixel_mm, "rois": {str(i): v for i, v in plan.rois.items()},
            "methods": {name: {"noise_std_hu": _finite(nps.noise_std), "n_rois": nps.n_rois,
                               "nps": _radial_record(nps.radial())} for name, nps in noise.items()}}


def _save(fig: Figure, path: Path) -> Path:
    with atomic_file(path, overwrite=False) as tmp:
        fig.savefig(tmp, format="png")
    return path


def _finite(x: float) -> float | None:
    """JSON has no NaN or infinity: an undefined or unbounded value is null."""
    return x if math.isfinite(x) else None


def _interval(i: Any) -> dict[str, float | None]:
    return {"estimate": _finite(i.estimate), "low": _finite(i.low), "high": _finite(i.high)}


def _method_record(q: MethodQuality) -> dict[str, Any]:
    return {
        "noise_std_hu": _finite(q.noise_std_hu),
        "nps": _radial_record(q.nps),
        "ttf": {rod: None if t is None else {"f50": _finite(t.f50), "f10": _finite(t.f10),
                                             "contrast_hu": _finite(t.contrast_hu)}
                for rod, t in q.ttf.items()},
        "ct_bias_hu": {tissue: _interval(i) for tissue, i in q.ct_bias_hu.items()},
        "detectability": {lesion: {obs: {"auc": _interval(d.auc), "d_prime": _interval(d.d_prime),
                                         "n_train": d.n_train, "n_test": d.n_test} for obs, d in per.items()}
                          for lesion, per in q.detectability.items()},
    }


def quality_record(outcome: QualityOutcome) -> dict[str, Any]:
    """The ``quality`` entry of summary.json."""
    setup = outcome.setup
    return {
        "dose": setup.dose, "pixel_mm": setup.phantom.pixel_mm, "size": setup.phantom.size, "scan": setup.source,
        "realisations": outcome.config.realisations, "channels": outcome.config.channels,
        "statements": dose_statements(outcome),
        "methods": {name: _method_record(q) for name, q in outcome.results.items()},
        "on_full_dose": {name: {**_method_record(e.quality), "shift_hu": {t: _interval(i) for t, i in e.shift_hu.items()}}
                         for name, e in outcome.on_full_dose.items()},
    }
