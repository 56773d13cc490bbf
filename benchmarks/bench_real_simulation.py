"""How realistic is `vagan simulate --from` on a real series? Per patient of a simulated dataset:
the NDCT's own noise in uniform soft tissue, the noise the LDCT added there against the rule
sqrt(1/a - 1) x own noise, the mean shift and std of the added noise in soft tissue and in the body.

    vagan simulate /tmp/pancreas-q25 --from ../shared/data/real-ct/pancreatic-ct-cbct-seg --dose 0.25
    python benchmarks/bench_real_simulation.py /tmp/pancreas-q25 --out benchmarks/results/real_simulation \
        --simulate-seconds S   # the wall time of the `vagan simulate` run, e.g. from /usr/bin/time

Writes OUT.json and OUT.md (the manifest's exposure record included), and prints the CPU.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
from pathlib import Path

import numpy as np
from scipy import ndimage

from vagan.data.noise_matching import measured_noise, roi_std
from vagan.io.mayo import ANY_THICKNESS, list_mayo_patients, load_mayo_pair


def soft_tissue(hu: np.ndarray) -> np.ndarray:
    smooth = ndimage.uniform_filter(hu, 7)
    return (smooth > -100) & (smooth < 150) & ndimage.binary_erosion(hu > -300, iterations=5)


def assess(root: Path) -> dict:
    manifest = json.loads((root / "manifest.json").read_text())
    dose = float(manifest["dose"])
    rule = math.sqrt(1.0 / dose - 1.0)
    rows = []
    for pid in list_mayo_patients(root, ANY_THICKNESS):
        pair = load_mayo_pair(root, pid, ANY_THICKNESS)
        pixel = float(pair.ndct.pixel_spacing_mm[0])
        ratios, shifts, soft_std, body_std = [], [], [], []
        for nd, ld in zip(pair.ndct.hu, pair.ldct.hu):
            added = ld - nd
            rois = measured_noise(nd, pixel)
            if rois is not None:
                ratios.append(roi_std(added, rois) / rois.noise_hu)
            soft = soft_tissue(nd)
            if soft.sum() > 500:
                shifts.append(float(added[soft].mean()))
                soft_std.append(float(added[soft].std()))
            body = ndimage.binary_erosion(nd > -300, iterations=3)
            body_std.append(float(added[body].std()))
        entry = next(p for p in manifest["patients"] if p["id"] == pid)
        rows.append({"patient": pid, "slices": len(pair.ndct.hu), "pixel_mm": pixel,
                     "exposure": entry.get("exposure"),
                     "added_over_own_noise_median": float(np.median(ratios)) if ratios else None,
                     "added_over_own_noise_p10_p90": [float(np.percentile(ratios, 10)), float(np.percentile(ratios, 90))]
                     if ratios else None,
                     "soft_tissue_shift_hu_max_abs": float(np.max(np.abs(shifts))) if shifts else None,
                     "soft_tissue_shift_hu_mean": float(np.mean(shifts)) if shifts else None,
                     "soft_tissue_added_std_hu_median": float(np.median(soft_std)) if soft_std else None,
                     "body_added_std_hu_median": float(np.median(body_std))})
    return {"dataset": str(root), "dose": dose, "rule_sqrt_1_over_a_minus_1": rule, "patients": rows}


def markdown(result: dict, cpu: str, seconds: float | None) -> str:
    lines = [f"# `vagan simulate --from` on real series ({result['dose']:g} dose)", "",
             f"Rule: the added noise is sqrt(1/a - 1) = {result['rule_sqrt_1_over_a_minus_1']:.3f} x the series' "
             "own noise in uniform soft tissue.", f"CPU: {cpu}", "",
             "| patient | slices | own noise [HU] | I0 (median, range) | added / own (median, p10-p90) | "
             "soft-tissue shift [HU] (max abs) | added std, soft tissue / body [HU] |", "|---|---|---|---|---|---|---|"]
    for r in result["patients"]:
        exp = r["exposure"] or {}
        own = exp.get("series_noise_hu")
        lo, hi = r["added_over_own_noise_p10_p90"] or (float("nan"), float("nan"))
        lines.append(f"| {r['patient']} | {r['slices']} | {own:.1f} | {exp.get('i0_median', float('nan')):.3g} "
                     f"({exp.get('i0_min', float('nan')):.3g}-{exp.get('i0_max', float('nan')):.3g}, {exp.get('profile_from')}) | "
                     f"{r['added_over_own_noise_median']:.2f} ({lo:.2f}-{hi:.2f}) | {r['soft_tissue_shift_hu_max_abs']:.2f} | "
                     f"{r['soft_tissue_added_std_hu_median']:.1f} / {r['body_added_std_hu_median']:.1f} |")
    if seconds:
        slices = sum(r["slices"] for r in result["patients"])
        lines += ["", f"`vagan simulate --from` took {seconds / 60:.1f} min wall for {slices} slices "
                      f"({seconds / slices:.1f} s per slice, exposure matching included) on this CPU."]
    lines += ["", "Commands: the module docstring of `benchmarks/bench_real_simulation.py`."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", type=Path)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/real_simulation"))
    parser.add_argument("--simulate-seconds", type=float, default=None, help="wall time of the simulate run")
    args = parser.parse_args()
    cpu = subprocess.run("lscpu | sed -n 's/^Model name: *//p'", shell=True, capture_output=True, text=True).stdout.strip()
    flags = subprocess.run("grep -o -w -E 'avx2|avx512f|avx512_bf16|amx_bf16' /proc/cpuinfo | sort -u | tr '\\n' ' '",
                           shell=True, capture_output=True, text=True).stdout.strip()
    result = assess(args.dataset) | {"cpu": cpu, "cpu_flags": flags}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(result, indent=2))
    result["simulate_seconds"] = args.simulate_seconds
    text = markdown(result, f"{cpu} ({flags})", args.simulate_seconds)
    args.out.with_suffix(".md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
