"""The README's `make demo` as a new user runs it: a fresh clone of this checkout, the install included.

Clones HEAD into a temporary folder, runs `make demo` there (a new .venv that sees the system's
packages, the install, the demo) and records its wall time, its peak resident memory, the CPU, the
steps each training stage reached before its cap and the demo's Table II RMSE column.

Writes benchmarks/results/demo.{json,md}.

    python benchmarks/bench_demo.py
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import tempfile
from pathlib import Path

from bench_simulator import _cpu
from subprocess_peak import run_measured

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


def _table(report: str, title: str) -> list[list[str]]:
    """The rows of the Markdown table under ``## title`` (header and rule dropped)."""
    block = report.split(f"## {title}", 1)[1].split("\n\n", 2)[1]
    return [[c.strip() for c in line.strip().strip("|").split("|")] for line in block.splitlines()[2:]]


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="vagan-demo-bench-") as tmp:
        clone = Path(tmp) / "vagan"
        subprocess.run(["git", "clone", "-q", str(HERE.parent), str(clone)], check=True)
        commit = subprocess.run(["git", "-C", str(clone), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, check=True).stdout.strip()
        wall, peak_mb, _ = run_measured(["make", "-C", str(clone), "demo"])
        report = (clone / "demo-output" / "report" / "report.md").read_text()
    table_ii = _table(report, "Table II: quantitative results on the test set")
    training = _table(report, "Demo training: steps per stage")
    record = {
        "commit": commit, "wall_seconds": wall, "peak_rss_mb": peak_mb, "cpu": _cpu(), "cpus": os.cpu_count(),
        "platform": platform.platform(), "load_average_after": list(os.getloadavg()),
        "rmse_hu": {row[0]: row[-3] for row in table_ii},
        "training": [{"preset": r[0], "stage": r[1], "steps": int(r[2]), "step_cap": int(r[3]), "minutes_cap": r[4],
                      "ended_by": r[5]} for r in training],
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "demo.json").write_text(json.dumps(record, indent=2) + "\n")
    minutes, seconds = divmod(round(wall), 60)
    lines = [
        "# `make demo` from a fresh clone (install included)",
        "",
        f"{minutes}:{seconds:02d} wall, peak {peak_mb:.0f} MB resident, commit {commit}; CPU: {record['cpu']}, "
        f"{record['cpus']} CPUs.",
        "",
        "| preset | stage | steps trained | step cap | minutes cap | ended by |",
        "|---|---|---:|---:|---:|---|",
        *[f"| {' | '.join(r)} |" for r in training],
        "",
        "| method | RMSE [HU] |",
        "|---|---:|",
        *[f"| {name} | {rmse} |" for name, rmse in record["rmse_hu"].items()],
        "",
        "Command: `python benchmarks/bench_demo.py`.",
    ]
    (RESULTS / "demo.md").write_text("\n".join(lines) + "\n")
    print(re.sub(r"\n+", "\n", "\n".join(lines)))


if __name__ == "__main__":
    main()
