"""Load the slice pairs of a split (train/val/test) from a dataset in the Mayo 2016 layout, or in
TCIA's LDCT-and-Projection-data layout (:mod:`vagan.io.tcia`, read in place; its subjects are the patients).

Both real Mayo data and datasets written by ``vagan simulate`` use the Mayo layout; the split is
by patient, never by slice (docs/design.md, "Data and units"), so all series of one patient
(``vagan simulate --from`` may write several at one thickness) fall in the same subset.
"""

from __future__ import annotations

import logging
from pathlib import Path

from vagan.data.patches import SlicePair
from vagan.errors import ConfigError, InputDataError
from vagan.io.mayo import (
    DEFAULT_THICKNESS,
    DataSplit,
    dose_folders,
    list_mayo_patients,
    load_mayo_pairs,
    split_patients,
)

log = logging.getLogger(__name__)


def patient_split(root: Path, split: DataSplit, seed: int, thickness: str = DEFAULT_THICKNESS) -> dict[str, list[str]]:
    """Patients of each subset of ``root`` under ``split`` (names or fractions)."""
    root = Path(root)
    if not root.is_dir():
        raise InputDataError(f"dataset folder {root} does not exist; make one with `vagan simulate` or point data.root at Mayo data")
    patients = list_mayo_patients(root, thickness=thickness)
    if not patients:
        from vagan.io.tcia import empty_root_hint, is_tcia_root

        if is_tcia_root(root):
            raise InputDataError(f"{root}: {empty_root_hint(root, thickness)}")
        raise InputDataError(f"{root}: no patient folder with both full_{thickness} and quarter_{thickness} series")
    return split_patients(patients, split, seed=seed)


def load_slice_pairs(root: Path, patients: list[str], thickness: str = DEFAULT_THICKNESS, max_slices: int | None = None,
                     with_noise_pool: bool = False) -> list[SlicePair]:
    """All LDCT/NDCT slice pairs of ``patients`` (in order), at most ``max_slices`` of them; with
    ``with_noise_pool`` each carries its unit noise images (:mod:`vagan.data.noise_pool`).

    A patient with several series at ``thickness`` gives the slices of all of them, series by series
    (:func:`~vagan.io.mayo.load_mayo_pairs`), each with its own noise pool; ``index`` counts through
    the patient's slices in that order, so the first series' slices keep ``0..Z-1``.
    """
    from vagan.data.noise_pool import load_pool, pool_path, positions_mm
    from vagan.io.tcia import is_tcia_root

    if with_noise_pool and patients and is_tcia_root(Path(root)):
        raise InputDataError(f"{root}: data.train_doses mixes noise from the noise pools that only `vagan simulate "
                             "--from ... --set noise_pool=true` writes, and a TCIA LDCT-and-Projection-data tree has "
                             "none; leave data.train_doses unset to train on its own low dose, or simulate from its "
                             "full-dose series (vagan simulate OUT --from ROOT --set noise_pool=true) and train on OUT")
    pairs: list[SlicePair] = []
    for patient in patients:
        index = 0
        for paired in load_mayo_pairs(root, patient, thickness=thickness):
            pixel = float(paired.ndct.pixel_spacing_mm[0])
            pool = None
            if with_noise_pool:
                path = pool_path(Path(root) / patient, paired.label)
                if not path.is_file():
                    raise InputDataError(f"{path}: no noise pool for patient {patient} "
                                         f"({dose_folders(paired.label)[1]}); data.train_doses needs one per series "
                                         "of every training patient "
                                         "(vagan simulate --from ... --set noise_pool=true)")
                pool = load_pool(path, positions_mm(paired.ndct), paired.ndct.hu.shape)
            for z in range(paired.ndct.hu.shape[0]):
                noise = None if pool is None else pool[:, :, z]
                pairs.append(SlicePair(paired.ldct.hu[z], paired.ndct.hu[z], patient=patient, index=index,
                                       pixel_mm=pixel, noise=noise))
                index += 1
                if max_slices is not None and len(pairs) >= max_slices:
                    return pairs
    return pairs


def load_split(root: Path, split: DataSplit, seed: int, subset: str, thickness: str = DEFAULT_THICKNESS, max_slices: int | None = None,
               with_noise_pool: bool = False) -> list[SlicePair]:
    """Slice pairs of one subset (e.g. ``"train"``) of a dataset root."""
    subsets = patient_split(root, split, seed, thickness)
    if subset not in subsets:
        raise ConfigError(f"data.split has no subset {subset!r}; it has {sorted(subsets)}")
    patients = subsets[subset]
    if not patients:
        raise InputDataError(f"{root}: the {subset!r} subset of the split is empty; add patients or change data.split")
    log.info("%s: %d patient(s) %s", subset, len(patients), ", ".join(patients))
    return load_slice_pairs(root, patients, thickness, max_slices, with_noise_pool)
