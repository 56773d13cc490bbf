"""`vagan denoise` on a whole 512x512 DICOM series, as a user runs it: wall time, slices/s, peak RSS.

Writes a phantom series of ``--slices`` slices (noise of 40 HU) with vagan's DICOM writer, makes a
full-width run folder per preset (one training step on a small phantom set: speed and memory do
not depend on the weights), then times ``python -m vagan denoise --model RUN SERIES OUT`` in a
subprocess (default precision ``auto``, default batch) and reads its peak resident memory.
Writes benchmarks/results/denoise_series.{json,md}.

    python benchmarks/bench_denoise_series.py [--slices 300] [--presets g_psnr:300,vagan:64]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from pathlib import Path

from subprocess_peak import run_measured

RESULTS = Path(__file__).parent / "results"


def write_series(folder: Path, slices: int) -> None:
    import numpy as np

    from vagan.io.dicom import write_dicom_series
    from vagan.physics.phantom import make_phantom_slice

    clean = make_phantom_slice(512, 0.7, np.random.default_rng(0))
    noise = np.random.default_rng(1).normal(0, 40, (slices, 512, 512)).astype(np.float32)
    write_dicom_series(clean[None] + noise, folder, series_description="bench", patient_id="BENCH",
                       pixel_spacing_mm=(0.7, 0.7), slice_thickness_mm=1.0)


def make_run(preset: str, run: Path) -> None:
    import numpy as np

    from vagan.data.patches import PatchPairDataset, SlicePair
    from vagan.training.config import load_config
    from vagan.training.trainer import TrainData, train

    rng = np.random.default_rng(0)
    ndct = np.full((96, 96), -1000.0, np.float32)
    ndct[10:-10, 10:-10] = 40.0
    pairs = [SlicePair(ndct + rng.normal(0, 40, ndct.shape).astype(np.float32), ndct, "B", i) for i in range(2)]
    cfg = load_config(preset, ["stages.*.max_steps=1", "stages.*.batch_size=2", "train.progress=false",
                               "train.perceptual=vgg19_random", "train.num_workers=0"])
    train(cfg, run, data=TrainData(PatchPairDataset(pairs, 64, 4, seed=0), []))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", default="g_psnr:300,vagan:64", help="preset:slices, comma separated")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for item in args.presets.split(","):
            preset, slices = item.split(":")
            series = tmp / f"series{slices}"
            if not series.exists():
                write_series(series, int(slices))
            run = tmp / f"run-{preset}"
            make_run(preset, run)
            command = [sys.executable, "-m", "vagan", "denoise", "--model", str(run), str(series),
                       str(tmp / f"out-{preset}")]
            wall, peak_mb, stderr = run_measured(command)
            precision = next((line.split("precision: ", 1)[1] for line in stderr.splitlines()
                              if line.startswith("precision: ")), "")
            rows.append({"preset": preset, "slices": int(slices), "wall_s": wall, "slices_per_s": int(slices) / wall,
                         "peak_rss_mb": peak_mb, "precision": precision})
            print(rows[-1], flush=True)
    import torch

    info = {"torch": torch.__version__, "cpu_count": os.cpu_count(), "platform": platform.platform()}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "denoise_series.json").write_text(json.dumps({"machine": info, "rows": rows}, indent=2))
    from vagan.inference.denoise import DEFAULT_BATCH

    lines = ["# `vagan denoise` on a 512x512 DICOM series (CPU, defaults)", "",
             f"Whole command in a subprocess: start-up, reading the series, denoising at the default batch ({DEFAULT_BATCH['cpu']}) and "
             "precision (`auto`), writing the derived series. Peak RSS of that process alone.", "",
             "| preset | slices | wall [s] | slices/s | peak RSS [MB] | precision |", "|---|---:|---:|---:|---:|---|"]
    lines += [f"| {r['preset']} | {r['slices']} | {r['wall_s']:.0f} | {r['slices_per_s']:.2f} | {r['peak_rss_mb']:.0f} | "
              f"{r['precision']} |" for r in rows]
    lines += ["", f"Machine: {info['platform']}, {info['cpu_count']} CPUs, torch {info['torch']}. "
              f"Command: `python benchmarks/bench_denoise_series.py --presets {args.presets}`"]
    (RESULTS / "denoise_series.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
