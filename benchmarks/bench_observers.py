"""Model observers: how far d' moves between repeats of the same quality assessment.

The report's d' intervals resample the test scores with the observer's template fixed, so they
leave out the noise of training the template (docs/quality.md). This run measures the whole spread:
it scans the quality phantom ``--groups x --realisations`` times per class at each dose (the
simulator of ``vagan simulate``, fresh quantum noise in every scan), splits the scans into
independent groups the size of one assessment, runs the CHO and the NPWE on each group exactly as
``vagan evaluate`` does (first half of the scans trains, second half tests), and reports the mean
and standard deviation of d' over the groups. It also scores each group's test half with an NPWE
template fitted to the mean signal of all scans of that dose, which shows what the noise of a
group's own training half costs the NPWE.

Writes benchmarks/results/observers.{json,md}.

    python benchmarks/bench_observers.py [--size 256 --pixel-mm 1.4 --realisations 8 --groups 6]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from vagan.physics.quality_phantom import make_quality_phantom, roi_stack
from vagan.physics.simulate import SimulationConfig
from vagan.quality.assessment import simulate_quality_images
from vagan.quality.observers import d_prime, detectability, eye_filter, npwe_template

RESULTS = Path(__file__).resolve().parent / "results"


def _npwe_d(template: np.ndarray, present: np.ndarray, absent: np.ndarray) -> float:
    flat = template.ravel()
    return d_prime(present.reshape(len(present), -1) @ flat, absent.reshape(len(absent), -1) @ flat)


def measure(args: argparse.Namespace) -> dict:
    phantom = make_quality_phantom(args.size, args.pixel_mm, args.diameters, args.contrasts, args.rods)
    k, groups = args.realisations, args.groups
    rows = []
    for dose in args.doses:
        scans = simulate_quality_images(phantom, SimulationConfig(), dose, k * groups, seed=int(1000 * dose))
        for lesion in phantom.lesion_types:
            sites = phantom.lesions_of(lesion)
            width = max(2.0, lesion.diameter_mm / phantom.pixel_mm)  # as vagan.quality.assessment
            present_all = roi_stack(scans.present, sites, phantom.roi_px)
            absent_all = roi_stack(scans.absent, sites, phantom.roi_px)
            eye = eye_filter(phantom.roi_px, phantom.pixel_mm)
            pooled = npwe_template(present_all, absent_all, eye, width / 2)
            found: dict[str, list[float]] = {"cho": [], "npwe": [], "npwe_pooled_template": []}
            n_train = (k // 2) * len(sites)
            for g in range(groups):
                part = slice(g * k * len(sites), (g + 1) * k * len(sites))  # roi_stack keeps scans together
                present, absent = present_all[part], absent_all[part]
                found["cho"].append(detectability(present, absent, "cho", channel_width_px=width,
                                                  n_train=n_train, resamples=1).d_prime.estimate)
                found["npwe"].append(detectability(present, absent, "npwe", pixel_mm=phantom.pixel_mm,
                                                   disc_radius_px=width / 2, n_train=n_train,
                                                   resamples=1).d_prime.estimate)
                found["npwe_pooled_template"].append(_npwe_d(pooled, present[n_train:], absent[n_train:]))
            rows.append({"dose": dose, "lesion": lesion.name,
                         **{f"{name}_mean": float(np.mean(v)) for name, v in found.items()},
                         **{f"{name}_sd": float(np.std(v, ddof=1)) for name, v in found.items()}})
            print(rows[-1], flush=True)
    return {"size": args.size, "pixel_mm": args.pixel_mm, "realisations": k, "groups": groups,
            "copies_per_scan": len(phantom.lesions_of(phantom.lesion_types[0])), "rows": rows}


def markdown(result: dict, seconds: float) -> str:
    lines = [
        "# Model observers: spread of d' between repeated assessments",
        "",
        f"{result['groups']} independent assessments of {result['realisations']} scans per class each "
        f"({result['size']}² pixels of {result['pixel_mm']} mm, {result['copies_per_scan']} copies of each lesion "
        "per scan), each trained on its first half and tested on its second, as `vagan evaluate` does. "
        "mean ± sd of d' over the assessments. The last column scores the same test halves with an NPWE "
        "template fitted to all scans of that dose: the gap to the NPWE column is what the noise of a "
        "small training half costs.",
        "",
        "| dose | lesion | CHO d' | NPWE d' | NPWE d', template from all scans |",
        "|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        lines.append(f"| {r['dose']:g} | {r['lesion']} | {r['cho_mean']:.2f} ± {r['cho_sd']:.2f} | "
                     f"{r['npwe_mean']:.2f} ± {r['npwe_sd']:.2f} | "
                     f"{r['npwe_pooled_template_mean']:.2f} ± {r['npwe_pooled_template_sd']:.2f} |")
    lines += ["", f"`python benchmarks/bench_observers.py --size {result['size']} --pixel-mm {result['pixel_mm']} "
              f"--realisations {result['realisations']} --groups {result['groups']}` ({seconds / 60:.1f} min, "
              f"torch {torch.__version__}, {platform.machine()}, {torch.get_num_threads()} threads)."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--pixel-mm", type=float, default=1.4)
    parser.add_argument("--realisations", type=int, default=8, help="scans per class in one assessment")
    parser.add_argument("--groups", type=int, default=6, help="independent assessments")
    parser.add_argument("--doses", type=float, nargs="+", default=[1.0, 0.25])
    parser.add_argument("--diameters", type=float, nargs="+", default=[5.0, 10.0])
    parser.add_argument("--contrasts", type=float, nargs="+", default=[10.0, 30.0])
    parser.add_argument("--rods", type=float, nargs="+", default=[100.0, 300.0], help="TTF rods (they shape the layout)")
    args = parser.parse_args()
    start = time.perf_counter()
    result = measure(args)
    seconds = time.perf_counter() - start
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "observers.json").write_text(json.dumps({**result, "seconds": seconds}, indent=2) + "\n")
    (RESULTS / "observers.md").write_text(markdown(result, seconds))
    print(f"wrote {RESULTS / 'observers.md'}")


if __name__ == "__main__":
    main()
