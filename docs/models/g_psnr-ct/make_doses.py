"""Fixed evaluation sets at 10, 25 and 50% dose from the slab dataset (make_slabs.py): the NDCT hard-linked,
the LDCT = NDCT + the slab's noise pool mixed at that dose (vagan.data.noise_pool.mix at fixed angles),
scanner padding kept as it was. A full-dose set (LDCT = NDCT) is made by hard-linking full_3mm as
quarter_3mm.

    python docs/models/g_psnr-ct/make_doses.py data/pancreas-slabs-pool data/pancreas-eval data/pancreas-pool/manifest.json
    # writes data/pancreas-eval-d10, -d25, -d50
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np

from vagan.data.noise_pool import load_pool, mix, positions_mm
from vagan.io.dicom import read_dicom_series, write_dicom_series
from vagan.physics.simulate import PADDING_BELOW_HU


def main(src: Path, dst_base: Path, pool_manifest: Path) -> None:
    for dose in (0.1, 0.25, 0.5):
        dst = Path(f"{dst_base}-d{round(100 * dose)}")
        for slab in sorted(p for p in src.iterdir() if p.is_dir()):
            volume = read_dicom_series(slab / "full_3mm")
            pool = load_pool(slab / "noise_3mm.npz", positions_mm(volume), volume.hu.shape)
            ldct = np.where(volume.hu < PADDING_BELOW_HU, volume.hu, volume.hu + mix(pool, dose)).astype(np.float32)
            (dst / slab.name / "full_3mm").mkdir(parents=True, exist_ok=False)
            for f in (slab / "full_3mm").iterdir():
                os.link(f, dst / slab.name / "full_3mm" / f.name)
            write_dicom_series(ldct, dst / slab.name / "quarter_3mm", series_description=f"LDCT {100 * dose:g}%",
                               template=volume)
        manifest = json.loads(pool_manifest.read_text())
        manifest.update(dose=dose, patients=[], note="slabs of one patient; LDCT mixed from the noise pool")
        (dst / "manifest.json").write_text(json.dumps(manifest, indent=2))
        print("wrote", dst)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]))
