"""The malloc setting of `vagan` (src/vagan/runtime.py): eager vagan forward with and without it.

Each case in a fresh process (the setting is process-wide): one 512x512 slice, default widths,
random weights, the `auto` precision, one warm-up call then ``--repeats`` timed calls (median),
and the peak RSS. Writes benchmarks/results/runtime.{json,md}.

    python benchmarks/bench_runtime.py [--repeats 5] [--network vagan]
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def run_one(network: str, reuse: bool, repeats: int) -> dict:
    import resource
    import time

    import numpy as np
    import torch

    from vagan.runtime import reuse_freed_memory

    applied = reuse_freed_memory() if reuse else False
    from vagan.models import build_generator
    from vagan.models.init import init_parameters
    from vagan.precision import resolve_precision, to_channels_last

    net = to_channels_last(init_parameters(build_generator(network), torch.Generator().manual_seed(0))).eval()
    precision = resolve_precision("auto", "cpu")
    x = torch.rand(1, 1, 512, 512, generator=torch.Generator().manual_seed(1))
    times = []
    with torch.no_grad(), precision.autocast():
        net(x)
        for _ in range(repeats):
            start = time.perf_counter()
            net(x)
            times.append(time.perf_counter() - start)
    return {"network": network, "reuse_freed_memory": applied, "precision": precision.name,
            "ms": 1000 * float(np.median(times)), "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--network", default="vagan")
    parser.add_argument("--one", choices=["on", "off"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.network, args.one == "on", args.repeats)))
        return
    rows = []
    for case in ("off", "on", "off", "on"):  # alternated, so load from other processes hits both alike
        out = subprocess.run([sys.executable, __file__, "--one", case, "--network", args.network, "--repeats",
                              str(args.repeats)], capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(rows[-1], flush=True)
    best = {flag: min(r["ms"] for r in rows if r["reuse_freed_memory"] == flag) for flag in (False, True)}
    rss = {flag: max(r["peak_rss_mb"] for r in rows if r["reuse_freed_memory"] == flag) for flag in (False, True)}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "runtime.json").write_text(json.dumps({"platform": platform.platform(), "rows": rows}, indent=2))
    lines = [f"# glibc malloc keeping freed memory (`vagan.runtime`): eager {args.network} forward, 512x512", "",
             f"Each case twice, alternated, in its own process; median of {args.repeats} calls after a warm-up, "
             f"precision `auto` ({rows[0]['precision']}); the better run of each case.", "",
             "| malloc setting | ms / slice | peak RSS [MB] |", "|---|---:|---:|",
             f"| glibc default | {best[False]:.0f} | {rss[False]:.0f} |",
             f"| keep freed memory (`vagan` command) | {best[True]:.0f} | {rss[True]:.0f} |", "",
             f"Speed-up {best[False] / best[True]:.2f}x. Machine: {platform.platform()}. "
             f"Command: `python benchmarks/bench_runtime.py`"]
    (RESULTS / "runtime.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
