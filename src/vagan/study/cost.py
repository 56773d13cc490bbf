"""What a study's runs cost: the wall time each took (``progress.seconds`` of its checkpoints, every
resume added), its training throughput (the median of the patches/s the trainer logged) and the
machine it trained on (``machine`` of its checkpoints)."""

from __future__ import annotations

import csv
import json
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from vagan.evaluation.report import ReportTable
from vagan.training.config import ExperimentConfig
from vagan.training.run_folder import METRICS_CSV, final_dir


@dataclass(frozen=True)
class RunCost:
    seconds: float | None  # wall time of every stage, validations included (None: not recorded)
    patches_per_s: float | None  # median of the logged training steps' throughput (None: nothing logged)
    machines: tuple[str, ...]  # the devices its stages ran on, as the checkpoints name them


def run_cost(run_dir: Path, cfg: ExperimentConfig) -> RunCost:
    """The cost of one finished run from its final checkpoints and its metrics log."""
    seconds: float | None = 0.0
    machines: list[str] = []
    for stage in cfg.stages:
        try:
            meta = json.loads((final_dir(run_dir, stage.name) / "meta.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            meta = {}
        spent = meta.get("progress", {}).get("seconds")
        seconds = None if spent is None or seconds is None else seconds + float(spent)
        machines.append(str(meta.get("machine", "not recorded")))
    rates = []
    log = run_dir / METRICS_CSV
    if log.is_file():
        with log.open(newline="") as handle:
            rates = [float(r["value"]) for r in csv.DictReader(handle) if r.get("name") == "patches_per_s"]
    return RunCost(seconds, statistics.median(rates) if rates else None, tuple(dict.fromkeys(machines)))


def cost_table(costs: Mapping[str, RunCost], runs: Mapping[str, tuple[str, int | None]]) -> ReportTable:
    """Per preset and budget: runs, wall time per run (mean, range), training patches/s (median), machines."""
    grouped: dict[tuple[str, int | None], list[RunCost]] = {}
    for name, key in runs.items():
        if name in costs:
            grouped.setdefault(key, []).append(costs[name])
    rows = [[preset, "–" if budget is None else str(budget), str(len(cs)), _minutes([c.seconds for c in cs]),
             _median([c.patches_per_s for c in cs]), "; ".join(dict.fromkeys(m for c in cs for m in c.machines))]
            for (preset, budget), cs in grouped.items()]
    return ReportTable(
        "What the runs cost", ["Preset", "Budget [patches]", "runs", "training wall time per run [min] (range)",
                               "patches/s (median of logged steps)", "trained on"], rows,
        "Measured while the study trained. Wall time: the training stages, their validations and checkpoints, added "
        "up over resumes (not data loading, model set-up or evaluation; the time after a crashed process's last "
        "checkpoint is lost). Patches/s: the median over every logged step of every stage, so a two-stage preset's "
        "is mostly its first stage's. Other work on the machine slows both. Trained on: as each stage's final "
        "checkpoint names it.")


def _minutes(values: Sequence[float | None]) -> str:
    if not values or any(v is None for v in values):
        return "–"
    minutes = [v / 60 for v in values if v is not None]
    mean = sum(minutes) / len(minutes)
    return f"{mean:.1f}" if len(minutes) == 1 else f"{mean:.1f} ({min(minutes):.1f}–{max(minutes):.1f})"


def _median(values: Sequence[float | None]) -> str:
    known = [v for v in values if v is not None]
    return f"{statistics.median(known):.1f}" if known else "–"
