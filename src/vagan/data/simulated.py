"""Write paired LDCT/NDCT datasets in the Mayo 2016 layout, from the phantom or from real NDCT.

Layout (the one :mod:`vagan.io.mayo` reads)::

    OUT/manifest.json
    OUT/<patient>/full_<T>mm/     NDCT series (DICOM)
    OUT/<patient>/quarter_<T>mm/  LDCT series at the chosen dose fraction
    OUT/<patient>/truth_<T>mm/    noise-free phantom (phantom datasets, optional)
    OUT/<patient>/noise_<T>mm.npz unit noise images of the series (``--from`` with ``noise_pool``)
    OUT/<patient>/{full,quarter}_<T>mm_series-<name>/, noise_<T>mm_series-<name>.npz
                                  each further ``--from`` series of the patient at <T> mm (``_plan_series``)

``--from`` takes normal-dose series only: a series whose SeriesDescription says low dose (TCIA's
LDCT-and-Projection-data ``Low Dose Images``) is skipped with its reason, so a TCIA tree gives its
full-dose series, its GE cases without a low dose included.

As for the Mayo data, the LDCT is made from the NDCT by inserting the extra noise of the lower
dose into its projections (``source="ndct"``); phantom NDCT is itself a full-dose scan of the
noise-free phantom (``source="truth"``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from vagan import __version__
from vagan.config_schema import Section, bounded, build_dataclass
from vagan.errors import ConfigError, InputDataError
from vagan.io.atomic import atomic_dir
from vagan.io.dicom import MAX_SIDE, looks_like_dicom, write_dicom_series
from vagan.io.volume import CTVolume
from vagan.physics.simulate import PADDING_BELOW_HU, LowDoseSimulator, SimulationConfig, covering_config

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"


@dataclass(frozen=True)
class DatasetSpec(Section):
    """How many phantom patients and slices, at what size, dose and seed."""

    patients: int = bounded(4, ge=1)
    slices_per_patient: int = bounded(16, ge=1)
    size: int = bounded(256, ge=64, le=MAX_SIDE)  # the phantom needs 64 pixels a side
    pixel_spacing_mm: float | None = bounded(None, gt=0)  # None: the phantom's 358.4 mm field of view over `size` px
    slice_thickness_mm: float = bounded(1.0, gt=0)
    dose: float = bounded(0.25, gt=0, le=1)  # fraction of the full dose
    write_truth: bool = False
    seed: int = bounded(0, ge=0)  # numpy seeds are non-negative
    batch_size: int = bounded(4, ge=1)
    # --from only: "matched" gives each slice the photons its own noise says it had (a body bowtie and
    # angular tube-current modulation, i0 matched to the series' noise; vagan.data.noise_matching);
    # "config" takes simulation.i0, .bowtie and .tube_current_modulation as they are
    exposure: Literal["matched", "config"] = "matched"
    # --from only: also write each series' pool of unit noise images (vagan.data.noise_pool), from which
    # training mixes fresh noise at any dose every epoch (data.train_doses)
    noise_pool: bool = False
    simulation: SimulationConfig = field(default_factory=SimulationConfig)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DatasetSpec:
        return build_dataclass(cls, data, "")

    @property
    def thickness_label(self) -> str:
        return f"{self.slice_thickness_mm:g}mm"


def _dose_label(dose: float) -> str:
    return f"{100 * dose:g}% dose"


def _simulate_volume(simulator: LowDoseSimulator, hu: np.ndarray, dose: float, source: str,
                     generator: torch.Generator, batch_size: int, device: torch.device,
                     i0: np.ndarray | None = None, progress: Any = None) -> np.ndarray:
    """``hu`` ``(Z, H, W)`` at ``dose``, ``batch_size`` slices at a time (``i0``: one per slice, or the
    config's); ``progress`` (a tqdm bar) advances by slice."""
    out = np.empty_like(hu, dtype=np.float32)
    for start in range(0, hu.shape[0], batch_size):
        chunk = torch.from_numpy(np.ascontiguousarray(hu[start:start + batch_size], dtype=np.float32)).to(device)
        level = None if i0 is None else torch.as_tensor(i0[start:start + len(chunk)], dtype=torch.float64)
        out[start:start + len(chunk)] = simulator(chunk, dose, generator=generator, source=source, i0=level).cpu().numpy()
        if progress is not None:
            progress.update(len(chunk))
    return out


def _scan_pairs(simulator: LowDoseSimulator, truth: np.ndarray, dose: float, generator: torch.Generator,
                batch_size: int, device: torch.device) -> tuple[np.ndarray, np.ndarray]:
    """NDCT and LDCT ``(Z, H, W)`` of a noise-free volume, ``batch_size`` slices at a time
    (:meth:`LowDoseSimulator.scan_pair`: the LDCT's extra noise goes into the NDCT's projections)."""
    ndct = np.empty_like(truth, dtype=np.float32)
    ldct = np.empty_like(truth, dtype=np.float32)
    for start in range(0, truth.shape[0], batch_size):
        chunk = torch.from_numpy(np.ascontiguousarray(truth[start:start + batch_size], dtype=np.float32)).to(device)
        full, low = simulator.scan_pair(chunk, dose, generator)
        ndct[start:start + len(chunk)] = full.cpu().numpy()
        ldct[start:start + len(chunk)] = low.cpu().numpy()
    return ndct, ldct


def write_phantom_dataset(out: Path, spec: DatasetSpec, *, overwrite: bool = False, device: str | torch.device = "cpu",
                          progress: bool = True) -> Path:
    """Phantom patients scanned at full dose (NDCT) and at ``spec.dose`` (LDCT), written atomically."""
    from tqdm.auto import tqdm

    from vagan.physics.phantom import (
        FIELD_OF_VIEW_MM,
        PhantomPatient,
        make_phantom_volume,
    )

    device = torch.device(device)
    spacing = spec.pixel_spacing_mm or FIELD_OF_VIEW_MM / spec.size
    simulator = LowDoseSimulator(spec.simulation, (spec.size, spec.size), spacing, device=device)
    noise = torch.Generator(device=device).manual_seed(spec.seed)
    anatomy = np.random.default_rng(spec.seed)
    manifest: dict[str, Any] = {"kind": "vagan-paired-dataset", "source": "phantom", "vagan_version": __version__,
                                "spec": {k: v for k, v in asdict(spec).items() if k != "simulation"}, "pixel_spacing_mm": spacing,
                                "simulation": spec.simulation.to_dict(), "patients": []}
    with atomic_dir(Path(out), "dataset", overwrite=overwrite) as tmp:
        for p in tqdm(range(spec.patients), desc="phantom patients", disable=not progress):
            pid = f"PH{p + 1:03d}"
            patient = PhantomPatient.random(anatomy)
            truth = make_phantom_volume(spec.slices_per_patient, size=spec.size, pixel_spacing_mm=spacing,
                                        slice_spacing_mm=spec.slice_thickness_mm, patient=patient,
                                        z_center_mm=float(anatomy.uniform(-60.0, 40.0)))
            ndct, ldct = _scan_pairs(simulator, truth, spec.dose, noise, spec.batch_size, device)
            entry = _write_patient(tmp, pid, spec.thickness_label, ndct, ldct, spec.dose,
                                   truth if spec.write_truth else None, spacing=spacing,
                                   thickness_mm=spec.slice_thickness_mm)
            manifest["patients"].append(entry)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return Path(out)


def _write_patient(root: Path, pid: str, label: str, ndct: np.ndarray, ldct: np.ndarray, dose: float,
                   truth: np.ndarray | None = None, *, spacing: float | None = None, thickness_mm: float | None = None,
                   template: CTVolume | None = None) -> dict[str, Any]:
    """One patient's series; full and quarter dose share the study and frame of reference."""
    from pydicom.uid import generate_uid

    common: dict[str, Any] = {"patient_id": pid}
    if template is None:
        common.update(pixel_spacing_mm=(spacing, spacing), slice_thickness_mm=thickness_mm,
                      patient_name=f"Phantom^{pid}", study_instance_uid=generate_uid(),
                      frame_of_reference_uid=generate_uid())
    else:
        common.update(template=template)
    full = write_dicom_series(ndct, root / pid / f"full_{label}", series_description="NDCT full dose", **common)
    quarter = write_dicom_series(ldct, root / pid / f"quarter_{label}",
                                 series_description=f"LDCT simulated {_dose_label(dose)}",
                                 derivation_description=f"vagan simulated {_dose_label(dose)} from the full-dose series",
                                 **common)
    entry = {"id": pid, "slices": int(ndct.shape[0]), "full": str(full.relative_to(root)),
             "quarter": str(quarter.relative_to(root))}
    if truth is not None:
        path = write_dicom_series(truth, root / pid / f"truth_{label}", series_description="noise-free phantom", **common)
        entry["truth"] = str(path.relative_to(root))
    return entry


MAX_SEARCH_DEPTH = 8
"""How deep ``--from`` looks for series below the folder it is given (a CD or PACS export nests 3-5)."""


def _series_sources(source: Path) -> list[Path]:
    """Every series under ``source``: each folder that holds DICOM files, and each NIfTI file, down to
    :data:`MAX_SEARCH_DEPTH` folders (links to folders are not followed, so a loop cannot trap it).
    ``source`` may itself be a series folder or a NIfTI file."""
    from vagan.io.nifti import is_nifti_path

    if source.is_file() and is_nifti_path(source):
        return [source]
    if not source.is_dir():
        raise InputDataError(f"{source}: not a folder or NIfTI file; --from takes a DICOM series folder, a NIfTI "
                             "file, or a folder holding them (nested folders too)")
    found: list[Path] = []
    others = 0
    pending = [(source, 0)]
    while pending:
        folder, depth = pending.pop()
        entries = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
        files = [p for p in entries if p.is_file()]
        niftis = [p for p in files if is_nifti_path(p)]
        found.extend(niftis)
        if any(looks_like_dicom(p) for p in files if p not in niftis):
            found.append(folder)
        else:
            others += len(files) - len(niftis)
        if depth < MAX_SEARCH_DEPTH:
            pending.extend((p, depth + 1) for p in reversed(entries) if p.is_dir() and not p.is_symlink())
    if not found:
        raise InputDataError(f"{source}: holds no DICOM series and no NIfTI files (searched {MAX_SEARCH_DEPTH} "
                             "folders deep)")
    if others:
        log.warning("%s: %d file(s) in folders without DICOM are not DICOM or NIfTI and are not read", source, others)
    return sorted(found)


def _source_name(path: Path) -> str:
    """A series folder's name, or a NIfTI file's without its extension."""
    return path.name[: -len(".nii.gz")] if path.name.lower().endswith(".nii.gz") else path.stem if path.is_file() \
        else path.name


def _header_text(volume: CTVolume, key: str) -> str:
    value = volume.headers[0].get(key) if volume.headers else None
    return "" if value is None else str(value).strip()


def _volume_patient(volume: CTVolume, path: Path) -> str:
    """A series' patient: its DICOM PatientID, else its file or folder name (NIfTI carries none)."""
    return _safe_id(_header_text(volume, "PatientID") or _source_name(path))


def _series_name(volume: CTVolume, path: Path) -> str:
    """The name of a patient's further series at one thickness: its DICOM SeriesNumber, else its
    folder or file name, made safe for a folder name."""
    return _safe_id(_header_text(volume, "SeriesNumber") or _source_name(path), "series")


def _safe_id(text: str, empty: str = "patient") -> str:
    """A patient ID (or series name) usable as one folder name; ``empty`` where nothing is left."""
    import re

    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or empty


@dataclass
class _PlannedSeries:
    folder: Path
    patient: str
    thickness: str  # its slice thickness label, e.g. "3mm"
    slices: int
    label: str  # that of its dose folders: the thickness, or "3mm_series-<name>" for a patient's further series at it

    @property
    def further(self) -> bool:
        return self.label != self.thickness


def _low_dose_reason(folder: Path) -> str | None:
    """Why a DICOM series folder is no normal-dose input: its SeriesDescription says low dose (TCIA's
    ``Low Dose Images``, ``quarter dose``; :func:`vagan.io.tcia.dose_kind`); ``None`` otherwise."""
    from vagan.io.tcia import dose_kind, series_description

    if not folder.is_dir():
        return None
    description = series_description(folder)
    if dose_kind(description) != "low":
        return None
    return (f"a low-dose series (SeriesDescription {description!r}); --from inserts noise into normal-dose series "
            "only. A TCIA LDCT-and-Projection-data tree is read as it is by train, evaluate and study (data root); "
            "--from simulates from its full-dose series")


def _plan_series(folders: list[Path]) -> tuple[list[_PlannedSeries], list[tuple[str, str]]]:
    """Read and check every series before any simulation. Returns the usable ones and, with a reason,
    those skipped: low dose by their SeriesDescription (:func:`_low_dose_reason`: a TCIA tree gives its
    full-dose series, GE cases without a low dose too), unreadable, not CT, or non-square pixels.
    Nothing usable is an :class:`InputDataError`.

    All series of one patient go into that patient's folder, so a patient split keeps them together:
    each thickness (Mayo's 1 mm and 3 mm) as its own dose-folder pair labelled by the thickness, and
    each further series at a thickness already taken (in ``folders`` order, which is sorted) as a pair
    labelled ``<T>_series-<name>`` (:func:`vagan.io.mayo.series_label`), ``name`` its DICOM
    SeriesNumber, else its folder or file name, made safe for a folder name; a name the patient already
    has at that thickness gets ``-2``, ``-3``, ... The readers (:func:`vagan.io.mayo.patient_series`)
    load every pair."""
    from vagan.io.mayo import series_label
    from vagan.io.readers import read_volume

    planned: list[_PlannedSeries] = []
    skipped: list[tuple[str, str]] = []
    labels: dict[str, dict[str, Path]] = {}  # per patient: the label of each series planned, and its source
    for folder in folders:
        low = _low_dose_reason(folder)
        if low is not None:
            skipped.append((str(folder), low))
            continue
        try:
            volume = read_volume(folder).validate()
        except InputDataError as err:
            skipped.append((str(folder), str(err)))
            continue
        rows, cols = volume.pixel_spacing_mm
        pid = _volume_patient(volume, folder)
        thickness = _thickness_label(volume)
        if abs(rows - cols) > 1e-3:
            skipped.append((str(folder), f"the simulator needs square pixels, got spacing {rows} x {cols} mm"))
            continue
        taken = labels.setdefault(pid, {})
        label = thickness
        if label in taken:
            name = _series_name(volume, folder)
            label, copy = series_label(thickness, name), 1
            while label in taken:
                copy += 1
                label = series_label(thickness, f"{name}-{copy}")
            log.info("patient %s: %s is a further %s series (the first is %s); its pairs go to %s/full_%s and "
                     "quarter_%s", pid, folder, thickness, taken[thickness], pid, label, label)
        taken[label] = folder
        planned.append(_PlannedSeries(folder, pid, thickness, volume.hu.shape[0], label))
    for folder, why in skipped:
        log.warning("skipped %s: %s", folder, why)
    if not planned:
        reasons = "; ".join(f"{Path(f).name}: {why}" for f, why in skipped[:3])
        raise InputDataError(f"no usable normal-dose series among {len(folders)} ({reasons})")
    return planned, skipped


def _thickness_label(volume: CTVolume) -> str:
    return f"{volume.slice_thickness_mm or volume.slice_spacing_mm:g}mm"


def series_simulator(config: SimulationConfig, exposure: str, image_shape: tuple[int, int], pixel_mm: float,
                     device: torch.device) -> LowDoseSimulator:
    """The simulator of one real series: a detector wide enough for its field of view, and for
    ``exposure="matched"`` a body bowtie with angular tube-current modulation."""
    config = covering_config(config, image_shape, pixel_mm)
    if exposure == "matched":
        config = dataclasses.replace(config, bowtie="body", tube_current_modulation=True)
    return LowDoseSimulator(config, image_shape, pixel_mm, device=device)


def write_dataset_from_series(source: Path, out: Path, dose: float, config: SimulationConfig, *, seed: int = 0,
                              overwrite: bool = False, device: str | torch.device = "cpu", batch_size: int = 4,
                              progress: bool = True, exposure: str = "matched", noise_pool: bool = False) -> Path:
    """Real normal-dose series -> paired dataset: NDCT as read, LDCT by noise insertion (``source="ndct"``).

    Every series is read and checked before the first simulation. With ``exposure="matched"`` each
    slice's photons follow the series' own noise and tube current (:mod:`vagan.data.noise_matching`);
    the manifest records what was found per series, and the source folder (``from``) and dose-folder
    ``label`` of each. Several series of one patient all go into its folder (:func:`_plan_series`).
    With ``noise_pool`` each series also gets ``<patient>/noise_<label>.npz``
    (:mod:`vagan.data.noise_pool`), and its LDCT is mixed from that pool.
    """
    from tqdm.auto import tqdm

    from vagan.data.noise_matching import match_exposure
    from vagan.data.noise_pool import make_noise_pool, mix, pool_path, positions_mm, save_pool
    from vagan.io.readers import read_volume

    if not 0.0 < dose <= 1.0:
        raise ConfigError(f"dose: a fraction of the full dose in (0, 1], got {dose}")
    if exposure not in ("matched", "config"):
        raise ConfigError(f"exposure: 'matched' or 'config', got {exposure!r}")
    device = torch.device(device)
    planned, skipped = _plan_series(_series_sources(Path(source)))
    pooled = noise_pool and config.noise  # no noise, no pool
    noise = torch.Generator(device=device).manual_seed(seed)
    manifest: dict[str, Any] = {"kind": "vagan-paired-dataset", "source": str(source), "dose": dose, "seed": seed,
                                "vagan_version": __version__, "exposure": exposure, "simulation": config.to_dict(),
                                "skipped_series": [{"folder": f, "reason": why} for f, why in skipped], "patients": []}
    with atomic_dir(Path(out), "dataset", overwrite=overwrite, inputs=(Path(source),)) as tmp, \
            tqdm(total=sum(p.slices for p in planned), desc="slices", unit="slice", disable=not progress) as bar:
        for plan in planned:
            bar.set_postfix_str(f"{plan.patient} {plan.label}" if plan.further else plan.patient)
            volume = read_volume(plan.folder).validate()
            pixel = float(volume.pixel_spacing_mm[0])
            simulator = series_simulator(config, exposure, volume.hu.shape[1:], pixel, device)
            matched = match_exposure(simulator, volume.hu, pixel, volume.headers, noise, device) \
                if exposure == "matched" and config.noise else None
            i0 = None if matched is None else matched.i0
            label = plan.label
            if pooled:
                pool = make_noise_pool(simulator, volume.hu, i0, noise, batch_size, device, bar)
                ldct = np.where(volume.hu < PADDING_BELOW_HU, volume.hu, volume.hu + mix(pool, dose)).astype(np.float32)
                (tmp / plan.patient).mkdir(parents=True, exist_ok=True)
                save_pool(pool_path(tmp / plan.patient, label), pool, positions_mm(volume), dose)
            else:
                ldct = _simulate_volume(simulator, volume.hu, dose, "ndct", noise, batch_size, device, i0, bar)
            entry = _write_patient(tmp, plan.patient, label, volume.hu, ldct, dose, template=volume)
            entry |= {"from": str(plan.folder), "label": label, "skipped": [[p.name, why] for p, why in volume.skipped],
                      "n_detectors": simulator.config.n_detectors}
            if matched is not None:
                entry["exposure"] = matched.to_dict()
            if pooled:
                entry["noise_pool"] = pool_path(Path(plan.patient), label).as_posix()
            manifest["patients"].append(entry)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return Path(out)
