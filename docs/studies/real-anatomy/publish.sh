#!/usr/bin/env bash
# Copy a run of docs/studies/real-anatomy.yaml into this folder: its report, study.json and figures.
#   docs/studies/real-anatomy/publish.sh STUDY_OUT        (e.g. studies/real-anatomy)
set -euo pipefail
OUT=${1:?give the study folder (the OUT of vagan study)}
HERE=$(cd "$(dirname "$0")" && pwd)
[[ -f "$OUT/report/report.md" && -f "$OUT/report/study.json" ]] || { echo "error: $OUT has no study report" >&2; exit 2; }
mkdir -p "$HERE/figures"
cp "$OUT/report/report.md" "$OUT/report/study.json" "$HERE/"
cp "$OUT"/report/figures/*.png "$HERE/figures/"
echo "published $OUT/report into $HERE"
