"""Where the quality phantom's scan parameters come from: the config, else the test data's
``manifest.json`` (written by ``vagan simulate``), so that the phantom is scanned like the data."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vagan.errors import ConfigError
from vagan.physics.quality_phantom import QualityPhantom, make_quality_phantom
from vagan.physics.simulate import SimulationConfig
from vagan.quality.config import QualityConfig

MANIFEST = "manifest.json"


@dataclass(frozen=True)
class QualitySetup:
    """The phantom and how it is scanned."""

    phantom: QualityPhantom
    dose: float
    simulation: SimulationConfig
    source: str  # where the scan parameters came from, for the report

    @property
    def realisations_note(self) -> str:
        return (f"{self.phantom.size}² pixels of {self.phantom.pixel_mm:g} mm, {100 * self.dose:g}% dose "
                f"({self.source})")


def _manifest(root: Path) -> dict[str, Any]:
    path = Path(root) / MANIFEST
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) and data.get("kind") == "vagan-paired-dataset" else {}


def quality_setup(cfg: QualityConfig, root: Path, side: int, data_pixel_mm: float | None = None) -> QualitySetup:
    """The phantom for test data at ``root`` whose slices are ``side`` pixels of ``data_pixel_mm`` wide.

    Raises :class:`ConfigError` naming the missing value when neither the config nor the data's
    manifest gives the dose or the pixel size, or when the phantom does not fit that field.
    """
    manifest = _manifest(root)
    spec = manifest.get("spec", {}) if isinstance(manifest.get("spec"), dict) else {}
    dose = cfg.dose if cfg.dose is not None else spec.get("dose", manifest.get("dose"))
    pixel = next((p for p in (cfg.pixel_mm, manifest.get("pixel_spacing_mm"), data_pixel_mm) if p is not None), None)
    where = f"{Path(root) / MANIFEST}" if manifest else f"no vagan {MANIFEST} in {root}"
    if dose is None:
        raise ConfigError(f"quality.dose: the test data's dose is unknown ({where}); give it, e.g. --set quality.dose=0.25")
    if pixel is None:
        raise ConfigError(f"quality.pixel_mm: the test data's pixel size is unknown ({where}); give it, "
                          "e.g. --set quality.pixel_mm=0.7")
    simulation = SimulationConfig.from_dict(manifest["simulation"]) if "simulation" in manifest else SimulationConfig()
    size = cfg.size if cfg.size is not None else side
    try:
        phantom = make_quality_phantom(size, float(pixel), cfg.lesion_diameters_mm, cfg.lesion_contrasts_hu,
                                       cfg.rod_contrasts_hu)
    except ValueError as err:
        raise ConfigError(f"quality: {err}") from None
    copies = len(phantom.lesions_of(phantom.lesion_types[0]))
    needed = cfg.cho_minimum(copies)
    if cfg.realisations < needed:
        raise ConfigError(f"quality.realisations: {cfg.realisations} is too few for a CHO with {cfg.channels} channels "
                          f"when each lesion appears {copies} times per image; give at least {needed}")
    source = f"scan as in {Path(root) / MANIFEST}" if "simulation" in manifest else "vagan's default scanner"
    return QualitySetup(phantom, float(dose), simulation, source)
