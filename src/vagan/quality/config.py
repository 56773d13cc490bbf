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

    * Test slices: the noise of each method's outputs in uniform soft-tissue ROIs of the test
      slices (found on the NDCT, or ``rois``), its NPS after a second-order detrend.
    * Phantom: ``realisations`` signal-present and as many signal-absent images are simulated at
      the test data's dose (``dose`` overrides it) and, for the NDCT row, at full dose. Every
      method denoises them all, so the cost is ``2 x realisations`` slices per method.
    """

    enabled: bool = False
    phantom: bool = True  # the quality phantom (needs the data's dose); false: only the test slices' noise
    test_slices: bool = True  # noise (NPS) of every method in uniform ROIs of the test slices
    roi_mm: float = bounded(20.0, ge=5, le=100)  # side of those ROIs
    rois_per_slice: int = bounded(4, ge=1, le=64)  # found automatically in homogeneous soft tissue ...
    rois: tuple[tuple[int, int], ...] = ()  # ... unless given: (row, col) top-left corners, on every test slice
    realisations: int = bounded(24, ge=4, le=400)
    lesion_diameters_mm: tuple[float, ...] = bounded((3.0, 5.0, 7.0, 10.0), gt=0)
    lesion_contrasts_hu: tuple[float, ...] = bounded((5.0, 10.0, 20.0, 30.0), gt=0, le=500)
    rod_contrasts_hu: tuple[float, ...] = bounded((50.0, 100.0, 300.0), gt=0, le=2000)
    channels: int = bounded(5, ge=1, le=10)  # Laguerre-Gauss channels of the CHO
    dose: float | None = bounded(None, gt=0, le=1)  # None: the test data's (its manifest.json)
    pixel_mm: float | None = bounded(None, gt=0, le=5)  # None: the test data's (manifest, else DICOM)
    size: int | None = bounded(None, ge=128, le=2048)  # None: the test slices' side
    seed: int = 0
    # do no harm: also run every method on the full-dose scans and report the noise it removes there,
    # the TTF it keeps and the CT numbers it moves (costs 2 x realisations more slices per method)
    full_dose_input: bool = False

    def check(self) -> None:
        for key in ("lesion_diameters_mm", "lesion_contrasts_hu", "rod_contrasts_hu"):
            if not getattr(self, key):
                raise ConfigError(f"{key}: give at least one value")
        if self.enabled and not (self.phantom or self.test_slices):
            raise ConfigError("phantom and test_slices are both off: nothing to measure; turn one on or set enabled=false")

    def cho_minimum(self, copies: int) -> int:
        """Realisations per class the CHO needs when each lesion type has ``copies`` copies per image."""
        per_half = MIN_PER_CLASS_PER_CHANNEL * self.channels
        return -(-2 * per_half // copies)
