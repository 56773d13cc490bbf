"""Write paired LDCT/NDCT datasets in the Mayo 2016 layout, from the phantom or from real NDCT.

Layout (the one :mod:`vagan.io.mayo` reads)::

    OUT/manifest.json
    OUT/<patient>/full_<T>mm/     NDCT series (DICOM)
    OUT/<patient>/quarter_<T>mm/  LDCT series at the chosen dose fraction
    OUT/<patient>/truth_<T>mm/    noise-free phantom (phantom datasets, optional)

As for the Mayo data, the LDCT is made from the NDCT by inserting the extra noise of the lower
dose into its projections (``source="ndct"``); phantom NDCT is itself a full-dose scan of the
noise-free phantom (``source="truth"``).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vagan import __version__
from vagan.config_schema import Section, bounded, build_dataclass
from vagan.errors import ConfigError, InputDataError
from vagan.io.atomic import atomic_dir
from vagan.io.dicom import MAX_SIDE, looks_like_dicom, write_dicom_series
from vagan.io.volume import CTVolume
from vagan.physics.simulate import LowDoseSimulator, SimulationConfig

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
                     generator: torch.Generator, batch_size: int, device: torch.device) -> np.ndarray:
    out = np.empty_like(hu, dtype=np.float32)
    for start in range(0, hu.shape[0], batch_size):
        chunk = torch.from_numpy(np.ascontiguousarray(hu[start:start + batch_size], dtype=np.float32)).to(device)
        out[start:start + len(chunk)] = simulator(chunk, dose, generator=generator, source=source).cpu().numpy()
    return out


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
            ndct = _simulate_volume(simulator, truth, 1.0, "truth", noise, spec.batch_size, device)
            ldct = _simulate_volume(simulator, ndct, spec.dose, "ndct", noise, spec.batch_size, device)
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


def _series_folders(source: Path) -> list[Path]:
    """``source`` itself if it holds DICOM files, else its sub-folders that do (one series each)."""
    if not source.is_dir():
        raise InputDataError(f"{source}: not a folder; --from takes a DICOM series folder or a folder of series folders")
    files = sorted(p for p in source.iterdir() if p.is_file() and not p.name.startswith("."))
    if any(looks_like_dicom(p) for p in files):
        return [source]
    folders = sorted(p for p in source.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise InputDataError(f"{source}: holds no DICOM files and no series folders")
    if files:
        log.warning("%s: %d file(s) beside the series folders are not DICOM and not read: %s", source, len(files),
                    ", ".join(p.name for p in files[:5]))
    return folders


def _safe_id(text: str) -> str:
    """A patient ID usable as one folder name."""
    import re

    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "patient"


def write_dataset_from_series(source: Path, out: Path, dose: float, config: SimulationConfig, *, seed: int = 0,
                              overwrite: bool = False, device: str | torch.device = "cpu", batch_size: int = 4,
                              progress: bool = True) -> Path:
    """Real normal-dose series -> paired dataset: NDCT as read, LDCT by noise insertion (``source="ndct"``)."""
    from tqdm.auto import tqdm

    from vagan.io.dicom import read_dicom_series

    if not 0.0 < dose <= 1.0:
        raise ConfigError(f"dose: a fraction of the full dose in (0, 1], got {dose}")
    device = torch.device(device)
    folders = _series_folders(Path(source))
    noise = torch.Generator(device=device).manual_seed(seed)
    manifest: dict[str, Any] = {"kind": "vagan-paired-dataset", "source": str(source), "dose": dose, "seed": seed,
                                "vagan_version": __version__, "simulation": config.to_dict(), "patients": []}
    used: dict[str, Path] = {}
    with atomic_dir(Path(out), "dataset", overwrite=overwrite, inputs=(Path(source),)) as tmp:
        for folder in tqdm(folders, desc="series", disable=not progress):
            volume = read_dicom_series(folder).validate()
            rows, cols = volume.pixel_spacing_mm
            if abs(rows - cols) > 1e-3:
                raise InputDataError(f"{folder}: the simulator needs square pixels, got spacing {rows} x {cols} mm")
            simulator = LowDoseSimulator(config, volume.hu.shape[1:], float(rows), device=device)
            ldct = _simulate_volume(simulator, volume.hu, dose, "ndct", noise, batch_size, device)
            pid = _safe_id(str(volume.headers[0].get("PatientID", "") if volume.headers else "") or folder.name)
            if pid in used:  # two series of one patient would land on both sides of a patient split
                raise InputDataError(f"{folder}: patient {pid!r} already came from {used[pid]}; give one normal-dose "
                                     "series per patient")
            used[pid] = folder
            label = f"{volume.slice_thickness_mm or volume.slice_spacing_mm:g}mm"
            entry = _write_patient(tmp, pid, label, volume.hu, ldct, dose, template=volume)
            manifest["patients"].append(entry | {"from": str(folder),
                                                 "skipped": [[p.name, why] for p, why in volume.skipped]})
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return Path(out)
