"""DICOM series I/O speed: write then read a 100-slice 512x512 CT series with vagan.io.dicom_read and dicom_write.

Reports slices/s and MB/s (MB of int16 pixel data, 10^6 bytes) for writing (from scratch and with a
template) and reading, median of ``--repeats`` runs, into benchmarks/results/dicom_io.{json,md}.

    python benchmarks/bench_dicom_io.py [--slices 100] [--size 512] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pydicom

from vagan.io.dicom import read_dicom_series, write_dicom_series

RESULTS = Path(__file__).resolve().parent / "results"


def _timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def run(slices: int, size: int, repeats: int, workdir: Path) -> dict:
    rng = np.random.default_rng(0)
    hu = rng.uniform(-1024.0, 3000.0, (slices, size, size)).astype(np.float32)
    mb = hu.size * 2 / 1e6  # int16 on disk
    times: dict[str, list[float]] = {"write_scratch": [], "write_template": [], "read": []}
    for r in range(repeats):
        scratch, derived = workdir / f"scratch{r}", workdir / f"derived{r}"
        t, _ = _timed(lambda: write_dicom_series(hu, scratch, series_description="bench"))
        times["write_scratch"].append(t)
        t, vol = _timed(lambda: read_dicom_series(scratch))
        times["read"].append(t)
        t, _ = _timed(lambda: write_dicom_series(vol.hu, derived, template=vol, series_description="bench derived"))
        times["write_template"].append(t)
        if np.abs(vol.hu - hu).max() > 0.5:
            raise RuntimeError("round trip error above 0.5 HU")
        shutil.rmtree(scratch)
        shutil.rmtree(derived)
    rows = {}
    for name, values in times.items():
        median = statistics.median(values)
        rows[name] = {"seconds": median, "slices_per_s": slices / median, "MB_per_s": mb / median, "runs": values}
    return {
        "benchmark": "dicom_io",
        "slices": slices,
        "size": size,
        "pixel_MB": mb,
        "repeats": repeats,
        "results": rows,
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "pydicom": pydicom.__version__,
            "numpy": np.__version__,
            "workdir": str(workdir),
        },
    }


def markdown(report: dict) -> str:
    lines = [
        f"# DICOM series I/O ({report['slices']} slices of {report['size']}x{report['size']}, int16)",
        "",
        f"Median of {report['repeats']} runs; {report['pixel_MB']:.1f} MB of pixel data per series.",
        "",
        "| operation | seconds | slices/s | MB/s |",
        "|---|---:|---:|---:|",
    ]
    for name, row in report["results"].items():
        lines.append(f"| {name} | {row['seconds']:.3f} | {row['slices_per_s']:.1f} | {row['MB_per_s']:.1f} |")
    m = report["machine"]
    lines += ["", f"Machine: {m['platform']}, {m['cpus']} CPUs, Python {m['python']}, pydicom {m['pydicom']}.",
              "Command: `python benchmarks/bench_dicom_io.py`", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=100)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="vagan-bench-dicom-") as tmp:
        report = run(args.slices, args.size, args.repeats, Path(tmp))
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "dicom_io.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out_dir / "dicom_io.md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
