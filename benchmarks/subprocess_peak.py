"""Run a command in a child process and read its wall time and peak resident memory (shared by the
benchmarks that time whole `vagan` commands as a user runs them)."""

from __future__ import annotations

import subprocess
import sys
import time

_MEASURE = ("import resource, subprocess, sys; rc = subprocess.run(sys.argv[1:]).returncode; "
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(rc)")
"""Runs the command given as arguments and prints its peak RSS in KiB (one process per measurement)."""


def run_measured(command: list[str]) -> tuple[float, float, str]:
    """``(wall seconds, peak RSS in MB, stderr)`` of ``command``; exits with its stderr if it fails."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _MEASURE, *command], capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(proc.stderr)
    return wall, int(proc.stdout.strip().splitlines()[-1]) / 1024, proc.stderr
