"""Training throughput per preset and stage: patches/s for batch 32 of 64x64 patches, fp32 against
the fast path (``auto`` precision: bf16 autocast where native and faster; channels-last in both).

Every stage of every preset runs its own step (a GAN step = G step + D step) with the default
widths; the g_psnr PSNR step in fp32 measured in the same run is the reference of the ratios.
A second table measures the data side: seconds per batch drawn by the DataLoader (0 and 1
workers) against the step time, to show whether a step ever waits for its patches.
Writes benchmarks/results/training.json and .md.

    python benchmarks/bench_training.py [--steps 3] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from vagan.data.patches import PatchPairDataset, SlicePair
from vagan.precision import Precision, resolve_precision, to_channels_last
from vagan.training.build import (
    build_discriminator,
    build_feature_net,
    build_generator,
    needs_feature_net,
)
from vagan.training.config import PRESETS, load_config
from vagan.training.steps import Networks, gan_step, psnr_step, wgan_step

RESULTS = Path(__file__).parent / "results"


def _batch(size: int, device: torch.device, gen: torch.Generator) -> dict[str, torch.Tensor]:
    ndct = torch.rand(size, 1, 64, 64, generator=gen)
    ldct = ndct + 0.01 * torch.randn(size, 1, 64, 64, generator=gen)
    residual = ndct - ldct
    attention = (residual > residual.mean(dim=(-2, -1), keepdim=True)).float()
    return {k: v.to(device) for k, v in {"ldct": ldct, "ndct": ndct, "attention": attention}.items()}


def measure(preset: str, stage_index: int, device: torch.device, steps: int, precision: Precision,
            batch_size: int) -> dict:
    cfg = load_config(preset, ["train.perceptual=vgg19_random"])
    stage = cfg.stages[stage_index]
    gen = torch.Generator().manual_seed(0)
    generator = to_channels_last(build_generator(cfg.model).to(device))
    disc = to_channels_last(build_discriminator(cfg.model).to(device)) if stage.adversarial != "none" else None
    feature = to_channels_last(build_feature_net(cfg.train).to(device)) if needs_feature_net(stage) else None
    nets = Networks(generator, disc, feature)
    opt_g = torch.optim.Adam(generator.parameters(), lr=stage.lr)
    opt_d = torch.optim.Adam(disc.parameters(), lr=stage.lr) if disc is not None else None
    scaler = precision.grad_scaler()
    batch = _batch(batch_size, device, gen)

    def step(i: int) -> None:
        if stage.adversarial == "none":
            psnr_step(nets, opt_g, batch, stage, precision.autocast, scaler)
        elif stage.adversarial == "gan":
            gan_step(nets, opt_g, opt_d, batch, stage, precision.autocast, scaler)
        else:
            wgan_step(nets, opt_g, opt_d, batch, stage, precision.autocast, scaler,
                      update_generator=i % stage.critic_steps == 0, generator=gen)

    step(0)  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    times = []
    for i in range(steps):
        start = time.perf_counter()
        step(i + 1)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    median = float(np.median(times))
    row = {"preset": preset, "stage": stage.name, "precision": precision.name, "step_s": median,
           "patches_per_s": batch_size / median, "params_g": sum(p.numel() for p in generator.parameters()),
           "params_d": sum(p.numel() for p in disc.parameters()) if disc is not None else 0}
    if device.type == "cuda":
        row["peak_cuda_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
        torch.cuda.reset_peak_memory_stats(device)
    return row


def data_wait(batch_size: int, batches: int = 20, step_s: float = 0.05) -> list[dict]:
    """Seconds the loop waits for each batch of 64x64 patch pairs (16 slices of 512^2) while a step of
    ``step_s`` (a sleep: the worker gets the CPU, as it would between a real step's kernels) runs."""
    from torch.utils.data import DataLoader

    rng = np.random.default_rng(0)
    pairs = []
    for i in range(16):
        ndct = rng.normal(40, 20, (512, 512)).astype(np.float32)
        pairs.append(SlicePair(ndct + rng.normal(0, 50, ndct.shape).astype(np.float32), ndct, "P", i))
    dataset = PatchPairDataset(pairs, 64, 35, seed=0)
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(0)).tolist()
    batches = min(batches, len(dataset) // batch_size)
    sampler = [order[b * batch_size:(b + 1) * batch_size] for b in range(batches)]
    rows = []
    for workers in (0, 1):
        loader = DataLoader(dataset, batch_sampler=sampler, num_workers=workers, prefetch_factor=4 if workers else None,
                            persistent_workers=workers > 0)
        for _ in loader:  # first pass: starts the worker (the trainer starts it once per stage)
            pass
        waited = 0.0
        tick = time.perf_counter()
        for _ in loader:
            waited += time.perf_counter() - tick
            time.sleep(step_s)
            tick = time.perf_counter()
        rows.append({"num_workers": workers, "wait_s_per_batch": waited / batches})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--presets", default=",".join(PRESETS))
    parser.add_argument("--tag", default="", help="suffix of the result files, e.g. _gpu")
    args = parser.parse_args()
    from vagan.runtime import reuse_freed_memory

    reuse_freed_memory()  # as the `vagan` command does
    device = torch.device(args.device)
    fast = resolve_precision("auto", device)
    precisions = [Precision("fp32", device.type, "reference")] + ([fast] if fast.reduced else [])
    rows = []
    for preset in args.presets.split(","):
        for index in range(len(load_config(preset).stages)):
            for precision in precisions:
                rows.append(measure(preset, index, device, args.steps, precision, args.batch_size))
                print(rows[-1], flush=True)
    reference = next((r for r in rows if r["preset"] == "g_psnr" and r["precision"] == "fp32"), rows[0])["patches_per_s"]
    fp32 = {(r["preset"], r["stage"]): r["patches_per_s"] for r in rows if r["precision"] == "fp32"}
    for row in rows:
        row["ratio_to_g_psnr_fp32"] = row["patches_per_s"] / reference
        row["speedup_vs_fp32"] = row["patches_per_s"] / fp32[(row["preset"], row["stage"])]
    waits = data_wait(args.batch_size)
    info = {"device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
            "torch": torch.__version__, "threads": torch.get_num_threads(), "cpu_count": __import__("os").cpu_count(),
            "platform": platform.platform(), "batch_size": args.batch_size, "patch": 64,
            "fast_precision": fast.describe(), "steps_timed": args.steps}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"training{args.tag}.json").write_text(json.dumps({"machine": info, "rows": rows, "data": waits},
                                                                 indent=2))
    cuda = device.type == "cuda"
    lines = [f"# Training throughput ({info['device']}, batch {args.batch_size} of 64x64): fp32 and the fast path", "",
             f"Median of {args.steps} steps after a warm-up; every stage of every preset; channels-last in both rows; "
             f"fast path = `auto` precision, here {fast.describe()}. A GAN step is a G step plus a D step. Random "
             "VGG19 for L_Pcep (same cost as the pretrained one).", "",
             "| preset | stage | precision | s/step | patches/s | x fp32 | vs g_psnr fp32 | G params | D params |"
             + (" peak CUDA [MB] |" if cuda else ""),
             "|---|---|---|---:|---:|---:|---:|---:|---:|" + ("---:|" if cuda else "")]
    for r in rows:
        lines.append(f"| {r['preset']} | {r['stage']} | {r['precision']} | {r['step_s']:.3f} | {r['patches_per_s']:.1f} | "
                     f"{r['speedup_vs_fp32']:.2f} | {r['ratio_to_g_psnr_fp32']:.2f} | {r['params_g']:,} | "
                     f"{r['params_d']:,} |" + (f" {r.get('peak_cuda_mb', 0):.0f} |" if cuda else ""))
    lines += ["", "Data side: patches drawn on the fly from 16 slices of 512^2 (the PatchPairDataset the trainer uses), "
              "the wait for each batch of 32 in a second pass through one loader (the trainer keeps one per stage) "
              "while a 50 ms step runs.",
              "", "| DataLoader workers | wait per batch [s] |", "|---:|---:|"]
    lines += [f"| {w['num_workers']} | {w['wait_s_per_batch']:.4f} |" for w in waits]
    lines += ["", f"Machine: {info['platform']}, {info['cpu_count']} CPUs, torch {info['torch']} "
              f"({info['threads']} threads). Command: `python benchmarks/bench_training.py"
              f"{' --device ' + args.device if args.device != 'cpu' else ''}`"]
    (RESULTS / f"training{args.tag}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
