"""Inference speed of every method x {fp32, bf16, compile, onnxruntime, auto}, side by side in one run.

``auto`` is ``vagan denoise``'s default: the engine (PyTorch or onnxruntime) and precision that
:mod:`vagan.inference.engine` chooses, from a cold cache; the report says how close it comes to the
fastest mode measured for the same network.

Per (method, mode), in a fresh subprocess (so peak resident memory is its own):
* ms per 512x512 slice: batch 1, one warm-up call, then ``--repeats`` timed calls (median);
* slices/s on a ``--series``-slice series at batch 2 (CPU) or 16 (GPU) for the eager default
  path (``auto`` precision) and the compiled one;
* peak RSS; the HU deviation from the fp32 output of the same network (RMS and max);
* achieved TFLOP/s and its fraction of this machine's peak, the peak being the best of a conv
  micro-benchmark (256 -> 256 dilated 3x3 on 128^2, channels-last) measured in the same run.
BM3D (the ``bm3d`` package, sigma estimated per slice) is the reference of the speed ratios.
Networks: the presets' default widths with random weights (speed does not depend on them);
ga_psnr has vagan's generator and g_gan g_psnr's. Writes benchmarks/results/inference.{json,md}.

    python benchmarks/bench_inference.py [--repeats 3] [--series 32] [--device cpu|cuda] [--tag _gpu]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
NETWORKS = {"g_psnr": "red", "vagan": "vagan", "red_cnn": "red_cnn", "wgan_vgg": "wgan_vgg"}
MODES = ("fp32", "bf16", "compile", "onnxruntime", "auto")
PEAK_CONV = (256, 256, 128, 4)  # channels in, out, size, dilation


def _slices(n: int):
    import numpy as np

    from vagan.physics.phantom import make_phantom_slice

    clean = make_phantom_slice(512, 0.7, np.random.default_rng(0))
    noise = np.random.default_rng(1).normal(0, 40, (n, 512, 512)).astype(np.float32)
    return (clean[None] + noise).astype(np.float32)


def conv_peak(device_name: str) -> dict:
    """TFLOP/s of a dilated 3x3 conv in fp32 and bf16 (channels-last): this machine's practical peak."""
    import torch

    device = torch.device(device_name)
    cin, cout, size, dil = PEAK_CONV
    conv = torch.nn.Conv2d(cin, cout, 3, padding=dil, dilation=dil).to(device, memory_format=torch.channels_last)
    x = torch.rand(1, cin, size, size, device=device).contiguous(memory_format=torch.channels_last)
    flops = 2 * cin * cout * 9 * size * size
    out = {}
    for name, ctx in (("fp32", torch.autocast(device.type, enabled=False)),
                      ("bf16", torch.autocast(device.type, dtype=torch.bfloat16))):
        with torch.inference_mode(), ctx:
            conv(x)
            best = float("inf")
            for _ in range(5):
                if device.type == "cuda":
                    torch.cuda.synchronize()
                start = time.perf_counter()
                conv(x)
                if device.type == "cuda":
                    torch.cuda.synchronize()
                best = min(best, time.perf_counter() - start)
        out[name] = flops / best / 1e12
    return out


def _denoiser(method: str, mode: str, device, batch_size: int, workdir: Path):
    from vagan.inference.bm3d_denoiser import BM3DDenoiser
    from vagan.inference.denoise import NetworkDenoiser
    from vagan.inference.model_loading import TrainedModel
    from vagan.models.init import init_parameters
    from vagan.precision import resolve_precision
    from vagan.training.build import build_generator
    from vagan.training.config import load_config

    if method == "bm3d":
        return BM3DDenoiser(), {}
    import torch

    cfg = load_config(method)
    model = TrainedModel(init_parameters(build_generator(cfg.model), torch.Generator().manual_seed(0)).to(device), cfg,
                         Path("."), cfg.stages[-1].name)
    if mode == "auto":  # what `vagan denoise` does by default: the engine and precision auto choose
        from vagan.inference.engine import network_denoiser
        from vagan.inference.model_loading import load_trained_model
        from vagan.training.checkpoint import save_checkpoint

        os.environ["VAGAN_CACHE_DIR"] = str(workdir / "cache")  # a cold cache: the one-off cost is measured
        folder = save_checkpoint(workdir / f"{method}-checkpoint", {"generator": model.generator},
                                 {"config": cfg.to_dict(), "stage": model.stage})
        start = time.perf_counter()
        denoiser = network_denoiser(load_trained_model(folder, device), precision=resolve_precision("auto", device),
                                    batch_size=batch_size)
        return denoiser, {"engine": denoiser.engine, "precision": denoiser.precision.name,
                          "choose_s": time.perf_counter() - start}
    if mode == "onnxruntime":
        from vagan.inference.export import OnnxDenoiser, export_onnx

        start = time.perf_counter()
        path = export_onnx(model, workdir / f"{method}.onnx", check_hu=_slices(1)[0, 128:384, 128:384]).path
        return OnnxDenoiser(path, batch_size=batch_size), {"export_s": time.perf_counter() - start}
    precision = resolve_precision({"fp32": "fp32", "bf16": "bf16"}.get(mode, "auto"), device)
    return (NetworkDenoiser(model, batch_size=batch_size, precision=precision,
                            compile=mode.startswith("compile")), {"precision": precision.name})


def run_one(method: str, mode: str, device_name: str, repeats: int, series: int, workdir: Path) -> dict:
    import numpy as np
    import torch

    device = torch.device(device_name)
    hu = _slices(max(series, 1))
    out: dict = {"method": method, "mode": mode}
    denoiser, extra = _denoiser(method, mode, device, 1, workdir)
    out.update(extra)
    start = time.perf_counter()
    first = denoiser(hu[:1]).hu
    out["first_call_s"] = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        denoiser(hu[:1])
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    out["ms"] = 1000 * float(np.median(times))
    np.save(workdir / f"{method}-{mode}.npy", first)
    out["residual_rms_hu"] = float(np.sqrt(np.mean((first - hu[:1]) ** 2)))  # how much the method changes the image
    reference = workdir / f"{method}-fp32.npy"
    if reference.exists() and mode != "fp32":
        diff = first - np.load(reference)
        out["hu_rms_vs_fp32"] = float(np.sqrt(np.mean(diff**2)))
        out["hu_max_vs_fp32"] = float(np.abs(diff).max())
    if series and method != "bm3d" and mode in ("bf16", "compile"):  # the default path, eager and compiled
        denoiser.batch_size = 2 if device.type == "cpu" else 16
        denoiser(hu[:denoiser.batch_size])  # warm-up at this batch (a compile for the new shape)
        start = time.perf_counter()
        denoiser(hu)
        out["series_slices_per_s"] = series / (time.perf_counter() - start)
        out["series_batch"] = denoiser.batch_size
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if device.type == "cuda":
        out["peak_cuda_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return out


def _gmac() -> dict[str, float]:
    """GMAC per 512^2 slice from benchmarks/results/models.json (bench_models.py, flop counter)."""
    path = RESULTS / "models.json"
    if not path.exists():
        return {}
    rows = json.loads(path.read_text())["rows"]
    return {r["network"]: r["gmacs"] for r in rows if r.get("input") == "512x512" and "gmacs" in r}


def _num(value: float | None, digits: int) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--series", type=int, default=32, help="slices of the series for slices/s (0: skip)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--methods", default="bm3d," + ",".join(NETWORKS))
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--tag", default="")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    from vagan.runtime import reuse_freed_memory

    reuse_freed_memory()  # as the `vagan` command does
    if args.one:
        method, mode = args.one.split(":")
        print(json.dumps(run_one(method, mode, args.device, args.repeats, args.series, Path(args.workdir))))
        return
    import torch

    from vagan.precision import cpu_bf16_native

    peak = conv_peak(args.device)
    print("conv peak TFLOP/s", peak, flush=True)
    gmac = _gmac()
    bf16_ok = args.device != "cpu" or cpu_bf16_native()
    rows, skipped = [], []
    with tempfile.TemporaryDirectory() as workdir:
        for method in args.methods.split(","):
            for mode in (("bm3d",) if method == "bm3d" else args.modes.split(",")):
                if mode == "bf16" and not bf16_ok:
                    skipped.append(f"{method}/bf16: no native bf16 on this machine")
                    continue
                cmd = [sys.executable, __file__, "--one", f"{method}:{mode}", "--device", args.device,
                       "--repeats", str(args.repeats), "--series", str(args.series), "--workdir", workdir]
                proc = subprocess.run(cmd, capture_output=True, text=True)
                if proc.returncode != 0:
                    skipped.append(f"{method}/{mode}: failed ({proc.stderr.strip().splitlines()[-1][:160]})")
                    print(skipped[-1], flush=True)
                    continue
                rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
                print(rows[-1], flush=True)
    bm3d_ms = next((r["ms"] for r in rows if r["method"] == "bm3d"), None)
    best_peak = max(peak.values())
    for row in rows:
        if bm3d_ms:
            row["speed_vs_bm3d"] = bm3d_ms / row["ms"]
        network = NETWORKS.get(row["method"])
        if network in gmac:
            row["tflops"] = 2 * gmac[network] / 1e3 / (row["ms"] / 1e3)
            row["fraction_of_peak"] = row["tflops"] / best_peak
    from bench_simulator import _cpu

    info = {"device": args.device if args.device == "cpu" else torch.cuda.get_device_name(0), "cpu": _cpu(),
            "torch": torch.__version__, "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
            "platform": platform.platform(), "repeats": args.repeats, "series": args.series,
            "conv_peak_tflops": peak, "skipped": skipped}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"inference{args.tag}.json").write_text(json.dumps({"machine": info, "rows": rows}, indent=2))
    cuda = args.device != "cpu"
    lines = [f"# Inference per 512x512 slice ({info['device']}): fp32, bf16, torch.compile, onnxruntime", "",
             f"Median of {args.repeats} calls of one slice (batch 1) after a warm-up, each method and mode in its own "
             f"process; series: slices/s over {args.series} slices at batch 2 on CPU (16 on GPU). "
             "`compile` = torch.compile (inductor, frozen weights) at the `auto` precision; `onnxruntime` = the "
             "`vagan export` file (fp32) on onnxruntime's CPU provider. HU deviation: against the fp32 eager output "
             "of the same weights on a noisy 512^2 phantom slice (40 HU noise); with random weights a network changes "
             "the image far more than a trained one, and bf16's error grows with that change (next column). "
             "Peak: the best of a 256->256 dilated 3x3 conv "
             f"on 128^2 measured in this run: {peak['fp32']:.2f} TFLOP/s fp32, {peak['bf16']:.2f} TFLOP/s bf16.", "",
             "| method | mode | ms / slice | x faster than BM3D | series slices/s | TFLOP/s | % of peak | "
             "HU RMS / max vs fp32 | change of the image [HU RMS] | first call [s] | peak RSS [MB] |"
             + (" peak CUDA [MB] |" if cuda else ""),
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|" + ("---:|" if cuda else "")]
    for r in rows:
        dev = (f"{r['hu_rms_vs_fp32']:.2f} / {r['hu_max_vs_fp32']:.1f}" if "hu_rms_vs_fp32" in r else "")
        mode = r["mode"] + (f" ({r['precision']})" if r.get("precision") and r["mode"] == "compile" else "") \
            + (f" ({r['engine']} {r['precision']}, chosen in {r['choose_s']:.0f} s)" if r["mode"] == "auto" else "")
        lines.append(f"| {r['method']} | {mode} | {r['ms']:.0f} | {r.get('speed_vs_bm3d', 0):.1f} | "
                     f"{_num(r.get('series_slices_per_s'), 2)} | {_num(r.get('tflops'), 3)} | "
                     f"{_num(r.get('fraction_of_peak', 0) * 100, 0) if 'tflops' in r else ''} | {dev} | "
                     f"{_num(r.get('residual_rms_hu'), 0)} | "
                     f"{r['first_call_s']:.1f} | "
                     f"{r['peak_rss_mb']:.0f} |" + (f" {r.get('peak_cuda_mb', 0):.0f} |" if cuda else ""))
    for method in dict.fromkeys(r["method"] for r in rows):
        auto = next((r for r in rows if r["method"] == method and r["mode"] == "auto"), None)
        others = [r for r in rows if r["method"] == method and r["mode"] != "auto"]
        if auto and others:
            best = min(others, key=lambda r: r["ms"])
            lines.append(f"\n{method}: `auto` ({auto['engine']}) takes {auto['ms'] / best['ms']:.2f}x the time of the "
                         f"fastest mode measured ({best['mode']}, {best['ms']:.0f} ms); choosing cost "
                         f"{auto['choose_s']:.1f} s once (export, verification, probe; cached after).")
    if skipped:
        lines += ["", "Not measured: " + "; ".join(skipped) + "."]
    lines += ["", f"Machine: {info['cpu']}; {info['platform']}, {info['cpu_count']} CPUs, torch {info['torch']} ({info['threads']} "
              f"threads). Command: `python benchmarks/bench_inference.py{' --device ' + args.device if cuda else ''}`"]
    (RESULTS / f"inference{args.tag}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
