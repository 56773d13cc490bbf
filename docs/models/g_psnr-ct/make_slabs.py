"""Split a one-patient `vagan simulate --from ... --set noise_pool=true` dataset into three z-slabs that act
as patients (train slices 0-89, validation 95-109, test 115-133 of the 134 3-mm slices: 15 mm gaps, so
that no slice of one slab is a neighbour of another's). Series files are hard-linked, never copied or
changed; each slab gets the part of the noise pool at its slices.

    python docs/models/g_psnr-ct/make_slabs.py data/pancreas-pool data/pancreas-slabs-pool
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pydicom

SLABS = {"S1train": range(0, 90), "S2val": range(95, 110), "S3test": range(115, 134)}


def main(src: Path, dst: Path) -> None:
    (patient,) = [p for p in src.iterdir() if p.is_dir()]
    for series in sorted(p for p in patient.iterdir() if p.is_dir()):
        files = sorted(series.glob("*.dcm"),
                       key=lambda f: float(pydicom.dcmread(f, stop_before_pixels=True).ImagePositionPatient[2]))
        for name, slices in SLABS.items():
            out = dst / f"{patient.name}_{name}" / series.name
            out.mkdir(parents=True, exist_ok=False)
            for k in slices:
                os.link(files[k], out / files[k].name)
    for pool in patient.glob("noise_*.npz"):
        with np.load(pool) as data:
            order = np.argsort(data["positions_mm"])
            for name, slices in SLABS.items():
                keep = np.sort(order[list(slices)])
                with open(dst / f"{patient.name}_{name}" / pool.name, "xb") as handle:
                    np.savez(handle, pool=data["pool"][:, :, keep], positions_mm=data["positions_mm"][keep],
                             dose=data["dose"])
    print("slabs:", {name: len(slices) for name, slices in SLABS.items()})


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
