"""Collect benchmarks/results/*.md into benchmarks/RESULTS.md (run after the bench_*.py scripts).

    python benchmarks/make_results.py
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).parent
ORDER = ("inference", "inference_engine_avx2", "shipped", "denoise_series", "runtime", "training", "study_real_anatomy", "inference_gpu", "training_gpu", "models", "simulator", "real_simulation", "quality_256", "quality_512", "observers", "dicom_io")

HEADER = """# Benchmark results

Every table below is written by a script in this folder (its command is under each table) and
collected here by `python benchmarks/make_results.py`. Times are wall clock on the machine named
under each table; ratios compare methods measured in the same run. All ran on 2-core AMD EPYCs. The
tables that name no SIMD flags predate printing them: the inference and training tables ran on one
with AVX-512 and AVX512-BF16 but no AMX (its bf16 conv peak, measured in the same runs, is about
0.4 TFLOP/s); the others' SIMD level was not recorded. The tables that name avx2 ran on one with
AVX2 only and no native bf16. No GPU was lent to the sessions that measured them:
`benchmarks/gpu.sh` is the prepared GPU run (`--device cuda`; results `*_gpu.md`), and
`benchmarks/gpu.sh study` runs the real-anatomy study on a GPU.
"""


def main() -> None:
    parts = [HEADER]
    found = {p.stem: p for p in (HERE / "results").glob("*.md")}
    for name in [*ORDER, *sorted(set(found) - set(ORDER))]:
        if name in found:
            text = found[name].read_text().strip()
            parts.append("#" + text if text.startswith("# ") else text)  # demote to a section
    (HERE / "RESULTS.md").write_text("\n\n".join(parts) + "\n")
    print(f"wrote {HERE / 'RESULTS.md'} from {len(found)} result files")


if __name__ == "__main__":
    main()
