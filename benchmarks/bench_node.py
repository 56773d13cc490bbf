"""`vagan serve` under load and end to end through Orthanc, all on 127.0.0.1.

1. Load: ``--series`` series of ``--slices`` slices at ``--side``² sent by ``--associations`` concurrent
   associations (pynetdicom senders, each sending its share of the series one after another), the node
   (a child process, the shipped ``g_psnr-phantom512`` model) denoising them and sending every derived
   series to a pynetdicom receiver: all returned? none lost? wall time and instances/s.
2. Target (issue 22): a 64-slice 512² series sent by a real Orthanc to the node, the derived series
   stored back in Orthanc: the time from Orthanc's C-STORE to the node (its first instance) until Orthanc
   holds the last derived instance, against ``vagan denoise`` of the same series (whole command, the
   same model and precision) on the same machine, one after the other. Skipped without Orthanc.

Writes benchmarks/results/node.{json,md}.

    python benchmarks/bench_node.py [--series 20 --slices 64 --side 128 --associations 4] [--no-orthanc]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE))

from node_support import HOST, NodeProcess, Receiver, free_port, make_series, send, wait_for  # noqa: E402
from subprocess_peak import run_measured  # noqa: E402

RESULTS = HERE / "results"
MODEL = "g_psnr-phantom512"


def _node_config(spool: Path, port: int, destination: tuple[str, int], peers: list[str], stable: float) -> dict:
    return {"ae_title": "VAGAN", "host": HOST, "port": port, "spool": str(spool), "model": MODEL,
            "allowed_peers": peers, "stable_seconds": stable,
            "destinations": [{"name": "dest", "ae_title": destination[0], "host": HOST, "port": destination[1]}],
            "retries": {"attempts": 10, "backoff_seconds": 1, "max_backoff_seconds": 5},
            "timeouts": {"network": 60, "acse": 30, "dimse": 60, "connect": 5},
            "limits": {"min_free_gb": 0.5, "association_headroom_mb": 64}}


def load_test(tmp: Path, n_series: int, slices: int, side: int, associations: int, stable: float) -> dict:
    receiver = Receiver(ae_title="DEST").start()
    node = NodeProcess(tmp / "load-node", _node_config(tmp / "load-spool", free_port(), ("DEST", receiver.port),
                                                       ["MODALITY"], stable)).start()
    series = [make_series(tmp / "load-in" / f"s{k:02d}", slices, side, seed=k) for k in range(n_series)]
    codes: dict[int, list] = {}

    def sender(a: int) -> None:
        mine = [s for k, s in enumerate(series) if k % associations == a]
        files = [f for s in mine for f in s]
        codes[a] = send(files, node.port)

    started = time.time()
    threads = [threading.Thread(target=sender, args=(a,)) for a in range(associations)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(1800)
    received_s = time.time() - started
    expected = n_series * slices
    try:
        wait_for(lambda: sum(len(v) for v in receiver.series().values()) >= expected, 3600, step=0.5,
                 what="every derived instance")
        total_s = time.time() - started
        wait_for(lambda: [j["state"] for j in node.jobs()] == ["sent"] * n_series, 60, what="all jobs sent")
    finally:
        node.stop()
        receiver.stop()
    got = receiver.series()
    acknowledged = sum(c == 0 for cs in codes.values() for c in (cs or []))
    return {"series": n_series, "slices": slices, "side": side, "associations": associations, "stable_s": stable,
            "acknowledged": acknowledged, "derived_series": len(got),
            "derived_instances": sum(len(v) for v in got.values()),
            "complete_series": sum(len(v) == slices for v in got.values()),
            "receive_s": round(received_s, 1), "total_s": round(total_s, 1),
            "instances_per_s": round(expected / total_s, 1)}


def target_test(tmp: Path, slices: int, stable: float) -> dict:
    from orthanc_support import ORTHANC, Orthanc

    if ORTHANC is None:
        return {"skipped": "Orthanc is not installed"}
    from bench_denoise_series import write_series

    series = tmp / "target-in"
    write_series(series, slices)
    wall, peak_mb, _ = run_measured([sys.executable, "-m", "vagan", "denoise", "--model", MODEL, str(series),
                                     str(tmp / "target-denoised")])
    node_port = free_port()
    orthanc = Orthanc(tmp / "orthanc", {"vagan": ("VAGAN", HOST, node_port)}).start()
    node = NodeProcess(tmp / "target-node", _node_config(tmp / "target-spool", node_port,
                                                         ("ORTHANC", orthanc.dicom_port), [f"ORTHANC@{HOST}"],
                                                         stable)).start()
    try:
        answers = orthanc.upload(sorted(series.glob("*.dcm")))
        import pydicom

        first = pydicom.dcmread(next(series.glob("*.dcm")), stop_before_pixels=True)
        study, source = str(first.StudyInstanceUID), str(first.SeriesInstanceUID)
        started = time.time()
        orthanc.store_to("vagan", [answers[0]["ParentSeries"]], timeout=600)
        stored_s = time.time() - started

        def done():
            derived = {u: n for u, n in orthanc.series_in_study(study).items() if u != source}
            return derived if derived and list(derived.values()) == [slices] else None

        wait_for(done, 1800, step=0.2, what="Orthanc to hold the derived series")
        total_s = time.time() - started
    finally:
        node.stop()
        orthanc.stop()
    log = node.log.read_text()
    denoise_line = next((ln for ln in log.splitlines() if "denoised" in ln and "slice(s)" in ln), "")
    return {"slices": slices, "side": 512, "model": MODEL, "stable_s": stable,
            "vagan_denoise_s": round(wall, 1), "vagan_denoise_peak_mb": round(peak_mb),
            "orthanc_to_node_s": round(stored_s, 1), "node_total_s": round(total_s, 1),
            "ratio": round(total_s / wall, 3), "target_ratio": 1.2, "met": total_s <= 1.2 * wall,
            "node_denoise_line": denoise_line.split(" ", 2)[-1]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=20)
    parser.add_argument("--slices", type=int, default=64)
    parser.add_argument("--side", type=int, default=128)
    parser.add_argument("--associations", type=int, default=4)
    parser.add_argument("--stable", type=float, default=2.0, help="the node's stable_seconds")
    parser.add_argument("--no-orthanc", action="store_true", help="skip the Orthanc end-to-end target")
    parser.add_argument("--no-load", action="store_true", help="skip the load test")
    args = parser.parse_args()
    out: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if not args.no_load:
            out["load"] = load_test(tmp, args.series, args.slices, args.side, args.associations, args.stable)
            print(out["load"], flush=True)
        if not args.no_orthanc:
            out["target"] = target_test(tmp, 64, args.stable)
            print(out["target"], flush=True)
    import torch

    from bench_simulator import _cpu

    out["machine"] = {"cpu": _cpu(), "cpu_count": os.cpu_count(), "torch": torch.__version__,
                      "platform": platform.platform(), "load_average": os.getloadavg()}
    out["command"] = "python benchmarks/bench_node.py " + " ".join(sys.argv[1:])
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "node.json").write_text(json.dumps(out, indent=1))
    lines = ["# `vagan serve`: load and end to end through Orthanc (CPU, 127.0.0.1)", ""]
    if "load" in out:
        r = out["load"]
        lines += ["## Load", "",
                  f"{r['series']} series of {r['slices']} slices at {r['side']}² from {r['associations']} associations "
                  f"at once; node: `{MODEL}`, stable time {r['stable_s']:g} s; receiver: pynetdicom.", "",
                  "| acknowledged | derived series | complete | derived instances | received in [s] | all returned in [s] "
                  "| instances/s |", "|---:|---:|---:|---:|---:|---:|---:|",
                  f"| {r['acknowledged']} | {r['derived_series']} | {r['complete_series']} | {r['derived_instances']} | "
                  f"{r['receive_s']} | {r['total_s']} | {r['instances_per_s']} |", ""]
    if "target" in out and "skipped" not in out["target"]:
        r = out["target"]
        lines += ["## Target: Orthanc -> vagan -> Orthanc against `vagan denoise`", "",
                  f"One {r['slices']}-slice 512² series, model `{r['model']}`, stable time {r['stable_s']:g} s. "
                  "Node: from Orthanc's C-STORE to the node until Orthanc holds every derived instance (polled every "
                  "0.2 s). `vagan denoise`: the whole command (start-up, model, read, denoise, write).", "",
                  "| vagan denoise [s] | Orthanc -> node [s] | node end to end [s] | ratio | target | met |",
                  "|---:|---:|---:|---:|---:|---|",
                  f"| {r['vagan_denoise_s']} | {r['orthanc_to_node_s']} | {r['node_total_s']} | {r['ratio']} | "
                  f"<= {r['target_ratio']} | {'yes' if r['met'] else 'no'} |", "",
                  f"Node log: {r['node_denoise_line']}", ""]
    m = out["machine"]
    lines += [f"Machine: {m['platform']}, {m['cpu_count']} CPUs ({m['cpu']}), torch {m['torch']}, load average at "
              f"the end {m['load_average'][0]:.1f} (other work was running). Command: `{out['command']}`", ""]
    (RESULTS / "node.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
