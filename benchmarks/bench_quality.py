"""What the task-based quality section costs `vagan evaluate`: wall time and peak memory of the same
evaluation with and without ``quality.enabled``, each in its own process.

Simulates a small test set with `vagan simulate` (one patient, ``--slices`` slices of ``--size``² at
quarter dose, the default scanner), then runs ``vagan evaluate ldct bm3d:SIGMA MODEL --subset all
--fid-net none`` twice, the second time with the quality phantom at ``--realisations`` scans per
class (the demo's lesions and rods by default). The difference is the section's cost; the ratio
compares it with the rest of the evaluation measured in the same run. Writes
benchmarks/results/quality_SIZE.{json,md}.

    python benchmarks/bench_quality.py [--size 256 --realisations 8]
    python benchmarks/bench_quality.py --size 512 --realisations 24 --lesions 3,5,7,10 --contrasts 5,10,20,30 \
        --rods 50,100,300   # the study's default section (about 12 min more)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--slices", type=int, default=2)
    parser.add_argument("--realisations", type=int, default=8)
    parser.add_argument("--lesions", default="5,10", help="lesion diameters [mm], comma separated")
    parser.add_argument("--contrasts", default="10,30", help="lesion contrasts [HU], comma separated")
    parser.add_argument("--rods", default="100,300", help="TTF rod contrasts [HU], comma separated")
    parser.add_argument("--model", default="g_psnr-phantom512", help="a shipped model or a run folder")
    parser.add_argument("--bm3d-sigma", type=float, default=45.5)
    args = parser.parse_args()
    vagan = [sys.executable, "-m", "vagan"]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        run_measured([*vagan, "simulate", str(data), "--set", "patients=1", "--set",
                      f"slices_per_patient={args.slices}", "--set", f"size={args.size}", "--set", "dose=0.25"])
        base = [*vagan, "evaluate", "ldct", f"bm3d:{args.bm3d_sigma:g}", args.model, "--data", str(data),
                "--subset", "all", "--fid-net", "none"]
        quality = ["--set", "quality.enabled=true", "--set", f"quality.realisations={args.realisations}",
                   "--set", f"quality.lesion_diameters_mm=[{args.lesions}]",
                   "--set", f"quality.lesion_contrasts_hu=[{args.contrasts}]",
                   "--set", f"quality.rod_contrasts_hu=[{args.rods}]"]
        for name, extra in (("without quality", []), ("with quality", quality)):
            wall, peak_mb, _ = run_measured([*base, "--out", str(Path(tmp) / name.replace(" ", "-")), *extra])
            rows.append({"case": name, "wall_s": wall, "peak_rss_mb": peak_mb})
            print(rows[-1], flush=True)
    import torch

    cost = rows[1]["wall_s"] - rows[0]["wall_s"]
    info = {"torch": torch.__version__, "cpu_count": os.cpu_count(), "platform": platform.platform(),
            "threads": torch.get_num_threads()}
    RESULTS.mkdir(exist_ok=True)
    stem = f"quality_{args.size}"
    (RESULTS / f"{stem}.json").write_text(json.dumps({"machine": info, "args": vars(args), "rows": rows,
                                                      "quality_cost_s": cost}, indent=2) + "\n")
    command = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items())
    lines = [f"# Cost of the task-based quality section ({args.size}², {args.realisations} scans per class)", "",
             f"`vagan evaluate ldct bm3d:{args.bm3d_sigma:g} {args.model}` on {args.slices} simulated test slices "
             f"of {args.size}², each case a fresh process; the quality phantom: {args.realisations} signal-present "
             f"and signal-absent scans per dose (4 x {args.realisations} simulated, 2 x {args.realisations} denoised by "
             f"BM3D and by the model), lesions {args.lesions} mm x {args.contrasts} HU, rods {args.rods} HU.", "",
             "| case | wall [s] | peak RSS [MB] |", "|---|---:|---:|"]
    lines += [f"| {r['case']} | {r['wall_s']:.0f} | {r['peak_rss_mb']:.0f} |" for r in rows]
    lines += ["", f"The section adds {cost:.0f} s, {rows[1]['wall_s'] / rows[0]['wall_s']:.1f}x the evaluation "
              "without it.", "",
              f"Machine: {info['platform']}, {info['cpu_count']} CPUs, torch {info['torch']} ({info['threads']} threads). "
              f"Command: `python benchmarks/bench_quality.py {command}`"]
    (RESULTS / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
