"""CT scan geometries as frozen dataclasses, with units in the field names.

Two kinds are offered:

* :class:`FanBeamGeometry`: a third-generation fan beam with a curved (equiangular) detector, as on
  Siemens scanners. The defaults are those of the Siemens SOMATOM Definition AS+ that acquired the
  2016 NIH-AAPM-Mayo data (docs/design.md, "Low-dose simulation"): 1152 views over 360 deg,
  736 channels of 1.2858 mm at the detector, source-isocenter 595 mm, source-detector 1085.6 mm.
  The channels are equally spaced in fan angle: ``delta_gamma = detector_spacing_mm / source_detector_mm``.
* :class:`ParallelBeamGeometry`: parallel rays over 180 or 360 deg, e.g. the rebinned equivalent of
  the fan beam (:meth:`FanBeamGeometry.rebinned_parallel`).

Conventions (shared with :mod:`vagan.physics.projector`): the image x axis runs along columns and the
y axis along rows; the source of view ``beta`` sits at ``D * (cos beta, sin beta)``; a channel with
fan angle ``gamma`` looks along ``-(cos(beta + gamma), sin(beta + gamma))``. A parallel view ``theta``
measures ``s = x cos theta + y sin theta``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

__all__ = ["FanBeamGeometry", "Geometry", "ParallelBeamGeometry"]


def _check_positive_int(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _check_positive(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")


def _check_finite(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")


# The Mayo-like Siemens scanner (docs/design.md, "Low-dose simulation"): the one place of its numbers.
SCANNER_VIEWS = 1152  # over 360 deg
SCANNER_CHANNELS = 736
SCANNER_CHANNEL_MM = 1.2858  # channel pitch on the detector arc
SCANNER_SOURCE_ISOCENTER_MM = 595.0
SCANNER_SOURCE_DETECTOR_MM = 1085.6


@dataclass(frozen=True)
class FanBeamGeometry:
    """Full-scan (360 deg) fan beam on an equiangular (curved) detector.

    ``detector_spacing_mm`` is the channel pitch measured on the detector arc, so the angular pitch
    is ``detector_spacing_mm / source_detector_mm`` rad. ``detector_offset_mm`` shifts every channel
    along the arc (e.g. a quarter-channel offset, ``0.25 * detector_spacing_mm``); positive values
    increase the fan angle. ``start_angle_deg`` is the angle of the first view's source.
    """

    source_isocenter_mm: float = SCANNER_SOURCE_ISOCENTER_MM
    source_detector_mm: float = SCANNER_SOURCE_DETECTOR_MM
    n_detectors: int = SCANNER_CHANNELS
    detector_spacing_mm: float = SCANNER_CHANNEL_MM
    n_views: int = SCANNER_VIEWS
    detector_offset_mm: float = 0.0
    start_angle_deg: float = 0.0

    def __post_init__(self) -> None:
        _check_positive("source_isocenter_mm", self.source_isocenter_mm)
        _check_positive("source_detector_mm", self.source_detector_mm)
        _check_positive_int("n_detectors", self.n_detectors)
        _check_positive("detector_spacing_mm", self.detector_spacing_mm)
        _check_positive_int("n_views", self.n_views)
        _check_finite("detector_offset_mm", self.detector_offset_mm)
        _check_finite("start_angle_deg", self.start_angle_deg)
        if self.source_detector_mm <= self.source_isocenter_mm:
            raise ValueError(
                f"source_detector_mm ({self.source_detector_mm}) must exceed source_isocenter_mm "
                f"({self.source_isocenter_mm}): the detector lies beyond the isocenter"
            )
        if self.max_fan_angle_rad >= math.pi / 2:
            raise ValueError(
                f"the fan is too wide: half fan angle {math.degrees(self.max_fan_angle_rad):.1f} deg >= 90 deg "
                f"(n_detectors={self.n_detectors}, detector_spacing_mm={self.detector_spacing_mm}, "
                f"source_detector_mm={self.source_detector_mm}); use fewer or narrower channels"
            )

    @property
    def kind(self) -> str:
        return "fan"

    @property
    def angular_spacing_rad(self) -> float:
        """Fan-angle pitch of the channels (rad)."""
        return self.detector_spacing_mm / self.source_detector_mm

    @property
    def first_fan_angle_rad(self) -> float:
        """Fan angle of channel 0 (rad); channels are ``first + k * angular_spacing_rad``."""
        centre = (self.n_detectors - 1) / 2.0
        return (-centre * self.detector_spacing_mm + self.detector_offset_mm) / self.source_detector_mm

    @property
    def max_fan_angle_rad(self) -> float:
        """The largest |fan angle| over all channels (rad)."""
        first = self.first_fan_angle_rad
        last = first + (self.n_detectors - 1) * self.angular_spacing_rad
        return max(abs(first), abs(last))

    @property
    def fov_radius_mm(self) -> float:
        """Radius of the circle seen by every view: ``D * sin(min |edge fan angle|)``."""
        first = self.first_fan_angle_rad
        last = first + (self.n_detectors - 1) * self.angular_spacing_rad
        return self.source_isocenter_mm * math.sin(min(abs(first), abs(last)))

    def view_angles(self, dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """Source angles beta of the views (rad), ``n_views`` equally spaced over 2 pi."""
        start = math.radians(self.start_angle_deg)
        return start + torch.arange(self.n_views, dtype=dtype) * (2.0 * math.pi / self.n_views)

    def detector_coordinates(self, dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """Fan angles gamma of the channels (rad)."""
        return self.first_fan_angle_rad + torch.arange(self.n_detectors, dtype=dtype) * self.angular_spacing_rad

    def rebinned_parallel(self) -> ParallelBeamGeometry:
        """The parallel geometry with the same channel count, pitch at the isocenter and views."""
        return ParallelBeamGeometry(
            n_views=self.n_views,
            n_detectors=self.n_detectors,
            detector_spacing_mm=self.detector_spacing_mm * self.source_isocenter_mm / self.source_detector_mm,
            detector_offset_mm=self.detector_offset_mm * self.source_isocenter_mm / self.source_detector_mm,
            arc_deg=360.0,
            start_angle_deg=self.start_angle_deg,
        )


@dataclass(frozen=True)
class ParallelBeamGeometry:
    """Parallel beam: ``n_views`` angles over ``arc_deg`` (180 or 360), a flat detector.

    The default matches the rebinned Siemens fan beam: 1152 views over 360 deg and 736 channels at
    1.2858 mm * 595 / 1085.6 = 0.7047 mm at the isocenter, so both kinds measure about as many rays.
    """

    n_views: int = SCANNER_VIEWS
    n_detectors: int = SCANNER_CHANNELS
    detector_spacing_mm: float = SCANNER_CHANNEL_MM * SCANNER_SOURCE_ISOCENTER_MM / SCANNER_SOURCE_DETECTOR_MM
    detector_offset_mm: float = 0.0
    arc_deg: float = 360.0
    start_angle_deg: float = 0.0

    def __post_init__(self) -> None:
        _check_positive_int("n_views", self.n_views)
        _check_positive_int("n_detectors", self.n_detectors)
        _check_positive("detector_spacing_mm", self.detector_spacing_mm)
        _check_finite("detector_offset_mm", self.detector_offset_mm)
        _check_finite("start_angle_deg", self.start_angle_deg)
        if self.arc_deg not in (180.0, 360.0):
            raise ValueError(f"arc_deg must be 180 or 360 (a full parallel data set), got {self.arc_deg!r}")

    @property
    def kind(self) -> str:
        return "parallel"

    @property
    def first_detector_mm(self) -> float:
        """Coordinate s of channel 0 (mm); channels are ``first + k * detector_spacing_mm``."""
        return -(self.n_detectors - 1) / 2.0 * self.detector_spacing_mm + self.detector_offset_mm

    @property
    def fov_radius_mm(self) -> float:
        """Radius of the circle seen by every view (mm)."""
        first = self.first_detector_mm
        last = first + (self.n_detectors - 1) * self.detector_spacing_mm
        return min(abs(first), abs(last))

    def view_angles(self, dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """Ray-normal angles theta of the views (rad), equally spaced over ``arc_deg``."""
        start = math.radians(self.start_angle_deg)
        return start + torch.arange(self.n_views, dtype=dtype) * (math.radians(self.arc_deg) / self.n_views)

    def detector_coordinates(self, dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """Signed distances s of the channels from the isocenter (mm)."""
        return self.first_detector_mm + torch.arange(self.n_detectors, dtype=dtype) * self.detector_spacing_mm


Geometry = FanBeamGeometry | ParallelBeamGeometry
