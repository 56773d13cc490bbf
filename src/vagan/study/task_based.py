"""The study's task-based section: each preset's image quality on the quality phantom (the
``quality`` entry of its runs' evaluations, docs/quality.md) beside the references', seeds averaged."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vagan.evaluation.report import ReportTable

SOFT_TISSUE = ("fat", "muscle", "liver", "blood")
OBSERVER = "cho"


def quality_records(summary_jsons: Sequence[Path]) -> dict[str, dict[str, Any]]:
    """Method name -> its quality record, from every evaluation that ran the quality phantom."""
    out: dict[str, dict[str, Any]] = {}
    for path in summary_jsons:
        quality = json.loads(Path(path).read_text(encoding="utf-8")).get("quality")
        if isinstance(quality, dict):
            out.update(quality.get("methods", {}))
    return out


def task_table(records: Mapping[str, Mapping[str, Any]], groups: Mapping[str, Sequence[str]],
               budget: int | None) -> ReportTable | None:
    """Noise, NPS mean frequency, TTF f50 per rod, the largest soft-tissue CT bias and the CHO's d' (mean
    over the lesions) per group (its runs' mean); ``None`` when no group has a quality record. The
    references' own rows (NDCT, LDCT, BM3D...) are groups of one."""
    present = {label: [records[n] for n in names] for label, names in groups.items()
               if names and all(n in records for n in names)}
    if not present:
        return None
    rods = list(next(iter(present.values()))[0]["ttf"])
    rows = [[label, str(len(rs)), _mean([r["noise_std_hu"] for r in rs], 1),
             _mean([r["nps"]["mean_frequency"] for r in rs], 3),
             *[_mean([(r["ttf"].get(rod) or {}).get("f50") for r in rs], 2) for rod in rods],
             _mean([_worst_bias(r) for r in rs], 1), _mean([_mean_d_prime(r) for r in rs], 2)]
            for label, rs in present.items()]
    at = "" if budget is None else f", {budget} patches"
    return ReportTable(
        f"Task-based image quality on the quality phantom{at}",
        ["Method", "runs", "noise std [HU]", "NPS f_av [1/mm]", *[f"TTF f50 {rod} [1/mm]" for rod in rods],
         "largest soft-tissue bias [HU]", f"{OBSERVER.upper()} d' (mean over lesions)"], rows,
        "From each run's evaluation (docs/quality.md): noise and NPS in the phantom's uniform region, TTF f50 of "
        "each rod (– where the TTF never falls to 50% within the measured band), the largest |CT bias| over "
        f"{', '.join(SOFT_TISSUE)}, and the channelised Hotelling observer's d' averaged over the lesion sizes "
        "and contrasts. A preset's value is the mean over its seeds.")


def _worst_bias(record: Mapping[str, Any]) -> float | None:
    biases = [record["ct_bias_hu"][t]["estimate"] for t in SOFT_TISSUE if t in record.get("ct_bias_hu", {})]
    return None if not biases or any(b is None for b in biases) else max(abs(b) for b in biases)


def _mean_d_prime(record: Mapping[str, Any]) -> float | None:
    values = [per[OBSERVER]["d_prime"]["estimate"] for per in record.get("detectability", {}).values()
              if OBSERVER in per]
    return None if not values or any(v is None for v in values) else float(np.mean(values))


def _mean(values: Sequence[float | None], decimals: int) -> str:
    if not values or any(v is None for v in values):
        return "–"
    return f"{float(np.mean(values)):.{decimals}f}"
