"""Table II of the paper: one row per method, cells ``mean ± std``.

Columns (default): PSNR/SSIM on 64x64 patches in the field convention (the paper's numbers),
PSNR/SSIM on whole slices in the display window [-160, 240] HU, RMSE in HU, one FID column per
feature network (named in the header; FID is one value per test set, so no ±) and inference
time in ms per 512x512 slice.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from vagan.evaluation.fid import MIN_UNBIASED_SAMPLES, FIDResult
from vagan.evaluation.metrics import FIELD, METRIC_LABELS, WINDOW, MetricSummary
from vagan.evaluation.report import ReportTable

TABLE_II_METRICS: tuple[str, ...] = ("psnr_patch", "ssim_patch", "psnr_window", "ssim_window", "rmse_hu")
DECIMALS: dict[str, int] = {"psnr": 2, "ssim": 4, "rmse": 1, "fid": 3, "ms": 1}
MISSING = "–"

Timing = MetricSummary | tuple[float, float] | float


def _decimals(metric: str) -> int:
    return DECIMALS.get(metric.split("_")[0], 3)


def format_mean_std(mean: float, std: float, decimals: int) -> str:
    """``"41.93 ± 1.20"``; ``inf``/``nan`` are written as such."""
    if not math.isfinite(mean):
        return str(mean)
    if not math.isfinite(std):
        return f"{mean:.{decimals}f}"
    return f"{mean:.{decimals}f} ± {std:.{decimals}f}"


def format_summary(summary: MetricSummary, decimals: int) -> str:
    """``mean ± std``, or the mean alone from a single value (no spread to show)."""
    return format_mean_std(summary.mean, summary.std if summary.n > 1 else math.nan, decimals)


def _timing_cell(value: Timing | None) -> str:
    if value is None:
        return MISSING
    if isinstance(value, MetricSummary):
        return format_summary(value, DECIMALS["ms"])
    if isinstance(value, tuple):
        return format_mean_std(float(value[0]), float(value[1]), DECIMALS["ms"])
    return f"{float(value):.{DECIMALS['ms']}f}"


def table_ii(
    summary: Mapping[str, Mapping[str, MetricSummary]],
    *,
    fid: Mapping[str, FIDResult | Sequence[FIDResult]] | None = None,
    timing_ms: Mapping[str, Timing] | None = None,
    metrics: Sequence[str] = TABLE_II_METRICS,
    methods: Sequence[str] | None = None,
    title: str = "Table II: quantitative results on the test set",
) -> ReportTable:
    """Build the Table II :class:`ReportTable` from :meth:`MetricAccumulator.summary`, FIDs and timings.

    ``methods`` sets the row order (default: the order of ``summary``, then any extra methods
    with only FID/timing). FID cells from fewer than 2048 samples carry a dagger (biased).
    """
    fid = fid or {}
    timing_ms = timing_ms or {}
    order = list(methods) if methods is not None else list(dict.fromkeys([*summary, *fid, *timing_ms]))
    fid_lists = {m: [r] if isinstance(r, FIDResult) else list(r) for m, r in fid.items()}
    nets = list(dict.fromkeys(r.feature_net for rs in fid_lists.values() for r in rs))
    unknown = [m for m in metrics if m not in METRIC_LABELS]
    if unknown:
        raise ValueError(f"unknown metrics {unknown}; expected some of {list(METRIC_LABELS)}")

    columns = ["Method", *(METRIC_LABELS[m] for m in metrics), *(f"FID [{net}]" for net in nets)]
    if timing_ms:
        columns.append("ms / 512² slice")
    rows, small, counts = [], False, {}
    for method in order:
        per = summary.get(method, {})
        row = [method]
        for metric in metrics:
            s = per.get(metric)
            row.append(format_summary(s, _decimals(metric)) if s is not None and s.n else MISSING)
        by_net = {r.feature_net: r for r in fid_lists.get(method, [])}
        for net in nets:
            r = by_net.get(net)
            if r is None:
                row.append(MISSING)
                continue
            dagger = "†" if r.small_sample else ""
            small |= r.small_sample
            counts.setdefault(net, set()).add(r.n_fake)
            row.append(f"{r.value:.{DECIMALS['fid']}f}{dagger}")
        if timing_ms:
            row.append(_timing_cell(timing_ms.get(method)))
        rows.append(row)

    notes = [
        "mean ± sample std over test images (patch metrics: over patches).",
        f"field: {FIELD.describe()}; window: {WINDOW.describe()};",
        "RMSE on raw HU.",
    ]
    present = [(m, per[m].n) for per in summary.values() for m in metrics if m in per]
    n_patch = next((n for m, n in present if m.endswith("_patch")), None)
    n_slice = next((n for m, n in present if not m.endswith("_patch")), None)
    if n_patch:
        notes.append(f"Patch metrics: n = {n_patch} test patches.")
    if n_slice:
        notes.append(f"Slice metrics: n = {n_slice} slices.")
    for net in nets:
        ns = ", ".join(str(n) for n in sorted(counts.get(net, ())))
        notes.append(f"FID [{net}] on n = {ns} {'tiles' if '/tile' in net else 'images'}.")
    if any(net.startswith("random-ct") for net in nets):
        notes.append("random-ct is an untrained random network: only the ranking of its FIDs is meaningful.")
    if any(net.startswith("ct-quality") for net in nets):
        notes.append("ct-quality is trained on real CT to see residual noise and blur (docs/fid.md); its FIDs "
                     "compare only with those of the same weights (checksum in the name).")
    if small:
        notes.append(f"† fewer than {MIN_UNBIASED_SAMPLES} samples: FID is biased upwards; compare only at equal n.")
    return ReportTable(title, columns, rows, caption=" ".join(notes))
