"""Collect benchmarks/results/*.md into benchmarks/RESULTS.md (run after the bench_*.py scripts).

    python benchmarks/make_results.py
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).parent
ORDER = ("simulator", "dicom_io", "models", "training", "training_gpu", "inference", "inference_gpu")

HEADER = """# Benchmark results

Every table below is written by a script in this folder (its command is under each table) and
collected here by `python benchmarks/make_results.py`. Times are wall clock on the machine named
under each table; ratios compare methods measured in the same run. No GPU was available when these
were measured; the scripts take `--device cuda` (and `--amp`) where one is.
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
