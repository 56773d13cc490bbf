"""Shipped models (``vagan denoise --model NAME``) against BM3D-PSD and scalar BM3D, per 512x512 slice.

Every method is built exactly as ``vagan denoise`` builds it (``vagan.cli._denoiser``: engine
``auto``, precision ``auto``, batch 1 on the CPU), in one process at a fixed thread count
(``--threads``, default 1: torch, onnxruntime and BM3D's own thread pool). ``auto`` starts from a
cold cache, so the one-off choice (ONNX export, verification, probe) is timed separately.

* Input: a real 512x512 abdominal slice (pydicom-data's PANCREAS_0001, ``explicit_VR-UN.dcm``) with
  quarter dose inserted as ``vagan simulate --from`` does (seed 0); ``--input phantom``: a vagan
  phantom slice with the simulator's quarter dose instead. A network's time does not depend on the
  image; BM3D's does somewhat (block matching), so the input is named in the results.
* BM3D-PSD: ``bm3d-psd:tests/inference/data/pancreas_ct_cbct_seg_bm3d_psd_q25.npy``, the noise
  autocorrelation calibrated at quarter dose on the real-anatomy models' training patient (the
  test of the shipped models uses it too). Scalar BM3D: ``bm3d:SIGMA`` with SIGMA the std of that
  autocorrelation (the same noise level, told as white noise).
* Per method: one warm-up call, then timed calls of one slice (median, min, max): ``--repeats``
  for BM3D (about 20 s each on one core), ``--network-repeats`` for a network. The speed ratios are
  BM3D's median over the model's, both from this run. "CPU share" is the process's CPU time over
  the wall time of the timed calls: near 1 (one thread) the core was the benchmark's, below it
  other work on the machine took some of it. The body RMSE against
  the full-dose slice is a check that each method did its job, not a quality comparison.

Writes benchmarks/results/shipped.{json,md}.

    python benchmarks/bench_shipped.py [--models g_psnr-ct] [--repeats 3] [--network-repeats 10] [--threads 1]
                                       [--input pancreas] [--note TEXT]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
REPO = Path(__file__).resolve().parent.parent
PSD_FILE = Path("tests/inference/data/pancreas_ct_cbct_seg_bm3d_psd_q25.npy")
DOSE = 0.25
THREADS_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


class _Kept(logging.Handler):
    """The messages of vagan's engine choice (why ``auto`` took PyTorch or onnxruntime)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _slice(kind: str, workdir: Path) -> tuple:
    """(quarter-dose slice, its full-dose reference, a description), both 512x512 HU."""
    import numpy as np
    import torch

    from vagan.physics.simulate import LowDoseSimulator, SimulationConfig

    if kind == "pancreas":
        import pydicom.data

        from vagan.data.simulated import write_dataset_from_series
        from vagan.io.mayo import list_mayo_patients, load_mayo_pair

        (workdir / "series").mkdir()
        shutil.copy(pydicom.data.get_testdata_file("explicit_VR-UN.dcm", download=False), workdir / "series")
        write_dataset_from_series(workdir / "series", workdir / "pairs", DOSE, SimulationConfig(), seed=0,
                                  progress=False)
        pair = load_mayo_pair(workdir / "pairs", list_mayo_patients(workdir / "pairs", thickness="any")[0],
                              thickness="any")
        return (pair.ldct.hu[0].astype(np.float32), pair.ndct.hu[0].astype(np.float32),
                ("PANCREAS_0001 (pydicom-data explicit_VR-UN.dcm, real abdomen, 0.86 mm pixels), 25% dose "
                 "inserted as `vagan simulate --from` does (seed 0)"))
    from vagan.physics.phantom import make_phantom_slice

    clean = make_phantom_slice(512, 0.7, np.random.default_rng(0))
    simulator = LowDoseSimulator(SimulationConfig(), clean.shape, 0.7)
    noisy = simulator(torch.from_numpy(clean), DOSE, generator=torch.Generator().manual_seed(0), source="ndct")
    return (noisy.numpy().astype(np.float32), clean.astype(np.float32),
            "a vagan phantom slice (512x512, 0.7 mm), the simulator's 25% dose (seed 0)")


def _lscpu() -> dict:
    """lscpu's model name and the SIMD flags that matter here (AVX2, AVX-512, bf16, AMX)."""
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return {}
    fields = {k.strip(): v.strip() for k, _, v in (ln.partition(":") for ln in text.splitlines())}
    flags = fields.get("Flags", "").split()
    simd = [f for f in flags if f in ("sse4_2", "avx", "avx2", "fma", "f16c") or f.startswith(("avx512", "amx"))]
    return {"model_name": fields.get("Model name", ""), "cpus": fields.get("CPU(s)", ""),
            "hypervisor": fields.get("Hypervisor vendor", ""), "simd_flags": simd,
            "no_native_bf16": not any(f in flags for f in ("avx512_bf16", "amx_bf16"))}


def _time(denoiser, noisy, repeats: int) -> tuple:
    import numpy as np

    start = time.perf_counter()
    out = denoiser(noisy[None]).hu[0]
    first = time.perf_counter() - start
    times = []
    cpu = time.process_time()
    for _ in range(repeats):
        start = time.perf_counter()
        denoiser(noisy[None])
        times.append(time.perf_counter() - start)
    cpu_share = (time.process_time() - cpu) / sum(times)
    return {"first_call_s": first, "repeats": repeats, "ms": 1000 * float(np.median(times)),
            "ms_min": 1000 * min(times), "ms_max": 1000 * max(times), "ms_all": [1000 * t for t in times],
            "cpu_share": cpu_share, "load_avg_1min_after": os.getloadavg()[0]}, out


def _body_rmse(image, clean) -> float:
    import numpy as np

    from vagan.io.windowing import BODY_THRESHOLD_HU

    body = clean > BODY_THRESHOLD_HU
    return float(np.sqrt(np.mean((image - clean)[body].astype(np.float64) ** 2)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="g_psnr-ct", help="shipped model names, comma-separated")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls of each BM3D")
    parser.add_argument("--network-repeats", type=int, default=10, help="timed calls of each network")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--input", choices=("pancreas", "phantom"), default="pancreas")
    parser.add_argument("--tag", default="")
    parser.add_argument("--note", default="", help="a sentence for the results, e.g. what else ran on the machine")
    args = parser.parse_args()
    if min(args.repeats, args.network_repeats) < 3:
        parser.error("--repeats, --network-repeats: at least 3 timed calls")
    os.chdir(REPO)  # the BM3D-PSD spec names its file relative to the repository
    for name in THREADS_ENV:  # before numpy and torch start their thread pools
        os.environ[name] = str(args.threads)
    import torch

    torch.set_num_threads(args.threads)
    from bm3d import BM3DProfile

    from vagan.cli import _denoiser
    from vagan.evaluation.eval_config import MethodSpec
    from vagan.inference.bm3d_denoiser import noise_std_hu
    from vagan.inference.noise_psd import load_autocorrelation
    from vagan.runtime import reuse_freed_memory

    reuse_freed_memory()  # as the `vagan` command does
    kept = _Kept()
    engine_log = logging.getLogger("vagan.inference.engine")
    engine_log.addHandler(kept)
    engine_log.setLevel(logging.INFO)
    load_before = os.getloadavg()[0]
    sigma = noise_std_hu(load_autocorrelation(PSD_FILE))
    specs = [*args.models.split(","), f"bm3d-psd:{PSD_FILE}", f"bm3d:{sigma:.2f}"]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        noisy, clean, described = _slice(args.input, workdir)
        os.environ["VAGAN_CACHE_DIR"] = str(workdir / "cache")  # cold: auto's one-off choice is measured
        for spec in specs:
            kept.messages.clear()
            start = time.perf_counter()
            denoiser = _denoiser(MethodSpec(spec=spec), None, "cpu", "auto", False, "auto")
            build_s = time.perf_counter() - start
            row = {"spec": spec, "build_s": build_s}
            if hasattr(denoiser, "profile"):  # BM3D: its thread pool pinned (vagan leaves bm3d's 0 = all cores)
                profile = BM3DProfile()
                profile.num_threads = args.threads
                denoiser.profile = profile
                row["method"] = "BM3D-PSD" if denoiser.autocorrelation is not None else "BM3D"
            else:
                row.update(method=spec, engine=getattr(denoiser, "engine", "torch"),
                           precision=denoiser.precision.name, precision_reason=denoiser.precision.reason,
                           engine_choice="; ".join(m for m in kept.messages if m.startswith("engine")))
            timing, out = _time(denoiser, noisy, args.repeats if "engine" not in row else args.network_repeats)
            row.update(timing, name=denoiser.name, body_rmse_hu=_body_rmse(out, clean))
            rows.append(row)
            print(json.dumps(row), flush=True)
    by_method = {r["method"]: r for r in rows}
    for row in rows:
        for ref in ("BM3D-PSD", "BM3D"):
            if ref in by_method:
                row[f"speed_vs_{ref.lower().replace('-', '_')}"] = by_method[ref]["ms"] / row["ms"]
    from bench_simulator import _cpu

    info = {"cpu": _cpu(), "lscpu": _lscpu(), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "bm3d_threads": args.threads, "cpu_count": os.cpu_count(), "platform": platform.platform(),
            "repeats": args.repeats, "network_repeats": args.network_repeats, "input": described,
            "input_body_rmse_hu": _body_rmse(noisy, clean),
            "bm3d_sigma_hu": sigma, "psd_file": str(PSD_FILE), "load_avg_1min": [load_before, os.getloadavg()[0]],
            "note": args.note}
    try:
        import onnxruntime

        info["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        info["onnxruntime"] = None
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"shipped{args.tag}.json").write_text(json.dumps({"machine": info, "rows": rows}, indent=2) + "\n")
    markdown = _markdown(info, rows, args)
    (RESULTS / f"shipped{args.tag}.md").write_text(markdown)
    print(markdown)


def _markdown(info: dict, rows: list[dict], args) -> str:
    lscpu = info["lscpu"]
    options = {"--models": (args.models, "g_psnr-ct"), "--threads": (args.threads, 1),
               "--input": (args.input, "pancreas"), "--repeats": (args.repeats, 3),
               "--network-repeats": (args.network_repeats, 10)}
    command = "python benchmarks/bench_shipped.py" + "".join(
        f" {flag} {value}" for flag, (value, default) in options.items() if value != default)
    threads = f"{info['threads']} thread" + ("s" if info["threads"] > 1 else "")
    intro = (f"Each method as `vagan denoise --model SPEC` builds it (engine and precision `auto`, batch 1), in one "
             f"process at {threads} (torch, onnxruntime and BM3D's pool); median of {args.repeats} calls of one "
             f"slice for BM3D, {args.network_repeats} for a network, after a warm-up (min-max in brackets); CPU "
             "share: CPU time over wall time of those calls (1: the core was the benchmark's). "
             f"Input: {info['input']}; body RMSE against the full-dose slice {info['input_body_rmse_hu']:.1f} HU "
             f"before denoising. BM3D-PSD is given `{info['psd_file']}` (quarter dose, calibrated on the training "
             f"patient of `g_psnr-ct`); scalar BM3D the std of that noise, {info['bm3d_sigma_hu']:.1f} HU. `auto` "
             "started from a cold cache: its choice (export, verification, probe) is the build time, paid once per "
             "model and CPU.")
    header = ("| method | engine (auto) | ms / slice | x faster than BM3D-PSD | x faster than BM3D | build [s] | "
              "CPU share | body RMSE [HU] |")
    lines = [f"# Shipped models against BM3D-PSD and BM3D per 512x512 slice (cpu, {threads})", "", intro, "",
             header, "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        network = "engine" in r
        lines.append(f"| {r['method'] if network else r['name']} | "
                     f"{r['engine'] + ' ' + r['precision'] if network else ''} | "
                     f"{r['ms']:.0f} ({r['ms_min']:.0f}-{r['ms_max']:.0f}) | {r.get('speed_vs_bm3d_psd', 0):.1f} | "
                     f"{r.get('speed_vs_bm3d', 0):.1f} | {r['build_s']:.1f} | {r['cpu_share']:.2f} | "
                     f"{r['body_rmse_hu']:.1f} |")
    psd = next((r for r in rows if r["method"] == "BM3D-PSD"), None)
    for r in rows:
        if "engine" in r and psd is not None:
            summary = (f"{r['method']}: {r['ms'] / 1000:.2f} s per 512² slice against {psd['ms'] / 1000:.1f} s for "
                       f"BM3D-PSD, {psd['ms'] / r['ms']:.0f}x faster ({threads})."
                       + (f" `auto`: {r['engine_choice']}." if r.get("engine_choice") else ""))
            lines += ["", summary]
    load = info["load_avg_1min"]
    machine_load = (f"Load average (1 min) of the machine at the start and end of the run: {load[0]:.2f}, "
                    f"{load[1]:.2f} on {info['cpu_count']} CPUs." + (f" {info['note']}" if info["note"] else ""))
    bf16 = "; no native bf16" if lscpu.get("no_native_bf16") else ""
    machine = (f"Machine: {lscpu.get('model_name') or info['cpu']} ({lscpu.get('hypervisor') or 'no'} hypervisor, "
               f"{lscpu.get('cpus', info['cpu_count'])} CPUs), lscpu SIMD flags: "
               f"{' '.join(lscpu.get('simd_flags', []))}{bf16}; {info['platform']}, torch {info['torch']}, "
               f"onnxruntime {info['onnxruntime']}. Command: `{command}`")
    lines += ["", machine_load, "", machine]
    return "\n".join(lines) + "\n"

if __name__ == "__main__":
    main()
