"""Low-dose simulator: speed per 512x512 fan-beam slice, and the noise calibration of the default I0.

Speed: forward projection, FBP and the whole ``simulate_low_dose`` (forward + noise + FBP) on the
default Siemens-like geometry (1152 views x 736 channels), batch of 1 and of 4, on the CPU and on
CUDA when present; best and median of ``--repeats`` runs, in seconds per slice. Also the noise pool
of ``vagan simulate --from --set noise_pool=true`` (forward + the four unit noise images, one batched
FBP; vagan.data.noise_pool) with the real-series exposure model (body bowtie, angular modulation), and
a phantom slice's NDCT + LDCT pair made by two scans against ``LowDoseSimulator.scan_pair`` (one
projection for both).

Calibration: a 320 mm water cylinder on 512^2 pixels of 0.7 mm at the default ``I0``. It reports the
RMSE over the body (10 mm from the edge) of the quarter-minus-full difference, (a) for a quarter
dose inserted into a full dose (``source="ndct"``, as Mayo's pairs were made and as ``vagan
simulate`` makes them: the calibration target of about 50 HU) and (b) for two independent
``source="truth"`` simulations at dose 1 and 0.25, plus the full- and quarter-dose noise and the
I0 that would give exactly 50 HU for (a).

Writes benchmarks/results/simulator.{json,md}.

    python benchmarks/bench_simulator.py [--repeats 2] [--devices cpu cuda] [--no-calibration]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from vagan.physics.attenuation import hu_to_mu
from vagan.physics.simulate import LowDoseSimulator, SimulationConfig

RESULTS = Path(__file__).resolve().parent / "results"
SIZE = 512
PIXEL_MM = 0.7
TARGET_DIFF_HU = 50.0


def _grid() -> tuple[torch.Tensor, torch.Tensor]:
    centres = (torch.arange(SIZE, dtype=torch.float32) - (SIZE - 1) / 2) * PIXEL_MM
    y, x = torch.meshgrid(centres, centres, indexing="ij")
    return x, y


def water_cylinder(diameter_mm: float) -> torch.Tensor:
    """(SIZE, SIZE) HU: water inside a centred circle, air outside."""
    x, y = _grid()
    return torch.where(x**2 + y**2 <= (diameter_mm / 2) ** 2, 0.0, -1000.0)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, device: torch.device) -> tuple[float, object]:
    _sync(device)
    start = time.perf_counter()
    out = fn()
    _sync(device)
    return time.perf_counter() - start, out


def time_device(device: torch.device, batch: int, repeats: int) -> dict:
    cfg = SimulationConfig()
    sim = LowDoseSimulator(cfg, (SIZE, SIZE), PIXEL_MM, device=device)
    hu = water_cylinder(320.0).to(device).expand(batch, SIZE, SIZE).contiguous()
    mu = hu_to_mu(hu, cfg.mu_water_per_mm).unsqueeze(1)
    generator = torch.Generator(device=device).manual_seed(0)
    sim(hu, 0.25, generator)  # warm-up (CUDA kernels, allocator)
    times: dict[str, list[float]] = {"forward": [], "fbp": [], "simulate_total": [], "noise_pool": [],
                                     "pair_two_scans": [], "pair_one_projection": []}
    real = LowDoseSimulator(SimulationConfig(bowtie="body", tube_current_modulation=True), (SIZE, SIZE), PIXEL_MM,
                            device=device)
    for _ in range(repeats):
        t_fwd, sino = _timed(lambda: sim.projector(mu), device)
        t_fbp, _ = _timed(lambda sino=sino: sim.projector.fbp(sino, cfg.filter_window), device)
        t_sim, _ = _timed(lambda: sim(hu, 0.25, generator), device)
        times["forward"].append(t_fwd / batch)
        times["fbp"].append(t_fbp / batch)
        times["simulate_total"].append(t_sim / batch)
        t_pool, _ = _timed(lambda: real.noise_components(real.line_integrals(hu), None, generator, 2), device)
        times["noise_pool"].append(t_pool / batch)
        # a phantom slice's NDCT and LDCT: scanning the truth and then the reconstructed NDCT, against
        # LowDoseSimulator.scan_pair (one projection, the LDCT noise inserted into the NDCT's projections)
        t_two, _ = _timed(lambda: sim(sim(hu, 1.0, generator), 0.25, generator, source="ndct"), device)
        t_one, _ = _timed(lambda: sim.scan_pair(hu, 0.25, generator), device)
        times["pair_two_scans"].append(t_two / batch)
        times["pair_one_projection"].append(t_one / batch)
    return {
        name: {"seconds_per_slice": statistics.median(v), "best_seconds_per_slice": min(v), "runs": v}
        for name, v in times.items()
    }


def calibrate(diameter_mm: float = 320.0) -> dict:
    cfg = SimulationConfig()
    sim = LowDoseSimulator(cfg, (SIZE, SIZE), PIXEL_MM)
    truth = water_cylinder(diameter_mm)
    x, y = _grid()
    body = x**2 + y**2 <= (diameter_mm / 2 - 10.0) ** 2
    generator = torch.Generator().manual_seed(2024)
    full = sim(truth, 1.0, generator, source="truth")
    quarter = sim(truth, 0.25, generator, source="truth")
    quarter_inserted = sim(full, 0.25, generator, source="ndct")

    def rms(image: torch.Tensor) -> float:
        return float(image[body].pow(2).mean().sqrt())

    independent = rms(quarter - full)
    return {
        "phantom": f"water cylinder {diameter_mm:g} mm, {SIZE}x{SIZE} pixels of {PIXEL_MM} mm, body = 10 mm inside the edge",
        "i0": cfg.i0,
        "electronic_noise_var": cfg.electronic_noise_var,
        "filter_window": cfg.filter_window,
        "full_dose_noise_hu": rms(full - truth),
        "quarter_dose_noise_hu": rms(quarter - truth),
        "full_dose_mean_error_hu": float((full - truth)[body].mean()),
        "quarter_dose_mean_error_hu": float((quarter - truth)[body].mean()),
        "quarter_minus_full_rmse_hu_independent": independent,
        "quarter_minus_full_rmse_hu_inserted": rms(quarter_inserted - full),
        "i0_for_50_hu_inserted": cfg.i0 * (rms(quarter_inserted - full) / TARGET_DIFF_HU) ** 2,
    }


def _cpu() -> str:
    """The CPU model and the flags that decide vagan's precision (from /proc/cpuinfo)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown"
    model = next((ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("model name")), "unknown")
    flags = next((ln.split(":", 1)[1].split() for ln in text.splitlines() if ln.startswith("flags")), [])
    wanted = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in flags]
    return f"{model} ({', '.join(wanted) or 'no AVX2'})"


def markdown(report: dict) -> str:
    machine = report["machine"]
    lines = [
        "# Low-dose simulator (512x512, fan beam 1152 views x 736 channels)",
        "",
        (
            f"Seconds per slice: best of {report['repeats']} runs (median in brackets; other jobs share the "
            f"machine, so the best is the fairest figure). torch {machine['torch']}, "
            f"{machine['cpus']} CPUs, {machine['torch_threads']} torch threads, load average at start "
            f"{machine['load_average']}."
        ),
        "",
        f"CPU: {machine.get('cpu', '?')}.",
        "",
        "| device | batch | forward | FBP | simulate (fwd + noise + FBP) | noise pool (fwd + 4 noise FBPs) "
        "| NDCT + LDCT pair: two scans | pair: one projection (`scan_pair`) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in report["timing"]:
        r = row["results"]
        cells = [
            f"{r[k]['best_seconds_per_slice']:.2f} ({r[k]['seconds_per_slice']:.2f})"
            for k in ("forward", "fbp", "simulate_total", "noise_pool", "pair_two_scans", "pair_one_projection")
        ]
        lines.append(f"| {row['device']} | {row['batch']} | " + " | ".join(cells) + " |")
    cal = report.get("calibration")
    if cal:
        lines += [
            "",
            f"## Noise calibration ({cal['phantom']})",
            "",
            (
                f"I0 = {cal['i0']:.3g} photons/ray, electronic noise {cal['electronic_noise_var']:g} counts^2, "
                f"{cal['filter_window']} window."
            ),
            "",
            "| quantity | HU |",
            "|---|---:|",
            f"| full-dose noise (RMSE vs truth) | {cal['full_dose_noise_hu']:.1f} |",
            f"| quarter-dose noise (RMSE vs truth) | {cal['quarter_dose_noise_hu']:.1f} |",
            f"| quarter - full, quarter inserted into the full dose (Mayo-like; target about 50) | {cal['quarter_minus_full_rmse_hu_inserted']:.1f} |",
            f"| quarter - full, independent truth simulations | {cal['quarter_minus_full_rmse_hu_independent']:.1f} |",
            f"| mean error, full / quarter dose | {cal['full_dose_mean_error_hu']:+.2f} / {cal['quarter_dose_mean_error_hu']:+.2f} |",
            "",
            f"I0 that would give exactly 50 HU (inserted): {cal['i0_for_50_hu_inserted']:.3g}.",
        ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--devices", nargs="*", default=None, help="default: cpu, plus cuda when available")
    parser.add_argument("--batches", nargs="*", type=int, default=[1, 4])
    parser.add_argument("--no-calibration", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    devices = args.devices or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    report: dict = {
        "benchmark": "simulator",
        "image": [SIZE, SIZE],
        "pixel_spacing_mm": PIXEL_MM,
        "geometry": SimulationConfig().make_geometry().__repr__(),
        "repeats": args.repeats,
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "load_average": [round(v, 2) for v in os.getloadavg()],
            "cpu": _cpu(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        },
        "timing": [],
    }
    for name in devices:
        for batch in args.batches:
            results = time_device(torch.device(name), batch, args.repeats)
            report["timing"].append({"device": name, "batch": batch, "results": results})
            print(name, batch, {k: round(v["best_seconds_per_slice"], 3) for k, v in results.items()}, flush=True)
    if not args.no_calibration:
        report["calibration"] = calibrate()
        print(json.dumps(report["calibration"], indent=1))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "simulator.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "simulator.md").write_text(markdown(report))


if __name__ == "__main__":
    main()
