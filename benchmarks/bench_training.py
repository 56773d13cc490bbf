"""Training throughput per preset: patches/s for batch 32 of 64x64 patches (the paper's setting).

Each preset runs its own stage step (the GAN step for two-stage presets) with the default widths;
the g_psnr PSNR step measured in the same run is the reference for the ratios. Writes
benchmarks/results/training.json and .md.

    python benchmarks/bench_training.py [--steps 3] [--device cpu|cuda] [--amp]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import time
from pathlib import Path

import torch

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


def measure(preset: str, device: torch.device, steps: int, amp: bool, batch_size: int) -> dict:
    cfg = load_config(preset, ["train.perceptual=vgg19_random"])
    stage = cfg.stages[-1]
    torch.manual_seed(0)
    generator = build_generator(cfg.model).to(device)
    disc = build_discriminator(cfg.model).to(device) if stage.adversarial != "none" else None
    feature = build_feature_net(cfg.train).to(device) if needs_feature_net(stage) else None
    nets = Networks(generator, disc, feature)
    opt_g = torch.optim.Adam(generator.parameters(), lr=stage.lr)
    opt_d = torch.optim.Adam(disc.parameters(), lr=stage.lr) if disc is not None else None
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if amp and device.type == "cuda" else contextlib.nullcontext
    batch = _batch(batch_size, device, torch.Generator().manual_seed(0))

    def step(i: int) -> None:
        if stage.adversarial == "none":
            psnr_step(nets, opt_g, batch, stage, autocast)
        elif stage.adversarial == "gan":
            gan_step(nets, opt_g, opt_d, batch, stage, autocast)
        else:
            wgan_step(nets, opt_g, opt_d, batch, stage, autocast, update_generator=i % stage.critic_steps == 0)

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
    mean = sum(times) / len(times)
    return {"preset": preset, "stage": stage.name, "step_s": mean, "patches_per_s": batch_size / mean,
            "params_g": sum(p.numel() for p in generator.parameters()),
            "params_d": sum(p.numel() for p in disc.parameters()) if disc is not None else 0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--amp", action="store_true")
    parser.add_argument("--tag", default="", help="suffix of the result files, e.g. _gpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    rows = [measure(p, device, args.steps, args.amp, args.batch_size) for p in PRESETS]
    reference = next(r for r in rows if r["preset"] == "g_psnr")["patches_per_s"]
    for row in rows:
        row["ratio_to_g_psnr"] = row["patches_per_s"] / reference
    info = {"device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
            "torch": torch.__version__, "threads": torch.get_num_threads(), "cpu_count": __import__("os").cpu_count(),
            "platform": platform.platform(), "batch_size": args.batch_size, "patch": 64, "amp": args.amp,
            "steps_timed": args.steps}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"training{args.tag}.json").write_text(json.dumps({"machine": info, "rows": rows}, indent=2))
    lines = [f"# Training throughput ({info['device']}, batch {args.batch_size} of 64x64, amp={args.amp})", "",
             "Stage measured: the preset's last stage (GAN step = G step + D step). Random VGG19 for L_Pcep "
             "(same cost as the pretrained one).", "",
             "| preset | stage | s/step | patches/s | vs g_psnr | G params | D params |", "|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['preset']} | {r['stage']} | {r['step_s']:.3f} | {r['patches_per_s']:.1f} | "
                     f"{r['ratio_to_g_psnr']:.2f} | {r['params_g']:,} | {r['params_d']:,} |")
    lines += ["", f"Machine: {info['platform']}, {info['cpu_count']} CPUs, torch {info['torch']} "
              f"({info['threads']} threads). Command: `python benchmarks/bench_training.py"
              f"{' --device ' + args.device if args.device != 'cpu' else ''}{' --amp' if args.amp else ''}`"]
    (RESULTS / f"training{args.tag}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
