"""The 2016 NIH-AAPM-Mayo Low Dose CT Grand Challenge layout, and patient-level splits.

::

    root/<patient>/full_1mm/*.IMA|*.dcm      normal dose (NDCT)
    root/<patient>/quarter_1mm/...           quarter dose (LDCT), same slice positions
    root/<patient>/full_3mm/, quarter_3mm/   the same at 3 mm
    root/<patient>/full_1mm_series-<name>/, quarter_1mm_series-<name>/
                                             a further 1 mm series of the patient (``vagan simulate --from``)

``vagan simulate`` writes its datasets in this layout too (plus a ``manifest.json`` at the root,
ignored here). A patient may hold several series at one thickness: the first in the plain folders,
each further one in folders labelled ``<T>_series-<name>`` (:func:`series_label`). The readers take
all of them, in :func:`patient_series` order, so a patient's series always stay together. Splits are
always by patient, never by slice (docs/design.md, "Data and units").

A root in TCIA's LDCT-and-Projection-data layout (:mod:`vagan.io.tcia`) is read by the same functions:
:func:`list_mayo_patients`, :func:`load_mayo_pair` and :func:`load_mayo_pairs` hand it to that module,
so it works wherever a root in this layout does.
"""

from __future__ import annotations

import difflib
import logging
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vagan.config_schema import Section, build_dataclass
from vagan.errors import ConfigError, InputDataError
from vagan.io.dicom import read_dicom_series
from vagan.io.volume import CTVolume

log = logging.getLogger(__name__)

SUBSETS = ("train", "val", "test")
DEFAULT_THICKNESS = "1mm"  # the Mayo 2016 slices the paper used
ANY_THICKNESS = "any"  # each patient's pairs at its one thickness, whatever it is (e.g. `simulate --from` data)
SERIES_MARK = "_series-"  # <dose>_<T>_series-<name>: a further series of one patient at thickness T
Z_TOLERANCE_MM = 0.1  # slices of the two doses closer than this along the normal are one pair


def dose_folders(thickness: str) -> tuple[str, str]:
    """(LDCT, NDCT) folder names for a slice thickness such as ``"1mm"``, or a series label such as
    ``"1mm_series-3"`` (:func:`series_label`)."""
    return f"quarter_{thickness}", f"full_{thickness}"


def series_label(thickness: str, name: str | None = None) -> str:
    """The label of a pair of dose folders: ``thickness`` for a patient's first series at it,
    ``<thickness>_series-<name>`` for each further one (``name`` already safe for a folder name)."""
    return thickness if name is None else f"{thickness}{SERIES_MARK}{name}"


def label_thickness(label: str) -> str:
    """The thickness of a dose-folder label: ``"1mm_series-3"`` -> ``"1mm"``, ``"1mm"`` -> ``"1mm"``."""
    return label.split(SERIES_MARK, 1)[0]


@dataclass(frozen=True)
class PairedVolume:
    """LDCT and NDCT series of one patient, slice ``k`` of one paired with slice ``k`` of the other;
    ``label`` names their dose folders (``"1mm"``, or ``"1mm_series-3"`` for a further series);
    ``dose`` is the LDCT's dose as a fraction of the NDCT's where the data say it (TCIA), else ``None``."""

    patient: str
    ldct: CTVolume
    ndct: CTVolume
    label: str = ""
    dose: float | None = None


def _dose_labels(folder: Path) -> tuple[set[str], set[str]]:
    """Labels of the ``quarter_*`` and of the ``full_*`` folders in ``folder``."""
    low: set[str] = set()
    full: set[str] = set()
    if folder.is_dir():
        for path in folder.iterdir():
            if path.is_dir() and path.name.startswith("quarter_"):
                low.add(path.name.removeprefix("quarter_"))
            elif path.is_dir() and path.name.startswith("full_"):
                full.add(path.name.removeprefix("full_"))
    return low, full


def _at_thickness(label: str, thickness: str) -> bool:
    return label == thickness or label.startswith(thickness + SERIES_MARK)


def patient_series(folder: Path, thickness: str) -> list[str]:
    """Labels of every pair of dose folders that ``folder`` holds at ``thickness``: the plain one
    (``thickness`` itself) first, then each further series (``<thickness>_series-<name>``) sorted by
    name; empty when it holds none (the patient is skipped).

    ``thickness`` names it (``"1mm"``), or is :data:`ANY_THICKNESS`: the patient's pairs at its one
    thickness, whatever that is; pairs at several thicknesses are then an :class:`InputDataError`. A
    dose folder without its partner is left out with a warning (for a named thickness).
    """
    folder = Path(folder)
    low, full = _dose_labels(folder)
    both = low & full
    if thickness == ANY_THICKNESS:
        found = sorted({label_thickness(label) for label in both})
        if len(found) > 1:
            raise InputDataError(f"{folder}: dose folders at {', '.join(found)}; give the thickness to use instead of "
                                 f"{ANY_THICKNESS!r}")
        if not found:
            return []
        thickness = found[0]
    else:
        for label in sorted(low ^ full):
            if _at_thickness(label, thickness):
                log.warning("%s: has only %s, not its partner; that series is skipped", folder,
                            dose_folders(label)[0 if label in low else 1])
    return sorted((label for label in both if _at_thickness(label, thickness)),
                  key=lambda label: (label != thickness, label))


def patient_thickness(folder: Path, thickness: str) -> str | None:
    """The thickness label whose dose folders ``folder`` holds, or ``None`` (the patient is skipped).

    ``thickness`` names it (``"1mm"``), or is :data:`ANY_THICKNESS`: the thickness of the patient's
    pairs, whatever it is; a patient with pairs at several thicknesses is then an :class:`InputDataError`.
    All of the patient's series at it are in :func:`patient_series`.
    """
    labels = patient_series(folder, thickness)
    return label_thickness(labels[0]) if labels else None


def list_mayo_patients(root: Path, thickness: str = DEFAULT_THICKNESS) -> list[str]:
    """Sorted names of the patient folders under ``root`` holding both dose folders of ``thickness``
    (one pair or several: :func:`patient_series`).

    A root in TCIA's LDCT-and-Projection-data layout gives its subjects with a full- and a low-dose
    series at ``thickness`` instead (:func:`vagan.io.tcia.list_tcia_subjects`)."""
    from vagan.io.tcia import is_tcia_root, list_tcia_subjects

    root = Path(root)
    if is_tcia_root(root):
        return list_tcia_subjects(root, thickness)
    if not root.is_dir():
        raise InputDataError(f"{root}: Mayo dataset folder does not exist; expected root/<patient>/full_{thickness}/")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    return [folder.name for folder in folders if patient_thickness(folder, thickness) is not None]


def _along_normal(volume: CTVolume, normal: np.ndarray) -> np.ndarray | None:
    if volume.slice_positions_mm is None:
        return None
    return np.asarray(volume.slice_positions_mm, dtype=np.float64) @ normal


def _check_same_geometry(patient: str, ldct: CTVolume, ndct: CTVolume) -> None:
    if ldct.hu.shape[1:] != ndct.hu.shape[1:]:
        raise InputDataError(
            f"patient {patient}: LDCT slices are {ldct.hu.shape[1:]} ({ldct.source}) but NDCT slices are "
            f"{ndct.hu.shape[1:]} ({ndct.source}); pairs need the same rows and columns"
        )
    if not np.allclose(ldct.pixel_spacing_mm, ndct.pixel_spacing_mm, rtol=1e-4):
        raise InputDataError(
            f"patient {patient}: LDCT pixel spacing {ldct.pixel_spacing_mm} mm ({ldct.source}) differs from NDCT "
            f"{ndct.pixel_spacing_mm} mm ({ndct.source})"
        )
    lo, no = (np.asarray(v.orientation) if v.orientation is not None else None for v in (ldct, ndct))
    if lo is not None and no is not None and np.abs(lo - no).max() > 1e-3:
        raise InputDataError(f"patient {patient}: LDCT orientation {ldct.orientation} differs from NDCT {ndct.orientation}")
    ids = [str(v.headers[0].get("PatientID", "")) if v.headers else "" for v in (ldct, ndct)]
    if all(ids) and ids[0] != ids[1]:
        raise InputDataError(
            f"patient {patient}: LDCT PatientID {ids[0]!r} ({ldct.source}) differs from NDCT {ids[1]!r} ({ndct.source})"
        )


def _unmatched(a: np.ndarray, b: np.ndarray, tol: float) -> tuple[list[float], list[float]]:
    """Positions of ``a`` with no partner in ``b`` within ``tol``, and vice versa."""
    only_a = [float(z) for z in a if np.abs(b - z).min(initial=np.inf) > tol]
    only_b = [float(z) for z in b if np.abs(a - z).min(initial=np.inf) > tol]
    return only_a, only_b


def _fmt(values: list[float], limit: int = 6) -> str:
    shown = ", ".join(f"{v:.2f}" for v in values[:limit])
    return f"[{shown}{', ...' if len(values) > limit else ''}]"


def _patient_labels(root: Path, patient: str, thickness: str) -> tuple[Path, list[str]]:
    folder = Path(root) / patient
    if not folder.is_dir():
        raise InputDataError(f"{folder}: patient folder does not exist under {root}")
    labels = patient_series(folder, thickness)
    if not labels:
        raise InputDataError(f"{folder}: no pair of dose folders ({', '.join(dose_folders(thickness))})")
    return folder, labels


def load_mayo_pair(
    root: Path, patient: str, thickness: str = DEFAULT_THICKNESS, z_tolerance_mm: float = Z_TOLERANCE_MM
) -> PairedVolume:
    """Read one patient's quarter- and full-dose series and check that they pair slice by slice.

    This is the patient's first pair at ``thickness`` (:func:`patient_series`); :func:`load_mayo_pairs`
    reads all of them. Pairs are matched by position along the slice normal (within ``z_tolerance_mm``);
    different slice counts, unmatched positions or different geometry raise :class:`InputDataError`.
    A TCIA root (:mod:`vagan.io.tcia`) gives the subject's first full/low-dose pair at ``thickness``.
    """
    return next(iter(load_mayo_pairs(root, patient, thickness, z_tolerance_mm)))


def load_mayo_pairs(
    root: Path, patient: str, thickness: str = DEFAULT_THICKNESS, z_tolerance_mm: float = Z_TOLERANCE_MM
) -> Iterator[PairedVolume]:
    """Every pair of one patient at ``thickness``, in :func:`patient_series` order, read one at a time
    and checked as :func:`load_mayo_pair` does; its ``label`` names its dose folders. A TCIA root
    gives the subject's full/low-dose pairs (:func:`vagan.io.tcia.load_tcia_pairs`)."""
    from vagan.io.tcia import is_tcia_root, load_tcia_pairs

    if is_tcia_root(Path(root)):
        yield from load_tcia_pairs(root, patient, thickness, z_tolerance_mm)
        return
    folder, labels = _patient_labels(root, patient, thickness)
    for label in labels:
        yield _load_pair(folder, patient, label, z_tolerance_mm)


def _load_pair(folder: Path, patient: str, label: str, z_tolerance_mm: float) -> PairedVolume:
    low_name, full_name = dose_folders(label)
    return pair_volumes(patient, read_dicom_series(folder / low_name), read_dicom_series(folder / full_name), label,
                        z_tolerance_mm)


def pair_volumes(patient: str, ldct: CTVolume, ndct: CTVolume, label: str = "",
                 z_tolerance_mm: float = Z_TOLERANCE_MM, dose: float | None = None) -> PairedVolume:
    """Check that an LDCT and an NDCT series of one patient pair slice by slice (same rows, columns,
    spacing, orientation and PatientID; the same positions along the normal within ``z_tolerance_mm``,
    else the same slice count) and return them as a :class:`PairedVolume`; else an :class:`InputDataError`."""
    _check_same_geometry(patient, ldct, ndct)
    z_low, z_full = _along_normal(ldct, ndct.slice_normal), _along_normal(ndct, ndct.slice_normal)
    if z_low is None or z_full is None:
        if len(ldct.hu) != len(ndct.hu):
            raise InputDataError(
                f"patient {patient}: {len(ldct.hu)} LDCT slices ({ldct.source}) but {len(ndct.hu)} NDCT slices "
                f"({ndct.source}) and no positions to match them by"
            )
        log.warning("patient %s (%s): no slice positions; LDCT and NDCT paired by slice order", patient, label)
        return PairedVolume(patient, ldct, ndct, label, dose)
    only_low, only_full = _unmatched(z_low, z_full, z_tolerance_mm)
    if only_low or only_full or len(z_low) != len(z_full):
        raise InputDataError(
            f"patient {patient}: {len(z_low)} LDCT slices ({ldct.source}) and {len(z_full)} NDCT slices ({ndct.source}) "
            f"do not pair: LDCT-only positions {_fmt(only_low)} mm, NDCT-only positions {_fmt(only_full)} mm "
            f"(tolerance {z_tolerance_mm} mm); make both series cover the same slices"
        )
    # Both are sorted along the same normal and every slice has a partner: index k pairs with k.
    return PairedVolume(patient, ldct, ndct, label, dose)


# ------------------------------------------------------------------------------------------ splits


@dataclass(frozen=True)
class DataSplit(Section):
    """Patients per subset: fractions (drawn with a seed) or explicit lists of patient names.

    Fractions lie in [0, 1] and sum to 1; a patient is named in one subset at most. In plain data a
    subset left out is empty (0 or no names).
    """

    train: float | tuple[str, ...] = 0.8
    val: float | tuple[str, ...] = 0.1
    test: float | tuple[str, ...] = 0.1

    @property
    def by_name(self) -> bool:
        return isinstance(self.train, tuple)

    @classmethod
    def from_dict(cls, raw: Mapping[str, object], where: str = "data.split") -> DataSplit:
        """Build from ``{"train": 0.7, ...}`` or ``{"train": ["L067", ...], ...}``."""
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{where} must be a mapping of {', '.join(SUBSETS)}, got {type(raw).__name__}")
        return build_dataclass(cls, dict(raw), where)

    @classmethod
    def prepare(cls, data: dict[str, Any], where: str) -> dict[str, Any]:
        """Subsets left out are empty: 0 with fractions, no names with lists."""
        if not data:
            raise ConfigError(f"{where} is empty; give fractions or patient lists for {list(SUBSETS)}")
        kinds = {isinstance(v, (list, tuple)) for v in data.values()}
        if len(kinds) > 1:
            raise ConfigError(f"{where}: values must be all fractions (e.g. train: 0.8) or all lists of patient "
                              f"names, got {data}")
        names = kinds == {True}
        return {subset: () if names else 0.0 for subset in SUBSETS} | data

    def check(self) -> None:
        parts = {subset: getattr(self, subset) for subset in SUBSETS}
        if len({isinstance(v, tuple) for v in parts.values()}) > 1:
            raise ConfigError(f"values must be all fractions (e.g. train: 0.8) or all lists of patient names, "
                              f"got {parts}")
        if self.by_name:
            seen: dict[str, str] = {}
            for subset, names in parts.items():
                for name in names:
                    if name in seen:
                        raise ConfigError(f"patient {name!r} is in both {seen[name]!r} and {subset!r}; a patient "
                                          "belongs to one subset")
                    seen[name] = subset
            return
        for subset, frac in parts.items():
            if not 0.0 <= frac <= 1.0:
                raise ConfigError(f"{subset}: {frac!r} is not a fraction in [0, 1]")
        total = sum(parts.values())
        if abs(total - 1.0) > 1e-6:
            raise ConfigError(f"fractions sum to {total:g}, expected 1 ({parts})")

    def to_dict(self) -> dict[str, float | list[str]]:
        """Plain data for YAML/JSON: ``{"train": 0.8, ...}`` or ``{"train": ["L067", ...], ...}``."""
        return {subset: list(v) if isinstance(v, tuple) else v for subset in SUBSETS
                for v in [getattr(self, subset)]}



def _counts(n: int, fractions: dict[str, float]) -> dict[str, int]:
    """Largest-remainder counts; every positive fraction gets a patient while some subset has two."""
    raw = {k: f * n for k, f in fractions.items()}
    counts = {k: int(np.floor(v)) for k, v in raw.items()}
    for k in sorted(raw, key=lambda k: raw[k] - counts[k], reverse=True)[: n - sum(counts.values())]:
        counts[k] += 1
    for k in SUBSETS:
        if fractions[k] > 0 and counts[k] == 0:
            donor = max(SUBSETS, key=lambda d: counts[d])
            if counts[donor] > 1:
                counts[donor] -= 1
                counts[k] += 1
    return counts


def split_patients(
    patients: Sequence[str], split: Mapping[str, object] | DataSplit, seed: int = 0
) -> dict[str, list[str]]:
    """Assign whole patients to ``train``/``val``/``test``; a patient is never in two subsets.

    ``split`` gives fractions (patients shuffled by ``numpy.random.default_rng(seed)``, counts by
    largest remainder) or explicit name lists (every name must be one of ``patients``; patients
    named nowhere are left out with a warning). Each subset's list is sorted.
    """
    plan = split if isinstance(split, DataSplit) else DataSplit.from_dict(split)
    dup = sorted(p for p, n in Counter(patients).items() if n > 1)
    if dup:
        raise InputDataError(f"patient list names {dup} more than once; patient names must be unique")
    known = sorted(patients)
    if plan.by_name:
        out = {k: list(getattr(plan, k)) for k in SUBSETS}
        for subset, names in out.items():
            for name in names:
                if name not in known:
                    close = difflib.get_close_matches(name, known, n=1)
                    hint = f"; did you mean {close[0]!r}?" if close else f"; known patients: {known}"
                    raise ConfigError(f"the split's {subset!r} subset names an unknown patient {name!r}{hint}")
        unused = sorted(set(known) - {n for names in out.values() for n in names})
        if unused:
            log.warning("patients in no subset of the split (left out): %s", ", ".join(unused))
        return {k: sorted(v) for k, v in out.items()}
    fractions = {k: float(getattr(plan, k)) for k in SUBSETS}  # type: ignore[arg-type]
    order = [known[i] for i in np.random.default_rng(seed).permutation(len(known))]
    counts = _counts(len(order), fractions)
    out, start = {}, 0
    for subset in SUBSETS:
        out[subset] = sorted(order[start : start + counts[subset]])
        start += counts[subset]
    return out
