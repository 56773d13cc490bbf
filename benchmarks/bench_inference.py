"""Inference time and peak memory per 512x512 slice for every method, side by side in one run.

Each method runs in a fresh subprocess on the same phantom slice (so peak resident memory is its
own): one warm-up call, then ``--repeats`` timed calls. Networks use the presets' default widths
(random weights: speed does not depend on them). BM3D (the ``bm3d`` package, sigma estimated) is
the reference for the ratios. Writes benchmarks/results/inference.{json,md}.

    python benchmarks/bench_inference.py [--repeats 3] [--device cpu|cuda] [--amp]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
METHODS = ("bm3d", "g_psnr", "ga_psnr", "vagan", "red_cnn", "wgan_vgg")


def run_one(method: str, device_name: str, repeats: int, amp: bool) -> dict:
    import numpy as np
    import torch

    from vagan.inference.bm3d_denoiser import BM3DDenoiser
    from vagan.inference.denoise import NetworkDenoiser
    from vagan.inference.model_loading import TrainedModel
    from vagan.physics.phantom import make_phantom_slice
    from vagan.training.build import build_generator
    from vagan.training.config import load_config

    hu = make_phantom_slice(512, 0.7, np.random.default_rng(0))[None]
    hu = hu + np.random.default_rng(1).normal(0, 40, hu.shape).astype(np.float32)
    device = torch.device(device_name)
    if method == "bm3d":
        denoiser = BM3DDenoiser()
    else:
        cfg = load_config(method)
        torch.manual_seed(0)
        model = TrainedModel(build_generator(cfg.model), cfg, Path("."), cfg.stages[-1].name)
        denoiser = NetworkDenoiser(model, batch_size=1, device=device, amp=amp)
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    denoiser(hu)
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        denoiser(hu)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    ms = [1000 * t for t in times]
    out = {"method": method, "ms_mean": sum(ms) / len(ms), "ms_min": min(ms),
           "ms_std": float(np.std(ms, ddof=1)) if len(ms) > 1 else 0.0,
           "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
           "rss_added_mb": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base_rss) / 1024}
    if device.type == "cuda":
        out["peak_cuda_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--amp", action="store_true")
    parser.add_argument("--tag", default="")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one, args.device, args.repeats, args.amp)))
        return
    rows = []
    for method in METHODS:
        cmd = [sys.executable, __file__, "--one", method, "--device", args.device, "--repeats", str(args.repeats)]
        proc = subprocess.run(cmd + (["--amp"] if args.amp else []), capture_output=True, text=True, check=True)
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        print(rows[-1], flush=True)
    reference = rows[0]["ms_mean"]
    for row in rows:
        row["speed_vs_bm3d"] = reference / row["ms_mean"]
    import torch

    info = {"device": args.device if args.device == "cpu" else torch.cuda.get_device_name(0), "amp": args.amp,
            "torch": torch.__version__, "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
            "platform": platform.platform(), "repeats": args.repeats}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"inference{args.tag}.json").write_text(json.dumps({"machine": info, "rows": rows}, indent=2))
    cuda = args.device != "cpu"
    lines = [f"# Inference per 512x512 slice ({info['device']}, amp={args.amp})", "",
             "One slice, batch 1, after one warm-up call; each method in its own process. "
             "Reference: BM3D (sigma estimated per slice).", "",
             "| method | ms / slice (mean ± std) | x faster than BM3D | peak RSS [MB] |" + (" peak CUDA [MB] |" if cuda else ""),
             "|---|---:|---:|---:|" + ("---:|" if cuda else "")]
    for r in rows:
        lines.append(f"| {r['method']} | {r['ms_mean']:.0f} ± {r['ms_std']:.0f} | {r['speed_vs_bm3d']:.2f} | "
                     f"{r['peak_rss_mb']:.0f} |" + (f" {r.get('peak_cuda_mb', 0):.0f} |" if cuda else ""))
    lines += ["", f"Machine: {info['platform']}, {info['cpu_count']} CPUs, torch {info['torch']} ({info['threads']} "
              f"threads). Command: `python benchmarks/bench_inference.py{' --device ' + args.device if cuda else ''}"
              f"{' --amp' if args.amp else ''}`"]
    (RESULTS / f"inference{args.tag}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
