"""The one place where HU are converted to network units and display windows.

Networks see ``(HU - lo) / (hi - lo)`` clipped to [0, 1] with ``lo=-1024, hi=3072`` by default
(docs/design.md, "Data and units"). Every method uses the same mapping, so metrics compare.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch

ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)

HU_MIN = -1024.0
HU_MAX = 3072.0
DISPLAY_WINDOW = (-160.0, 240.0)  # the paper's display window [-160, 240] HU (Fig. 2-4)
BODY_THRESHOLD_HU = -500.0  # pixels above this count as the patient's body (air is -1000, fat about -100)


@dataclass(frozen=True)
class HURange:
    """A linear map of the HU interval [lo, hi] onto [0, 1]."""

    lo: float = HU_MIN
    hi: float = HU_MAX

    def __post_init__(self) -> None:
        if not self.hi > self.lo:
            raise ValueError(f"HU range needs hi > lo, got lo={self.lo}, hi={self.hi}")

    @property
    def width(self) -> float:
        return self.hi - self.lo

    def to_unit(self, hu: ArrayT, clip: bool = True) -> ArrayT:
        """HU -> [0, 1] (clipped unless ``clip=False``)."""
        out = (hu - self.lo) / self.width
        if clip:
            out = out.clip(0.0, 1.0)
        return out

    def to_hu(self, unit: ArrayT) -> ArrayT:
        """[0, 1] -> HU (inverse of :meth:`to_unit` inside the range)."""
        return unit * self.width + self.lo


NETWORK_RANGE = HURange(HU_MIN, HU_MAX)
DISPLAY_RANGE = HURange(*DISPLAY_WINDOW)
DISPLAY_WINDOW_TEXT = f"[{DISPLAY_WINDOW[0]:g}, {DISPLAY_WINDOW[1]:g}] HU"  # for captions and report text
