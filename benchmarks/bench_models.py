"""Network size and cost: parameters, multiply-adds and inference time per 512x512 slice.

For every generator kind of the registry (``vagan`` = attentive block + RED generator, with the two
parts also reported separately; ``red``; ``red_cnn``; ``wgan_vgg``) at the preset widths:
parameters, multiply-accumulates (MACs = FLOPs / 2, counted by ``torch.utils.flop_counter`` on the
meta device, so no real compute) for one 512x512 slice, and the median wall time of ``--repeats``
forward passes (after one warm-up) under ``torch.inference_mode`` on each requested device.
Discriminators are reported per 64x64 patch (their training input). The paper reports about 80 ms
per 512x512 slice for VAGAN on a Titan V GPU.

Writes benchmarks/results/models.{json,md}.

    python benchmarks/bench_models.py [--repeats 3] [--devices cpu cuda] [--threads N]
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
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from vagan.models.init import init_parameters
from vagan.models.registry import (
    DISCRIMINATOR_KINDS,
    GENERATOR_KINDS,
    build_discriminator,
    build_generator,
)

RESULTS = Path(__file__).resolve().parent / "results"
SLICE = 512
PATCH = 64


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def count_macs(build, size: int) -> int:
    """Multiply-accumulates of one forward pass of ``build()`` on a (1, 1, size, size) input (meta device)."""
    with torch.device("meta"):
        module = build()
        x = torch.empty(1, 1, size, size)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        module(x)
    return counter.get_total_flops() // 2


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_forward(module: nn.Module, device: torch.device, repeats: int) -> list[float]:
    """Seconds per forward pass of one (1, 1, 512, 512) slice; the first (warm-up) run is dropped."""
    module = module.to(device).eval()
    x = torch.rand(1, 1, SLICE, SLICE, generator=torch.Generator().manual_seed(0)).to(device)
    runs: list[float] = []
    with torch.inference_mode():
        for i in range(repeats + 1):
            _sync(device)
            start = time.perf_counter()
            module(x)
            _sync(device)
            if i > 0:
                runs.append(time.perf_counter() - start)
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--devices", nargs="+", default=["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    generators = {kind: (lambda kind=kind: build_generator(kind)) for kind in GENERATOR_KINDS}
    generators["vagan: attentive block only"] = lambda: build_generator("vagan").attention
    generators["vagan: generator only"] = lambda: _TwoChannelInput(build_generator("vagan").generator)
    rows = []
    for name, build in generators.items():
        module = init_parameters(build(), torch.Generator().manual_seed(0))
        row = {"network": name, "input": f"{SLICE}x{SLICE}", "parameters": count_parameters(module),
               "gmacs": count_macs(build, SLICE) / 1e9, "ms_per_slice": {}}
        if ":" not in name:
            for dev in args.devices:
                runs = time_forward(module, torch.device(dev), args.repeats)
                row["ms_per_slice"][dev] = {"median": 1e3 * statistics.median(runs), "runs": [1e3 * r for r in runs]}
        rows.append(row)
        print(f"{name:30s} {row['parameters']:>10,d} params {row['gmacs']:8.1f} GMAC {row['ms_per_slice']}")
    for kind in DISCRIMINATOR_KINDS:
        build = lambda kind=kind: build_discriminator(kind)
        rows.append({"network": f"discriminator {kind}", "input": f"{PATCH}x{PATCH}",
                     "parameters": count_parameters(build()), "gmacs": count_macs(build, PATCH) / 1e9,
                     "ms_per_slice": {}})

    meta = {"torch": torch.__version__, "threads": torch.get_num_threads(), "cpu": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "load_average": os.getloadavg(), "repeats": args.repeats,
            "cuda": torch.cuda.get_device_name(0) if "cuda" in args.devices else None}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "models.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    (RESULTS / "models.md").write_text(_markdown(meta, rows, args.devices))


class _TwoChannelInput(nn.Module):
    """Feeds the 2-channel RED generator of ``vagan`` from a 1-channel input (x, x) for counting."""

    def __init__(self, generator: nn.Module) -> None:
        super().__init__()
        self.generator = generator

    def forward(self, x: torch.Tensor):
        return self.generator(torch.cat([x, x], dim=1))


def _markdown(meta: dict, rows: list[dict], devices: list[str]) -> str:
    lines = ["# Networks: size and cost", "",
             f"torch {meta['torch']}, {meta['threads']} CPU threads ({meta['cpu_count']} cores, load average "
             f"{meta['load_average'][0]:.1f} at the end), median of {meta['repeats']} runs after a warm-up, "
             "batch 1, float32, `torch.inference_mode`." + (f" GPU: {meta['cuda']}." if meta["cuda"] else ""),
             ("MACs counted with `torch.utils.flop_counter` (FLOPs / 2). Default preset widths: VAGAN/RED "
             "generator 64, attentive block 32 (T = 4), RED-CNN 96, WGAN-VGG 32, discriminators 64."), "",
             "| network | input | parameters | GMAC | " + " | ".join(f"ms/slice {d}" for d in devices) + " |",
             "|---|---|---:|---:|" + "---:|" * len(devices)]
    for r in rows:
        times = [f"{r['ms_per_slice'][d]['median']:.0f}" if d in r["ms_per_slice"] else "" for d in devices]
        lines.append(f"| {r['network']} | {r['input']} | {r['parameters']:,} | {r['gmacs']:.2f} | "
                     + " | ".join(times) + " |")
    if meta["load_average"][0] > (meta["cpu_count"] or 1):
        lines += ["", ("The machine was shared with other jobs during the run (load above the core count): "
                  "the CPU times are upper bounds.")]
    lines += ["", "The paper reports about 80 ms per 512x512 slice for VAGAN on an NVIDIA Titan V.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
