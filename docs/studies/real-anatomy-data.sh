#!/usr/bin/env bash
# The data of docs/studies/real-anatomy.yaml, in DATA (default: data): the Pancreatic-CT-CBCT-SEG pairs
# with noise pools and their slabs (docs/models/g_psnr-ct/README.md, steps 1-2), the held-out pool of four
# real pydicom-data slices of other patients and scanners with quarter dose inserted, and
# DATA/real-anatomy-pool, which links both. Steps whose output exists are skipped; nothing is overwritten.
#   REAL_CT=../shared/data/real-ct/pancreatic-ct-cbct-seg docs/studies/real-anatomy-data.sh [DATA]
set -euo pipefail
DATA=${1:-data}
REAL_CT=${REAL_CT:-../shared/data/real-ct/pancreatic-ct-cbct-seg}
HERE=$(cd "$(dirname "$0")" && pwd)
SLABS="$HERE/../models/g_psnr-ct/make_slabs.py"
mkdir -p "$DATA"
if [[ ! -d "$DATA/pancreas-pool" ]]; then
  [[ -d "$REAL_CT" ]] || { echo "error: no Pancreatic-CT-CBCT-SEG series at $REAL_CT; set REAL_CT" >&2; exit 2; }
  vagan simulate "$DATA/pancreas-pool" --from "$REAL_CT" --dose 0.25 --set noise_pool=true     # ~15 min, 2 cores
fi
[[ -d "$DATA/pancreas-slabs-pool" ]] || python "$SLABS" "$DATA/pancreas-pool" "$DATA/pancreas-slabs-pool"
if [[ ! -d "$DATA/heldout-pool" ]]; then
  # one folder per slice; pydicom-data ships them (pip install pydicom-data... or the pydicom source tree)
  python - "$DATA/heldout-src" <<'PY'
import shutil, sys
from pathlib import Path
from pydicom.data import get_testdata_file

for folder, name in {"pancreas": "explicit_VR-UN.dcm", "cq500": "693_UNCR.dcm", "head2": "J2K_pixelrep_mismatch.dcm",
                     "neck": "bad_sequence.dcm"}.items():
    path = get_testdata_file(name, download=False)
    if path is None:
        sys.exit(f"error: pydicom's test file {name} is not installed; install pydicom-data")
    (Path(sys.argv[1]) / folder).mkdir(parents=True, exist_ok=True)
    shutil.copy2(path, Path(sys.argv[1]) / folder / name)
PY
  vagan simulate "$DATA/heldout-pool" --from "$DATA/heldout-src" --dose 0.25 --set noise_pool=true
fi
if [[ ! -d "$DATA/real-anatomy-pool" ]]; then
  mkdir "$DATA/real-anatomy-pool"
  for p in "$DATA"/pancreas-slabs-pool/Pancreas-CT-CB_001_S* "$DATA"/heldout-pool/{PANCREAS_0001,CQ500-CT-310,JXD191021006,b2cbe507f250}; do
    [[ -d "$p" ]] || { echo "error: $p is missing; the held-out pool does not hold the expected patients" >&2; exit 2; }
    ln -s "$(cd "$p" && pwd)" "$DATA/real-anatomy-pool/"
  done
fi
echo "real-anatomy data ready: $DATA/real-anatomy-pool"
