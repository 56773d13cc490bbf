"""Model observers: how far d' moves between repeats of the same quality assessment.

The report's d' intervals resample the test scores with the observer's template fixed, so they
leave out the noise of training the template (docs/quality.md). This run measures the whole spread:
it scans the quality phantom ``--groups x --realisations`` times per class at each dose (the
simulator of ``vagan simulate``, fresh quantum noise in every scan), splits the scans into
independent groups the size of one assessment, runs the CHO and the NPWE on each group exactly as
``vagan evaluate`` does (first half of the scans trains, second half tests), and reports the mean
and standard deviation of d' over the groups, beside the sd that the report's bootstrap interval
implies (test scores only). It also scores each group's test half with an NPWE template fitted to
the other groups' scans (2 x (groups - 1) times a training half, none of this group's scans), which shows what the
noise of a group's own training half costs the NPWE.

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
from vagan.quality.assessment import channel_width_px, simulate_quality_images
from vagan.quality.observers import d_prime, detectability, eye_filter, npwe_template

RESULTS = Path(__file__).resolve().parent / "results"


def _npwe_d(template: np.ndarray, present: np.ndarray, absent: np.ndarray) -> float:
    flat = template.ravel()
    return d_prime(present.reshape(len(present), -1) @ flat, absent.reshape(len(absent), -1) @ flat)


def measure(args: argparse.Namespace) -> dict:
    phantom = make_quality_phantom(args.size, args.pixel_mm, args.diameters, args.contrasts, args.rods)
    k, groups = args.realisations, args.groups
    eye = eye_filter(phantom.roi_px, phantom.pixel_mm)
    rows = []
    for dose in args.doses:
        scans = simulate_quality_images(phantom, SimulationConfig(), dose, k * groups, seed=int(1000 * dose))
        for lesion in phantom.lesion_types:
            sites = phantom.lesions_of(lesion)
            width = channel_width_px(lesion.diameter_mm, phantom.pixel_mm)
            present_all = roi_stack(scans.present, sites, phantom.roi_px)
            absent_all = roi_stack(scans.absent, sites, phantom.roi_px)
            found: dict[str, list[float]] = {name: [] for name in (
                "cho", "npwe", "npwe_other_groups_template", "cho_test_sd", "npwe_test_sd")}
            n_train = (k // 2) * len(sites)
            per_group = k * len(sites)  # roi_stack keeps each scan's copies together, scan after scan
            for g in range(groups):
                part = slice(g * per_group, (g + 1) * per_group)
                present, absent = present_all[part], absent_all[part]
                cho = detectability(present, absent, "cho", channel_width_px=width, n_train=n_train,
                                    resamples=args.resamples)
                npwe = detectability(present, absent, "npwe", pixel_mm=phantom.pixel_mm, disc_radius_px=width / 2,
                                     n_train=n_train, resamples=args.resamples)
                found["cho"].append(cho.d_prime.estimate)
                found["npwe"].append(npwe.d_prime.estimate)
                # the bootstrap interval covers the test scores only: its half-width / 1.96 is their sd
                found["cho_test_sd"].append((cho.d_prime.high - cho.d_prime.low) / 3.92)
                found["npwe_test_sd"].append((npwe.d_prime.high - npwe.d_prime.low) / 3.92)
                # an NPWE template fitted to the other groups' scans (10x a training half at 6 groups; no test scan)
                others = np.ones(len(present_all), bool)
                others[part] = False
                template = npwe_template(present_all[others], absent_all[others], eye, width / 2)
                found["npwe_other_groups_template"].append(_npwe_d(template, present[n_train:], absent[n_train:]))
            rows.append({"dose": dose, "lesion": lesion.name,
                         **{f"{name}_mean": float(np.mean(v)) for name, v in found.items()},
                         **{f"{name}_sd": float(np.std(v, ddof=1)) for name, v in found.items()
                            if not name.endswith("test_sd")}})
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
        "mean ± sd of d' over the assessments; 'test scores' is the sd the report's bootstrap interval "
        "implies (its width / 3.92, mean over the assessments), which leaves out the training half. The last "
        "column scores the same test halves with an NPWE template fitted to the other assessments' scans "
        f"({2 * (result['groups'] - 1)} times a training half, none of the test half): what a small training half "
        "costs the NPWE.",
        "",
        "| dose | lesion | CHO d' | CHO sd, test scores | NPWE d' | NPWE sd, test scores | "
        "NPWE d', template from the other scans |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        lines.append(f"| {r['dose']:g} | {r['lesion']} | {r['cho_mean']:.2f} ± {r['cho_sd']:.2f} | "
                     f"{r['cho_test_sd_mean']:.2f} | {r['npwe_mean']:.2f} ± {r['npwe_sd']:.2f} | "
                     f"{r['npwe_test_sd_mean']:.2f} | "
                     f"{r['npwe_other_groups_template_mean']:.2f} ± {r['npwe_other_groups_template_sd']:.2f} |")
    lines += ["", f"`python benchmarks/bench_observers.py --size {result['size']} --pixel-mm {result['pixel_mm']} "
              f"--realisations {result['realisations']} --groups {result['groups']}` ({seconds / 60:.1f} min, "
              f"torch {torch.__version__}, {platform.machine()}, {torch.get_num_threads()} threads)."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--pixel-mm", type=float, default=1.4)
    parser.add_argument("--realisations", type=int, default=8, help="scans per class in one assessment")
    parser.add_argument("--groups", type=int, default=6, help="independent assessments (at least 2)")
    parser.add_argument("--resamples", type=int, default=500, help="bootstrap resamples of each interval")
    parser.add_argument("--doses", type=float, nargs="+", default=[1.0, 0.25])
    parser.add_argument("--diameters", type=float, nargs="+", default=[5.0, 10.0])
    parser.add_argument("--contrasts", type=float, nargs="+", default=[10.0, 30.0])
    parser.add_argument("--rods", type=float, nargs="+", default=[100.0, 300.0], help="TTF rods (they shape the layout)")
    args = parser.parse_args()
    if args.groups < 2:
        parser.error(f"--groups must be at least 2 (an sd needs two assessments), got {args.groups}")
    start = time.perf_counter()
    result = measure(args)
    seconds = time.perf_counter() - start
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "observers.json").write_text(json.dumps({**result, "seconds": seconds}, indent=2) + "\n")
    (RESULTS / "observers.md").write_text(markdown(result, seconds))
    print(f"wrote {RESULTS / 'observers.md'}")


if __name__ == "__main__":
    main()
