"""The ``quality`` section of an evaluation config: task-based image quality on the quality phantom
(docs/quality.md)."""

from __future__ import annotations

from dataclasses import dataclass

from vagan.config_schema import Section, bounded
from vagan.errors import ConfigError
from vagan.quality.observers import MIN_PER_CLASS_PER_CHANNEL


@dataclass(frozen=True)
class QualityConfig(Section):
    """What the task-based assessment simulates and measures.

    ``realisations`` signal-present and as many signal-absent images are simulated at the test
    data's dose (``dose`` overrides it) and, for the NDCT row, at full dose. Every method denoises
    them all, so the cost is ``2 x realisations`` slices per method.
    """

    enabled: bool = False
    realisations: int = bounded(24, ge=4, le=400)
    lesion_diameters_mm: tuple[float, ...] = bounded((3.0, 5.0, 7.0, 10.0), gt=0)
    lesion_contrasts_hu: tuple[float, ...] = bounded((5.0, 10.0, 20.0, 30.0), gt=0, le=500)
    rod_contrasts_hu: tuple[float, ...] = bounded((50.0, 100.0, 300.0), gt=0, le=2000)
    channels: int = bounded(5, ge=1, le=10)  # Laguerre-Gauss channels of the CHO
    dose: float | None = bounded(None, gt=0, le=1)  # None: the test data's (its manifest.json)
    pixel_mm: float | None = bounded(None, gt=0, le=5)  # None: the test data's (its manifest.json)
    size: int | None = bounded(None, ge=128, le=2048)  # None: the test slices' side
    seed: int = 0

    def check(self) -> None:
        for key in ("lesion_diameters_mm", "lesion_contrasts_hu", "rod_contrasts_hu"):
            if not getattr(self, key):
                raise ConfigError(f"{key}: give at least one value")

    def cho_minimum(self, copies: int) -> int:
        """Realisations per class the CHO needs when each lesion type has ``copies`` copies per image."""
        per_half = MIN_PER_CLASS_PER_CHANNEL * self.channels
        return -(-2 * per_half // copies)
